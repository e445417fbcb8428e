"""The `trainer:` section: checked against lightning.Trainer's signature and types, then the Trainer built."""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import CheckpointIO, TorchCheckpointIO

from ednaml.errors import Problem, show
from ednaml.tracking.run_folder import open_no_link


@functools.lru_cache(maxsize=1)
def trainer_parser() -> Any:
    """A jsonargparse parser of Trainer's arguments (LightningCLI's types, class_path callbacks and loggers)."""
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(pl.Trainer, "trainer", fail_untyped=False, instantiate=False)
    return parser


def _reason(err: Exception) -> str:
    text = re.sub(r'Parser key "trainer\.[^"]*":\s*', "", str(err))
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def check_trainer_values(trainer: dict[str, Any]) -> list[Problem]:
    """Each Trainer argument against its type, one problem per bad argument."""
    parser = trainer_parser()
    problems = []
    for key, value in trainer.items():
        try:  # a copy: jsonargparse turns `{class_path: ...}` mappings into Namespaces in place
            parser.parse_object({"trainer": {key: copy.deepcopy(value)}}, defaults=False)
        except Exception as err:  # noqa: BLE001 - jsonargparse raises several kinds for a bad value
            problems.append(Problem(("trainer", key), f"{show(value)} is not valid here: {_reason(err)}"))
    return problems


def debug_settings(trainer: dict[str, Any]) -> list[str]:
    """The Trainer settings that make a run a debug run (a few batches, not the experiment), as KEY=VALUE."""
    found = []
    for key in ("fast_dev_run", "overfit_batches", "limit_train_batches", "limit_val_batches", "limit_test_batches",
                "limit_predict_batches"):
        value = trainer.get(key)
        if value is None or value is False or (key == "overfit_batches" and value == 0) or (key.startswith("limit_") and value == 1.0):
            continue
        found.append(f"trainer.{key}={value}")
    return found


def check_trainer_build(trainer: dict[str, Any]) -> list[Problem]:
    """What lightning.Trainer itself refuses once the types are right (an accelerator it does not know,
    devices it cannot use, a strategy that does not fit them), reported at the key that was written."""
    import logging

    quiet = logging.getLogger("lightning.pytorch")
    level, quiet.level = quiet.level, logging.WARNING  # not the device banner of a throwaway Trainer
    try:
        kwargs = trainer_kwargs({k: v for k, v in trainer.items() if k not in ("default_root_dir", "logger", "callbacks")})
        pl.Trainer(**{"enable_progress_bar": False, "enable_model_summary": False, **kwargs, "logger": False, "enable_checkpointing": False})
    except Exception as err:  # noqa: BLE001 - Lightning raises several kinds for a setting it cannot use
        text = " ".join(str(err).split())
        named = [k for k in trainer if re.search(rf"\b{re.escape(k)}\b", text)]
        if len(named) == 1:
            return [Problem(("trainer", named[0]), f"{show(trainer[named[0]])} is not valid here: {text}")]
        return [Problem(("trainer",), text)]
    finally:
        quiet.setLevel(level)
    return []


def trainer_kwargs(trainer: dict[str, Any]) -> dict[str, Any]:
    """Trainer arguments with `{class_path, init_args}` callbacks, loggers and plugins instantiated."""
    parser = trainer_parser()
    namespace = parser.instantiate(parser.parse_object({"trainer": copy.deepcopy(trainer)}, defaults=False))
    return dict(namespace.trainer) if namespace.get("trainer") is not None else {}


def save_atomically(obj: Any, target: Path) -> None:
    """torch.save beside `target`, flushed to disk, then renamed into place: a kill during the save never
    leaves half a file (the previous one stays), and a link at either name is never written through."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open_no_link(temporary, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        if not temporary.is_symlink():
            temporary.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint as save_atomically does: a kill during a save never leaves a half-written
    `last.ckpt` (the previous one stays)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if "://" in str(path):  # remote: fsspec's own transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_atomically(checkpoint, Path(str(path)))


def build_trainer(trainer: Mapping[str, Any], root_dir: str, callbacks: list, loggers: list) -> pl.Trainer:
    """The Trainer of the `trainer:` section, with EdnaML's callbacks and loggers added to the user's own."""
    kwargs = trainer_kwargs({k: v for k, v in trainer.items() if k != "default_root_dir"})
    user_callbacks = kwargs.pop("callbacks", None) or []
    if not isinstance(user_callbacks, list):
        user_callbacks = [user_callbacks]
    user_logger = kwargs.pop("logger", None)
    if user_logger is False:
        loggers = []
    elif user_logger not in (None, True):
        loggers = loggers + (user_logger if isinstance(user_logger, list) else [user_logger])
    plugins = kwargs.pop("plugins", None) or []
    plugins = plugins if isinstance(plugins, list) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return pl.Trainer(default_root_dir=root_dir, callbacks=callbacks + user_callbacks, logger=loggers, plugins=plugins, **kwargs)
