"""Reading EdnaML checkpoints as untrusted input: a zip whose every member passes its CRC, loaded with
`weights_only=True`, carrying EdnaML's config and model; anything else is a clear error."""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

from ednaml.errors import ConfigError

log = logging.getLogger("ednaml")

# What Lightning reads of every checkpoint it restores: one without them is not a run's checkpoint.
LIGHTNING_KEYS = ("pytorch-lightning_version", "state_dict", "epoch", "global_step")
DATA_STATE_KEY = "EdnaDataModule"  # where Lightning saves the data module's state_dict: its class's qualified name


def _checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The parts of a checkpoint EdnaML reads, checked and cached (not copied: callers copy what they hand out)."""
    if not Path(path).is_file():
        raise ConfigError(f"ckpt_path: {str(path)!r} does not exist")
    return _read_checkpoint(str(path), Path(path).stat().st_mtime_ns)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """What an EdnaML checkpoint carries (config, labels, provenance); a clear error for anything else."""
    return copy.deepcopy(_checkpoint(path)["ednaml"])


def check_restorable(path: str | os.PathLike) -> None:
    """Raise ConfigError where Lightning could not restore the checkpoint (a file made to look like one)."""
    if missing := _checkpoint(path)["missing"]:
        raise ConfigError(
            f"ckpt_path: {str(path)!r} lacks what Lightning restores ({', '.join(missing)}): it was not saved by a run"
        )


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The optimizer step a checkpoint was saved at."""
    return _checkpoint(path)["global_step"]


def describe_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint as the files made from it record it: where it is, its SHA-256, its step, its run."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {
        "path": str(Path(path).resolve()),
        "sha256": digest.hexdigest(),
        "global_step": checkpoint_step(path),
        "run_id": (_checkpoint(path)["ednaml"].get("provenance") or {}).get("run_id"),
    }


def source_run(path: str | os.PathLike) -> dict[str, Any] | None:
    """The run a checkpoint was trained in, as a run started from it records it (provenance `source`, the W&B
    config's `source_run`): its run id, which is its W&B run id, its experiment, the W&B project and group its
    config set, and the checkpoint's name, step and SHA-256. None for a checkpoint that names no run."""
    from ednaml.tracking.run_folder import experiment_name

    record = _checkpoint(path)["ednaml"]
    run_id = (record.get("provenance") or {}).get("run_id") if isinstance(record.get("provenance"), dict) else None
    if not isinstance(run_id, str) or not run_id:
        return None
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    save, logging_cfg = (config.get(key) if isinstance(config.get(key), dict) else {} for key in ("SAVE", "LOGGING"))
    try:
        experiment = experiment_name(config)
    except (KeyError, TypeError):
        experiment = None
    described = describe_checkpoint(path)
    return {
        "run_id": run_id,
        "experiment": experiment,
        "checkpoint": Path(path).name,
        "global_step": described["global_step"],
        "sha256": described["sha256"],
        "wandb": {
            "id": run_id,
            "project": str(logging_cfg.get("WANDB_PROJECT") or save.get("MODEL_CORE_NAME") or "") or None,
            "group": str(logging_cfg.get("WANDB_GROUP") or experiment or "") or None,
        },
    }


def plugin_state(path: str | os.PathLike) -> dict[str, Any]:
    """The plugins' state a checkpoint holds, by state-dict key ('plugins.<PLUGIN_NAME>.<buffer>')."""
    return copy.deepcopy(_checkpoint(path)["plugins"])


def data_state(path: str | os.PathLike) -> dict[str, Any]:
    """The data module's state (a text reader's tokenizer), from Lightning's own entry for it."""
    return copy.deepcopy(_checkpoint(path)["data"])


