"""The clock all three contenders share: time per step, per batch fetch, per epoch, and to the first step.

A step is the time from a batch's arrival to the end of its optimizer step; a fetch is the time from
one step's end to the next batch's arrival (the data loader, and whatever a framework does between
batches); an epoch runs from one epoch's start to the next (training, validation, checkpoints).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

T0_ENV = "EDNAML_BENCH_T0"  # the wall time the benchmark started this process
OUT_ENV = "EDNAML_BENCH_OUT"  # where the timings are written as JSON


class Clock:
    def __init__(self, sync: Any = None) -> None:
        self.t0 = float(os.environ.get(T0_ENV, time.time()))
        self.sync = sync  # torch.cuda.synchronize on a GPU: epochs end when the device is done
        self.steps: list[float] = []
        self.fetches: list[float] = []
        self.epochs: list[float] = []
        self.first_step: float | None = None
        self._epoch_start: float | None = None
        self._batch_start = 0.0
        self._batch_end: float | None = None

    def epoch_start(self) -> None:
        now = self._now(sync=True)
        if self._epoch_start is not None:
            self.epochs.append(now - self._epoch_start)
        self._epoch_start, self._batch_end = now, None

    def batch_start(self) -> None:
        now = time.time()
        if self.first_step is None:
            self.first_step = now - self.t0
        if self._batch_end is not None:
            self.fetches.append(now - self._batch_end)
        self._batch_start = now

    def batch_end(self) -> None:
        self._batch_end = time.time()
        self.steps.append(self._batch_end - self._batch_start)

    def train_end(self) -> None:
        if self._epoch_start is not None:
            self.epochs.append(self._now(sync=True) - self._epoch_start)
            self._epoch_start = None

    def _now(self, sync: bool) -> float:
        if sync and self.sync is not None:
            self.sync()
        return time.time()

    def write(self, **extra: Any) -> None:
        record = {
            "steps": self.steps,
            "fetches": self.fetches,
            "epochs": self.epochs,
            "first_step": self.first_step,
            **extra,
        }
        path = os.environ.get(OUT_ENV)
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
