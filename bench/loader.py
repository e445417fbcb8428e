"""Data-loader throughput: samples per second of EdnaML's training loader and of a plain DataLoader over
the same dataset, with the given number of workers; the two alternate for a few rounds, so that neither
always runs first, and each one's median is kept.

    python -m bench.loader RESOLVED_CONFIG.yml SPEC.json WORKERS
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

from bench import spec as tasks

ROUNDS = 4


def throughput(loader: Any, epochs: int = 2) -> float:
    """Samples per second over `epochs` passes, after one batch to start any workers."""
    iterator = iter(loader)
    next(iterator)
    start, count = time.perf_counter(), 0
    for epoch in range(epochs):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for _, y in loader if epoch else iterator:
            count += len(y)
    return count / (time.perf_counter() - start)


def main(config_path: str, spec_path: str, workers: str) -> None:
    import yaml

    from ednaml.adapters.datamodule import EdnaDataModule

    with open(spec_path, encoding="utf-8") as handle:
        spec = {**json.load(handle), "workers": int(workers)}
    with open(config_path, encoding="utf-8") as handle:  # a resolved config (`ednaml fit --print_config`)
        config = yaml.safe_load(handle)
    config["TRAIN_TRANSFORMATION"]["WORKERS"] = int(workers)
    loaders = {"ednaml": EdnaDataModule(config).train_dataloader(), "hand": tasks.Data(spec).loader("train", spec)}
    rates: dict[str, list[float]] = {who: [] for who in loaders}
    for round_ in range(ROUNDS):
        for who in sorted(loaders, reverse=round_ % 2 == 1):
            rates[who].append(throughput(loaders[who]))
    print(json.dumps({who: statistics.median(values) for who, values in rates.items()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
