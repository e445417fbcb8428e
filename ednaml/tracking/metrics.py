"""metrics.csv and the W&B history, written together and only up to the last checkpoint.

Metrics are held back until a checkpoint covers them. A run killed mid-epoch and resumed from its
last checkpoint then logs the rest of its steps once: no step is missing or written twice in either
metrics.csv or W&B.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from ednaml.tracking.run_folder import open_no_link, read_run_csv, write_atomic


def _number(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class MetricsCSV:
    """metrics.csv: one row per logged (step, metrics); the header is the union of every metric seen."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.keys: list[str] = ["step"]
        if path.exists():  # a resumed run continues its own file
            reader = read_run_csv(path)
            self.keys = list(reader.fieldnames or ["step"])
            self.rows = [dict(row) for row in reader]

    def add(self, rows: list[dict[str, Any]]) -> None:
        new_keys = sorted({k for row in rows for k in row} - set(self.keys))
        self.rows += rows
        if new_keys or not self.path.exists():
            self.keys += new_keys
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=self.keys, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)
            write_atomic(self.path, buffer.getvalue())
            return
        with open_no_link(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.keys, lineterminator="\n").writerows(rows)


class RunLogger(Logger):
    """Lightning's logger for a run folder: metrics.csv, and W&B through Lightning's WandbLogger."""

    def __init__(self, run_dir: Path, run_id: str, wandb: Logger | None = None):
        super().__init__()
        self.run_dir, self.run_id, self.wandb = Path(run_dir), run_id, wandb
        self.pending: list[tuple[int | None, dict[str, Any]]] = []
        self._csv: MetricsCSV | None = None

    @property
    def name(self) -> str:
        return "ednaml"

    @property
    def version(self) -> str:
        return self.run_id

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config is recorded by the run folder and W&B's config, not as hyperparameters."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.pending.append((step, {k: _number(v) for k, v in metrics.items()}))

    @rank_zero_only
    def commit(self) -> None:
        """Write the held-back metrics to metrics.csv and W&B."""
        if not self.pending:
            return
        if self._csv is None:
            self._csv = MetricsCSV(self.run_dir / "metrics.csv")
        self._csv.add([{"step": step, **metrics} for step, metrics in self.pending])
        if self.wandb is not None:
            for step, metrics in self.pending:
                self.wandb.log_metrics(metrics, step)
        self.pending = []

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """A checkpoint now covers everything logged so far: write it out."""
        self.commit()
        if self.wandb is not None:
            self.wandb.after_save_checkpoint(checkpoint_callback)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if status == "success":
            self.commit()
        if self.wandb is not None:
            self.wandb.finalize(status)


class CommitMetrics(Callback):
    """Commits held-back metrics when a stage ends (during training, each checkpoint commits them)."""

    def __init__(self, logger: RunLogger):
        self.logger = logger

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.logger.commit()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.state.fn != "fit":
            self.logger.commit()

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self.logger.commit()
