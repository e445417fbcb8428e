"""The W&B run of a run folder: offline unless the user says otherwise, off with WANDB_MODE=disabled."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ednaml.tracking.run_folder import RunFolder


def wandb_logger(run: RunFolder, config: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A Lightning WandbLogger writing under the run folder, and what summary.json records of it."""
    os.environ.setdefault("WANDB_MODE", "offline")
    mode = os.environ["WANDB_MODE"]
    if mode == "disabled":
        return None, {"mode": "disabled"}
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    try:
        from lightning.pytorch.loggers import WandbLogger
        import wandb  # noqa: F401
    except ImportError:
        return None, {"mode": "unavailable"}
    logger = WandbLogger(save_dir=str(run.path), id=run.run_id, name=run.run_id, project=run.experiment, config=config)
    logger._wandb_init.pop("anonymous", None)  # Lightning always passes it; wandb warns that it is obsolete
    info: dict[str, Any] = {"id": run.run_id, "project": run.experiment, "mode": mode}
    if run.writer:
        experiment = logger.experiment
        info["dir"] = str(Path(experiment.dir).parent)
    return logger, info
