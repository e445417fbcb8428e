"""The W&B run of a run folder: offline unless the user says otherwise, off with WANDB_MODE=disabled."""

from __future__ import annotations

import contextlib
import json
import netrc
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ednaml.errors import Problem
from ednaml.tracking.run_folder import RunFolder, lower_is_better, read_run_csv
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
    return Problem(
        ("LOGGING", "WANDB_MODE"),
        f"{mode!r}{source} needs a W&B login and none was found (no WANDB_API_KEY, "
        f"no {host} entry in ~/.netrc): run `wandb login`, or set WANDB_MODE=offline to log locally "
        "and `wandb sync` the run later",
    )


def wandb_directories(run: RunFolder) -> dict[str, str]:
    """W&B's cache, artifact staging and download directories, inside the run folder: a run writes nothing
    under the home directory, and the run folder holds everything of its W&B run."""
    root = run.path / "wandb"
    return {
        "WANDB_CACHE_DIR": str(root / "cache"),
        "WANDB_DATA_DIR": str(root / "staging"),
        "WANDB_ARTIFACT_DIR": str(root / "artifacts"),
    }  # not WANDB_CONFIG_DIR: the user's W&B settings are read there


def layout(run: RunFolder, config: dict[str, Any], stage: str, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a run sits in W&B: project = the study, group = the experiment (for a run started from another
    run's checkpoint, that run's group), job type = the stage, tags, a readable name and notes (naming the
    source run). The LOGGING keys set them; W&B's own environment variables still win."""
    save, logging_cfg = config["SAVE"], config["LOGGING"]
    from ednaml.adapters.trainer import debug_settings

    tags = [
        f"model:{config['MODEL']['MODEL_ARCH']}",
        f"backbone:{save['MODEL_BACKBONE']}",
        f"qualifier:{save['MODEL_QUALIFIER']}",
        f"data:{config['EXECUTION']['DATAREADER']['DATAREADER']}",
        f"stage:{stage}",
    ]
    tags += [str(tag) for tag in logging_cfg["WANDB_TAGS"]] + (["debug"] if debug_settings(config["trainer"]) else [])
    chosen = {
        "project": logging_cfg["WANDB_PROJECT"] or str(save["MODEL_CORE_NAME"]),
        "group": logging_cfg["WANDB_GROUP"] or (source or {}).get("wandb", {}).get("group") or run.experiment,
        "job_type": stage,
        "name": logging_cfg["WANDB_NAME"]
        or f"{save['MODEL_BACKBONE']}-{save['MODEL_QUALIFIER']}-{run.run_id.rsplit('-', 1)[-1][:6]}",
        "tags": [tag[:64] for tag in dict.fromkeys(tags)],  # W&B's limit on a tag
        "notes": logging_cfg["WANDB_NOTES"]
        or (
            f"{stage} of run {source['run_id']} (its {source['checkpoint']}, step {source['global_step']})"
            if source
            else None
        ),
    }
    environment = {
        "project": "WANDB_PROJECT",
        "group": "WANDB_RUN_GROUP",
        "job_type": "WANDB_JOB_TYPE",
        "name": "WANDB_NAME",
        "tags": "WANDB_TAGS",
        "notes": "WANDB_NOTES",
    }
    return {key: value for key, value in chosen.items() if not os.environ.get(environment[key])}


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """Each key of the list sections by its path (OPTIMIZER.0.BASE_LR; LOSS by NAME: LOSS.digit.LOSSES), for
    W&B's runs table, which can filter and group by a nested mapping's keys but not by a list's."""
    flat: dict[str, Any] = {}
    for section, entries in config.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            continue
        for i, entry in enumerate(entries):
            label = entry.get("NAME", i) if section == "LOSS" else i
            flat.update({f"{section}.{label}.{key}": value for key, value in entry.items()})
    return flat


def define_summaries(logger: Any, validation: list[str]) -> None:
    """The run summary keeps each validation value's best (min for losses, max otherwise), not its last."""
    if logger is None:
        return
    for name in validation:
        logger.experiment.define_metric(name, summary="min" if lower_is_better(name) else "max")


def record_devices(logger: Any, count: int, provenance: dict[str, Any]) -> None:
    """The number of processes (devices) the stage runs on, known once the Trainer is built: the config's
    `devices`, and the provenance again with it. (Not a tag: W&B sends a changed tag with the whole run
    again, its config without the empty mappings, which would then differ from config.yaml.)"""
    if logger is not None:
        logger.experiment.config.update(scrub({"devices": count, "provenance": provenance}), allow_val_change=True)


def record_summary(logger: Any, summary: dict[str, Any]) -> None:
    """What summary.json says of the run, in the W&B summary too: status, final test values, the majority
    baseline, the checkpoints and the time spent."""
    if logger is None:
        return
    keep = {
        "status": summary.get("status"),
        "elapsed_seconds": summary.get("elapsed_seconds"),
        "checkpoints": summary.get("checkpoints") or {},
        "majority_baseline": summary.get("majority_baseline") or {},
    }
    keep.update({k: v for k, v in (summary.get("final") or {}).items() if k.startswith("test/") and v is not None})
    keep["best"] = summary.get("best") or {}  # each validation value's best with its epoch and step
    if summary.get("error"):
        keep["error"] = summary["error"]
    with without_pandas():
        logger.experiment.summary.update(scrub(keep))


@contextlib.contextmanager
def without_pandas() -> Iterator[None]:
    """W&B asks of every value it logs that is not a number or a string (a list, a Table) whether it is a
    pandas DataFrame, importing pandas to find out wherever it is installed: 62 MB and 0.4 s. EdnaML logs
    no DataFrame, so while pandas is not imported, W&B's own check for an environment without pandas (by
    the value's type name) gives the same answer."""
    from wandb import util

    available = getattr(util, "pd_available", None)
    if available and "pandas" not in sys.modules:
        util.pd_available = False
    try:
        yield
    finally:
        if available is not None:
            util.pd_available = available


Table = tuple[str, list[str], list[list[Any]]]  # key, columns, rows


def log_tables(logger: Any, tables: list[Table]) -> None:
    """W&B Tables in the run (pipeline, parameter groups), comparable across runs in the W&B UI; logged as the
    run ends, without pandas (see without_pandas)."""
    if logger is None or not any(rows for _, _, rows in tables):
        return
    import wandb

    logged = {}
    for key, columns, rows in tables:
        if rows:
            logged[key] = table = wandb.Table(columns=columns)  # rows added one by one: Table(data=...) imports pandas
            for row in rows:
                table.add_data(*(str(cell) for cell in row))
    with without_pandas():
        logger.experiment.log(logged)


def pipeline_table(config: dict[str, Any], provenance: dict[str, Any]) -> Table:
    from ednaml.tracking.provenance import PIPELINE_COLUMNS, pipeline_rows

    return "pipeline", PIPELINE_COLUMNS, scrub(pipeline_rows(config, provenance.get("components") or {}))


def log_run_record(logger: Any, run: RunFolder) -> None:
    """config.yaml and provenance.json as one W&B artifact of the run."""
    if logger is None:
        return
    import wandb

    artifact = wandb.Artifact(
        f"run-{run.run_id}-record", type="run-record", description="the resolved config and provenance of this run"
    )
    for name in ("config.yaml", "provenance.json"):
        if (run.path / name).exists():
            artifact.add_file(str(run.path / name))
    logger.experiment.log_artifact(artifact)


def complete_offline(directory: str | None) -> None:
    """An offline run's files/ as an online run's: config.yaml (W&B's format, {key: {value: ...}}) and
    wandb-summary.json, from what its log holds, for the tools that read them before `wandb sync` (which
    sends the log's own records and writes both files again)."""
    if not directory or not (log := next(iter(sorted(Path(directory).glob("run-*.wandb"))), None)):
        return
    import yaml

    from ednaml.tracking.run_folder import write_atomic
    from ednaml.tracking.wandb_log import run_config, summary_tree

    files = Path(directory) / "files"
    files.mkdir(exist_ok=True)
    write_atomic(
        files / "config.yaml",
        yaml.safe_dump({key: {"value": value} for key, value in run_config(log).items()}, sort_keys=False),
    )
    write_atomic(files / "wandb-summary.json", json.dumps(summary_tree(log), indent=2))


def _earlier_logs(run: RunFolder, current_dir: str | None) -> list[Path]:
    return [
        p
        for p in sorted(run.path.glob("wandb/*run-*/run-*.wandb"))
        if current_dir is None or str(p.parent) != current_dir
    ]


def continue_steps(logger: Any, run: RunFolder, current_dir: str | None) -> int:
    """On resume: W&B's row counter (_step) goes on after the earlier processes' last row, so that the files
    `wandb sync` sends never step back. Returns the first step of this process."""
    if logger is None:
        return 0
    from ednaml.tracking.wandb_log import history

    steps = [row["_step"] for log in _earlier_logs(run, current_dir) for row in history(log) if "_step" in row]
    start = max(steps) + 1 if steps else 0
    if start:
        logger.experiment.log({}, step=start, commit=False)
    return start


def backfill(logger: Any, run: RunFolder, current_dir: str | None) -> int:
    """On resume: send W&B the committed metric rows (metrics.csv) that the killed process never flushed."""
    if logger is None or not (run.path / "metrics.csv").exists():
        return 0
    from ednaml.tracking.wandb_log import missing_rows

    logs = _earlier_logs(run, current_dir)
    rows = list(read_run_csv(run.path / "metrics.csv"))
    missing = missing_rows(rows, logs)
    for step, values in missing:
        logger.log_metrics(values, step)
    return len(missing)
