"""Plain helpers the tests import (`from helpers import ...`): run the real `ednaml` command in a subprocess, find
run folders. Fixtures and hooks stay in conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
EDNAML = Path(sys.executable).parent / "ednaml"


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


GLIBC = _glibc()  # the C library ednaml.allocator tunes


def run_ednaml(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`ednaml ARGS...` as a user would run it, W&B offline unless `env` says otherwise."""
    full_env = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run([str(EDNAML), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def stopped_at_a_checkpoint(
    args: list[str], cwd: Path, pattern: str = "runs/*/*/checkpoints/*_epoch1_step25.ckpt", timeout: float = 300
) -> tuple[subprocess.Popen, str, str]:
    """`ednaml ARGS...` started, sent SIGTERM once a checkpoint matching `pattern` exists; the process and its
    output once it has ended."""
    import signal
    import time

    process = subprocess.Popen(
        [str(EDNAML), *args],
        cwd=cwd,
        env={**os.environ, "WANDB_MODE": "offline"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + timeout
    while not list(cwd.glob(pattern)):
        assert process.poll() is None and time.time() < deadline, "the run ended first"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=timeout)
    return process, out, err


def run_folders(root: Path) -> list[Path]:
    """Every <root>/<experiment>/<run_id> folder."""
    return sorted(p for p in root.glob("*/*") if p.is_dir())


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())