@functools.lru_cache(maxsize=4)
def _read_checkpoint(path: str, mtime_ns: int) -> dict[str, Any]:
    """Read once per file version: validation, the config and the run's data state all need it."""
    import torch

    if not zipfile.is_zipfile(path):
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is not a checkpoint (corrupted, truncated or another kind of file)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # every member against its CRC: flipped bytes are found, not loaded
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        damaged = str(err)
    if damaged:
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is corrupted ({damaged} fails its checksum); use another checkpoint"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is not a readable checkpoint (corrupted or not a torch file: {first})"
        ) from None
    if not isinstance(checkpoint, dict) or "ednaml" not in checkpoint or "state_dict" not in checkpoint:
        raise ConfigError(f"ckpt_path: {str(path)!r} was not written by EdnaML (it carries no EdnaML config and model)")
    plugins = (
        {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("plugins.")}
        if isinstance(checkpoint["state_dict"], dict)
        else {}
    )
    return {
        "ednaml": checkpoint["ednaml"],
        "data": checkpoint.get(DATA_STATE_KEY) or {},
        "global_step": checkpoint.get("global_step"),
        "plugins": plugins,
        "missing": [key for key in LIGHTNING_KEYS if key not in checkpoint],
    }


def config_from_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The resolved config a checkpoint carries, without MODEL.WEIGHTS: the checkpoint holds the trained
    weights, and the file its config started from need not exist on this machine."""
    config = read_checkpoint(path)["config"]
    if isinstance(config.get("MODEL"), dict):
        config["MODEL"]["WEIGHTS"] = None
    return config


def checkpoint_mismatch(path: str | os.PathLike, config: dict[str, Any]) -> None:
    """A checkpoint must hold the model (and learnable losses) that `config` builds; say which keys differ."""
    from ednaml.tracking.browse import changes, flatten

    saved = read_checkpoint(path)["config"]
    parts = {
        "MODEL": lambda c: {k: v for k, v in c["MODEL"].items() if k != "WEIGHTS"},
        "LOSS": lambda c: [{k: e[k] for k in ("NAME", "LOSSES", "KWARGS")} for e in c["LOSS"]],
    }
    differing = []
    for section, pick in parts.items():
        a, b = flatten(pick(saved), (section,)), flatten(pick(config), (section,))
        differing += [key for key, _, _ in changes(a, b)]
    if differing:
        shown = "; ".join(differing[:8])
        raise ConfigError(
            f"ckpt_path: {str(path)!r} holds a different model than this config ({shown}); "
            "use the checkpoint's own config (omit --config) or a matching checkpoint"
        )


def trained_checkpoint(ref: str, root: str | os.PathLike = "runs") -> Path:
    """The checkpoint to predict or export with: a checkpoint file itself, or a run's best checkpoint (by
    SAVE.MONITOR), else its last; its last, too, where the best predates the warm-up of its plugins.
    Only files inside the run's checkpoints/ folder are taken."""
    from ednaml.tracking.browse import read_run, resolve_run

    if Path(ref).is_file():
        return Path(ref)
    run = resolve_run(ref, root)
    folder = run / "checkpoints"
    record = read_run(run)
    recorded, config = record.summary.get("checkpoints"), record.config
    best = recorded.get("best") if isinstance(recorded, dict) else None
    # a link out of the run's folder (a shared run folder is untrusted) is not followed
    found = [
        c
        for c in ([folder / Path(best).name] if isinstance(best, str) and best else []) + [folder / "last.ckpt"]
        if c.is_file() and c.resolve().is_relative_to(folder.resolve())
    ]
    if not found:
        raise ConfigError(f"run {run.name} has no checkpoint in {folder}")
    plugins = config.get("MODEL_PLUGIN") if isinstance(config, dict) else None
    if plugins and len(found) == 2 and not _plugins_ready(found[0]) and _plugins_ready(found[1]):
        log.info("%s: its plugins are still warming up in the best checkpoint; the last one holds them ready", run.name)
        return found[1]
    return found[0]


def _plugins_ready(checkpoint: Path) -> bool:
    """Whether every plugin a checkpoint holds has finished its warm-up (true when it holds none)."""
    return all(bool(value) for key, value in plugin_state(checkpoint).items() if key.endswith(".is_activated"))
