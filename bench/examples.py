"""`python -m bench.examples [--write] [NAME ...]`: every config in configs/ trained at its own settings, its
test accuracy set against its majority-class baseline, and (with --write) the result written into the config's
header as its `# Learns:` line, which the tests hold each example to.

Configs that read data from a path are given real data that an installed package ships, written to a temporary
folder: scikit-learn's digits in MNIST's own files for mnist-torchvision.yml, gensim's word analogies as a
parquet file for hf-text-parquet.yml.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
EDNAML = Path(sys.executable).parent / "ednaml"
CLAIM = re.compile(r"^# Learns: (?P<results>.*?); the tests ask for (?P<margin>[0-9.]+) above it\.$", re.M)
SMALLEST_MARGIN = 0.1  # an example that beats its baseline by less teaches nothing


def digits_as_mnist(root: Path, train: int = 1400) -> None:
    """scikit-learn's digits, enlarged to 28 x 28, written in MNIST's own files (torchvision's raw layout)."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.pad(
        np.kron((digits.images * 255 / 16).round().astype("uint8"), np.ones((3, 3), dtype="uint8")),
        ((0, 0), (2, 2), (2, 2)),
    )
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, part, labels in (
        ("train", images[:train], digits.target[:train]),
        ("t10k", images[train:], digits.target[train:]),
    ):
        (raw / f"{name}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, len(part), 28, 28) + part.tobytes())
        (raw / f"{name}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, len(labels)) + labels.astype("uint8").tobytes()
        )


def analogies_parquet(path: Path) -> None:
    """gensim's word analogies (200 lines of each of 14 categories) as a `text`, `label` parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ednaml.data.text import AnalogiesCrawler

    crawl = AnalogiesCrawler().crawl()
    (categories,) = crawl.labels.values()
    rows = [(text, categories[label]) for split in crawl.splits.values() for text, (label,) in split]
    pq.write_table(pa.table({"text": [t for t, _ in rows], "label": [y for _, y in rows]}), path)


def _mnist(folder: Path) -> list[str]:
    digits_as_mnist(folder / "mnist")
    return ["--EXECUTION.DATAREADER.CRAWLER_ARGS.root", str(folder / "mnist")]


def _parquet(folder: Path) -> list[str]:
    analogies_parquet(folder / "analogies.parquet")
    return ["--EXECUTION.DATAREADER.CRAWLER_ARGS.path", str(folder / "analogies.parquet")]


DATA: dict[str, Callable[[Path], list[str]]] = {"mnist-torchvision.yml": _mnist, "hf-text-parquet.yml": _parquet}


def examples() -> list[Path]:
    """The configs in configs/ that train (a sweep's search space is not one)."""
    return sorted(p for p in CONFIGS.glob("*.yml") if "SWEEP:" not in p.read_text())


def arguments(config: Path, folder: Path) -> list[str]:
    """The `ednaml fit` arguments that train `config` at its own settings, its data prepared in `folder`."""
    data = DATA.get(config.name)
    return ["fit", "--config", str(config), *(data(folder) if data else [])]


def results(summary: dict) -> dict[str, tuple[float, float]]:
    """Each test accuracy of a run with the majority baseline of its output: {metric: (accuracy, baseline)}."""
    return {key: (summary["final"][key], base) for key, base in sorted(summary["majority_baseline"].items())}


def claimed_margin(config: Path) -> float:
    """The margin above its majority baseline that the config's `# Learns:` line promises."""
    found = CLAIM.search(config.read_text())
    if not found:
        raise ValueError(f"{config}: no `# Learns:` line; run python -m bench.examples --write {config.name}")
    return float(found["margin"])


def shortfalls(config: Path, summary: dict) -> list[str]:
    """Each output of the run that does not beat its majority baseline by the config's promised margin."""
    margin = claimed_margin(config)
    return [
        f"{config.name}: {key} {accuracy:.4f} is not {margin} above the majority baseline {baseline:.4f}"
        for key, (accuracy, baseline) in results(summary).items()
        if accuracy < baseline + margin - 1e-9
    ]


def claim(found: dict[str, tuple[float, float]], seconds: float) -> str:
    """The `# Learns:` line for measured results; the promised margin is half the smallest lead, in 0.05 steps."""
    lead = min(accuracy - baseline for accuracy, baseline in found.values())
    margin = max(math.floor(lead / 2 / 0.05) * 0.05, SMALLEST_MARGIN)
    measured = ", ".join(
        f"{key} {acc:.3f} against a majority baseline of {base:.3f}" for key, (acc, base) in found.items()
    )
    stamp = f"python -m bench.examples, {datetime.date.today()}: {seconds:.0f} s on {os.cpu_count()} CPU cores"
    return f"# Learns: {measured} ({stamp}); the tests ask for {margin:.2f} above it."


def write_claim(config: Path, line: str) -> None:
    """`line` in place of the config's `# Learns:` line, or after its first comment lines."""
    text = config.read_text()
    if CLAIM.search(text):
        config.write_text(CLAIM.sub(lambda _: line, text, count=1))
        return
    lines = text.splitlines(keepends=True)
    at = next((i for i, row in enumerate(lines) if not row.startswith("#")), len(lines))
    config.write_text("".join(lines[:at] + [line + "\n"] + lines[at:]))


def measure(config: Path) -> tuple[dict[str, tuple[float, float]], float]:
    """`config` trained in a fresh folder: its results and the seconds it took."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        done = subprocess.run(
            [str(EDNAML), *arguments(config, Path(folder))],
            cwd=folder,
            env={**os.environ, "WANDB_MODE": "disabled"},
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{config.name}: ednaml fit failed:\n{done.stderr[-3000:]}")
        (summary,) = Path(folder).glob("runs/*/*/summary.json")
        return results(json.loads(summary.read_text())), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.examples", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="config file names in configs/ (default: all)")
    parser.add_argument("--write", action="store_true", help="write each measured result into its config")
    args = parser.parse_args(argv)
    configs = [CONFIGS / name for name in args.names] or examples()
    failed = 0
    for config in configs:
        found, seconds = measure(config)
        line = claim(found, seconds)
        lead = min(accuracy - baseline for accuracy, baseline in found.values())
        print(f"{config.name} ({seconds:.0f} s): {line}", flush=True)
        if lead < SMALLEST_MARGIN:
            print(f"{config.name}: learns too little ({lead:+.3f} over its baseline); nothing written", flush=True)
            failed += 1
        elif args.write:
            write_claim(config, line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
