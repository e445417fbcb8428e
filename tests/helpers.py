"""Plain helpers the tests import (`from helpers import ...`): run the real `ednaml` command in a subprocess, find
run folders. Fixtures and hooks stay in conftest.py."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
EDNAML = Path(sys.executable).parent / "ednaml"
FEW_BATCHES = [  # a run of a few batches per stage
    "--trainer.limit_train_batches",
    "3",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.limit_test_batches",
    "2",
]


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


CLASSES = ["zero", "one", "two", "three"]


def digit_images(root: Path, every: int = 3, splits: bool = False) -> Path:
    """Digits 0-3 as 24x24 PNGs in one folder per class (under train/ and test/ with `splits`); their manifest."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = []
    for i, (image, target) in enumerate(zip(digits.images, digits.target)):
        if target >= len(CLASSES) or i % every:
            continue
        split = ("test" if i % 5 == 0 else "train") if splits else ""
        folder = root / split / CLASSES[target]
        folder.mkdir(parents=True, exist_ok=True)
        name = folder / f"{i}.png"
        Image.fromarray((image / 16 * 255).astype(np.uint8)).resize((24, 24), Image.NEAREST).save(name)
        rows.append({"file": str(name.relative_to(root)), "digit": CLASSES[target], "part": split or "train"})
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["file", "digit", "part"])
        writer.writeheader()
        writer.writerows(rows)
    return root
