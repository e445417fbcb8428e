"""Lightning's loggers for a run: metrics.csv and the W&B history, written together and only up to the last
checkpoint, and the WandbLogger of a run folder.

Metrics are held back until a checkpoint covers them. A run killed mid-epoch and resumed from its
last checkpoint then logs the rest of its steps once: no step is missing or written twice in either
metrics.csv or W&B.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from ednaml.tracking.metrics import MetricsCSV
from ednaml.tracking.run_folder import RunFolder
from ednaml.tracking.secrets import scrub
from ednaml.tracking.wandb import flat_config, layout, wandb_mode


def _number(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


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


def wandb_logger(
    run: RunFolder, config: dict[str, Any], provenance: dict[str, Any] | None, stage: str = "fit"
) -> tuple[Any, dict[str, Any]]:
    """A Lightning WandbLogger writing under the run folder, and what summary.json records of it. Its W&B run
    id is the run id: a resumed run's process continues that W&B run (its rows after the earlier
    processes', see continue_steps; `ednaml sync` sends them oldest first). Its config is the resolved config,
    nested, with the list sections also flattened (see flat_config), plus the provenance and, for a run started
    from another run's checkpoint, `source_run`."""
    mode = wandb_mode(config)
    if mode == "disabled":
        return None, {"mode": "disabled"}
    if not run.writer:  # one W&B run, made by the process that writes the run folder
        return None, {"id": run.run_id, "mode": mode}
    try:
        import wandb
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:
        return None, {"mode": "unavailable"}
    os.environ.setdefault("WANDB_SILENT", "true")
    logging_cfg = config["LOGGING"]
    source = (provenance or {}).get("source")
    where = scrub(layout(run, config, stage, source))  # the notes, name and tags as the config records them
    # EdnaML records code, git state and packages in provenance.json; W&B's own copies are off.
    settings = wandb.Settings(
        mode=mode,
        console="off",
        disable_git=True,
        disable_code=True,
        save_code=False,
        x_disable_meta=True,
        x_disable_stats=True,
        x_save_requirements=False,
    )
    logger = WandbLogger(
        save_dir=str(run.path),
        id=run.run_id,
        entity=logging_cfg["WANDB_ENTITY"],
        log_model=logging_cfg["WANDB_LOG_MODEL"],
        config=scrub(
            {**config, **flat_config(config), "provenance": provenance} | ({"source_run": source} if source else {})
        ),
        settings=settings,
        **where,
    )
    logger._wandb_init.pop("anonymous", None)  # Lightning always passes it; wandb warns that it is obsolete
    if "project" not in where:  # Lightning passes its own default project; W&B's variable is meant to win
        logger._wandb_init.pop("project", None)
    info: dict[str, Any] = {
        "id": run.run_id,
        "mode": mode,
        "dir": str(Path(logger.experiment.dir).parent),
        **{
            k: where.get(k) or os.environ.get(v)
            for k, v in (("project", "WANDB_PROJECT"), ("group", "WANDB_RUN_GROUP"), ("name", "WANDB_NAME"))
        },
    }
    return logger, info
