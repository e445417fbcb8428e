"""Shared helpers: run the real `ednaml` command in a subprocess, find run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
EDNAML = Path(sys.executable).parent / "ednaml"


def run_ednaml(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`ednaml ARGS...` as a user would run it, W&B offline unless `env` says otherwise."""
    full_env = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run([str(EDNAML), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def run_folders(root: Path) -> list[Path]:
    """Every <root>/<experiment>/<run_id> folder."""
    return sorted(p for p in root.glob("*/*") if p.is_dir())


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    return tmp_path
