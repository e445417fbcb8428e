"""The benchmark's clock as a Lightning callback, for `ednaml fit` (--trainer.callbacks) and the hand-written
run. Apart from bench/timing.py, so that the plain PyTorch loop does not import Lightning."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from bench.timing import Clock


class StepTimer(Callback):
    def __init__(self) -> None:
        self.clock = Clock(torch.cuda.synchronize if torch.cuda.is_available() else None)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.clock.epoch_start()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.clock.batch_start()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.clock.batch_end()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.clock.train_end()
        self.clock.write(global_step=trainer.global_step)
