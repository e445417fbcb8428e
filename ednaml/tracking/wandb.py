"""The W&B run of a run folder: offline unless the user says otherwise, off with WANDB_MODE=disabled."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ednaml.errors import Problem
from ednaml.tracking.run_folder import RunFolder
from ednaml.tracking.secrets import scrub


def wandb_mode(config: dict[str, Any]) -> str:
    """WANDB_MODE from the environment, else LOGGING.WANDB_MODE, else offline."""
    return os.environ.get("WANDB_MODE") or config["LOGGING"]["WANDB_MODE"] or "offline"


def login_problem(config: dict[str, Any]) -> Problem | None:
    """Online W&B needs a login; without one the run would fail at its first log call. Looked up as wandb
    does, without the network: WANDB_API_KEY, else the W&B host's entry in ~/.netrc (`wandb login`)."""
    mode = wandb_mode(config)
    if mode not in ("online", "run") or os.environ.get("WANDB_API_KEY"):
        return None
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        if netrc.netrc(os.environ.get("NETRC") or None).authenticators(host):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    source = " (from the WANDB_MODE environment variable)" if os.environ.get("WANDB_MODE") else ""
    return Problem(("LOGGING", "WANDB_MODE"), f"{mode!r}{source} needs a W&B login and none was found (no WANDB_API_KEY, "
                   f"no {host} entry in ~/.netrc): run `wandb login`, or set WANDB_MODE=offline to log locally "
                   "and `wandb sync` the run later")


def wandb_logger(run: RunFolder, config: dict[str, Any], provenance: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """A Lightning WandbLogger writing under the run folder (the same W&B run when resumed), and what
    summary.json records of it. Its config is the resolved config, nested, plus the provenance."""
    mode = wandb_mode(config)
    if mode == "disabled":
        return None, {"mode": "disabled"}
    try:
        import wandb
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:
        return None, {"mode": "unavailable"}
    os.environ.setdefault("WANDB_SILENT", "true")
    logging_cfg = config["LOGGING"]
    project = logging_cfg["WANDB_PROJECT"] or run.experiment
    # EdnaML records code, git state and packages in provenance.json; W&B's own copies are off.
    settings = wandb.Settings(mode=mode, console="off", disable_git=True, disable_code=True, save_code=False,
                              x_disable_meta=True, x_disable_stats=True, x_save_requirements=False)
    from ednaml.adapters.trainer import debug_settings

    debug = debug_settings(config["trainer"])
    logger = WandbLogger(save_dir=str(run.path), id=run.run_id, name=run.run_id, project=project, tags=["debug"] if debug else None,
                         entity=logging_cfg["WANDB_ENTITY"], log_model=logging_cfg["WANDB_LOG_MODEL"],
                         config=scrub({**config, "provenance": provenance}), settings=settings)
    logger._wandb_init.pop("anonymous", None)  # Lightning always passes it; wandb warns that it is obsolete
    info: dict[str, Any] = {"id": run.run_id, "project": project, "mode": mode}
    if run.writer:
        info["dir"] = str(Path(logger.experiment.dir).parent)
    return logger, info


def log_run_files(logger: Any, run: RunFolder) -> None:
    """config.yaml and provenance.json as one W&B artifact of the run."""
    if logger is None or not run.writer:
        return
    import wandb

    artifact = wandb.Artifact(f"run-{run.run_id}-record", type="run-record",
                              description="the resolved config and provenance of this run")
    for name in ("config.yaml", "provenance.json"):
        if (run.path / name).exists():
            artifact.add_file(str(run.path / name))
    logger.experiment.log_artifact(artifact)


def backfill(logger: Any, run: RunFolder, current_dir: str | None) -> int:
    """On resume: send W&B the committed metric rows (metrics.csv) that the killed process never flushed."""
    if logger is None or not run.writer or not (run.path / "metrics.csv").exists():
        return 0
    import csv

    from ednaml.tracking.wandb_log import missing_rows

    logs = [p for p in sorted(run.path.glob("wandb/*run-*/run-*.wandb")) if current_dir is None or str(p.parent) != current_dir]
    with (run.path / "metrics.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = missing_rows(rows, logs)
    for step, values in missing:
        logger.log_metrics(values, step)
    return len(missing)
