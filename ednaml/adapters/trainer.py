"""The `trainer:` section: its names through the registry's trust gate, checked against lightning.Trainer's
signature and types, then the Trainer built."""

from __future__ import annotations

import collections.abc
import copy
import datetime
import enum
import functools
import inspect
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.fabric.plugins import CheckpointIO, TorchCheckpointIO
from lightning.pytorch.callbacks import BatchSizeFinder, Checkpoint, LearningRateFinder

from ednaml import kinds, registry
from ednaml.config.arguments import check_arguments
from ednaml.config.load import fp16_precision
from ednaml.config.schema import LINKED_KEYS
from ednaml.errors import ConfigError, Problem, show
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


# ---- the trust gate: what a `trainer:` section names, and what a config from elsewhere may give ----


# The trainer keys that name classes, and whether a plain word there is a Lightning setting ("ddp", "simple").
def _class_keys() -> dict[str, str]:
    return {entry.trainer_key: name for name, entry in kinds.lightning().items()}


_DATA = (type(None), bool, int, float, str, bytes, PurePath, datetime.timedelta, enum.Enum)
_CONTAINERS = (
    list,
    tuple,
    set,
    frozenset,
    dict,
    collections.abc.Iterable,
    collections.abc.Sequence,
    collections.abc.Mapping,
)
_PATH_ARGUMENT = re.compile(r"dir|path|file|root", re.IGNORECASE)  # a class argument where a file is written
_ONLY_DATA = "; a config from a checkpoint or run folder gives data only: EdnaML takes it with --trust"


def _takes_code(annotation: Any) -> bool:
    """Whether a parameter of this type takes more than data: a callable, or an object of some class."""
    if annotation in (inspect.Parameter.empty, Any, os.PathLike):
        return False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return False
    if origin is not None:
        if origin is collections.abc.Callable or origin not in (typing.Union, types.UnionType, *_CONTAINERS):
            return True
        return any(_takes_code(a) for a in args if a is not Ellipsis)
    return not (inspect.isclass(annotation) and issubclass(annotation, _DATA + _CONTAINERS))


def _hints(cls: Any) -> dict[str, Any]:
    """The types of a class's constructor arguments; an argument whose type does not resolve takes code."""
    target = cls.__init__ if inspect.isclass(cls) else cls
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - a forward reference that does not resolve: treated as code
        return (
            {name: collections.abc.Callable for name in inspect.signature(target).parameters}
            if callable(target)
            else {}
        )


def leaves(value: str) -> bool:
    """Whether a string, read as a path, leaves the folder it is relative to (or is remote)."""
    return (
        value.startswith(("/", "\\", "~"))
        or "://" in value
        or bool(re.match(r"^[A-Za-z]:", value))
        or ".." in re.split(r"[\\/]", value)
    )


def _data(value: Any, at: tuple, trust: registry.Trust) -> list[Problem]:
    """A value from a config that is not trusted: plain data, no class inside, no path out of its folder. A
    string jsonargparse would read as YAML (`"{class_path: ...}"`) is looked at as what it reads as."""
    if trust.of(at):
        return []
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
    if isinstance(value, Mapping):
        if "class_path" in value:
            return [Problem(at, f"names a class ({show(value['class_path'])}) where only data is taken")]
        return [p for key, item in value.items() for p in _data(item, at + (key,), trust)]
    if isinstance(value, (list, tuple)):
        return [p for i, item in enumerate(value) for p in _data(item, at + (i,), trust)]
    if isinstance(value, str) and leaves(value):
        return [Problem(at, f"{show(value)} is a path outside the run folder")]
    return []


def _items(key: str, value: Any) -> list[tuple[tuple, Any]]:
    """(key path, entry) of a class-valued trainer key: each entry of a list, or the value itself."""
    if isinstance(value, (list, tuple)):
        return [(("trainer", key, i), item) for i, item in enumerate(value)]
    return [(("trainer", key), value)]


def _names_a_class(item: Any) -> bool:
    return isinstance(item, str) or isinstance(item, Mapping) and isinstance(item.get("class_path"), str)


def trainer_classes(trainer: Mapping[str, Any]) -> list[tuple[tuple, str, str, Mapping[str, Any]]]:
    """(key path, kind, class name, init_args) of each class the `trainer:` section names: a `class_path`, or
    any string but a plain word of Lightning's settings ("ddp", "simple") in the keys of the Lightning kinds
    (kinds.lightning())."""
    found = []
    class_keys = _class_keys()
    for key in [k for k in class_keys if k in trainer]:
        words = kinds.KINDS[class_keys[key]].words
        for at, item in _items(key, trainer[key]):
            if isinstance(item, str) and not (words and re.fullmatch(r"[\w-]+", item)):
                found.append((at, class_keys[key], item, {}))
            elif isinstance(item, Mapping) and isinstance(item.get("class_path"), str):
                init_args = item.get("init_args") or {}
                extra = {k: v for k, v in item.items() if k not in ("class_path", "init_args")}
                found.append(
                    (
                        at + ("class_path",),
                        class_keys[key],
                        item["class_path"],
                        {**extra, **init_args} if isinstance(init_args, Mapping) else {"init_args": init_args},
                    )
                )
    return found


def gate(trainer: Mapping[str, Any], trust: registry.Trust = registry.Trust()) -> list[Problem]:
    """Every class the `trainer:` section names, resolved by registry.get with the trust level. Where the
    config may not name code (a checkpoint's, a run folder's): only Lightning's own classes, and for them and
    every other argument only data: no callable or object, no class_path inside, no path out of the run folder.
    What the user typed (`trust.typed`) is theirs, down to one argument."""
    problems: list[Problem] = []
    for key, value in trainer.items():
        if key not in _class_keys():
            problems += [Problem(p.path, p.message + _ONLY_DATA) for p in _data(value, ("trainer", key), trust)]
            continue
        # what names no class here is data all through (jsonargparse would build a class_path inside)
        problems += [
            Problem(p.path, p.message + _ONLY_DATA)
            for at, item in _items(key, value)
            if not _names_a_class(item)
            for p in _data(item, at, trust)
        ]
    for at, kind, name, init_args in trainer_classes(trainer):
        trusted = trust.of(at)
        if not re.fullmatch(r"[\w.:]+", name):  # YAML in a string, which jsonargparse would read as a class
            problems += [] if trusted else [Problem(at, f"{show(name)} is not a class name" + _ONLY_DATA)]
            continue
        try:
            cls = registry.get(kind, name, trusted)
        except registry.RegistryError as err:
            problems.append(Problem(at, str(err)))
            continue
        if trusted:
            continue
        hints = _hints(cls)
        for argument, given in init_args.items():
            where = at[:-1] + ("init_args", argument)
            if trust.of(where):
                continue
            if argument == "dict_kwargs" and argument not in hints:
                problems.append(Problem(where, "is passed to the class unchecked" + _ONLY_DATA))
            elif _takes_code(hints.get(argument, inspect.Parameter.empty)):
                problems.append(
                    Problem(where, f"{cls.__name__}'s {argument!r} takes code (a callable or an object)" + _ONLY_DATA)
                )
            else:
                problems += [Problem(p.path, p.message + _ONLY_DATA) for p in _data(given, where, trust)]
    return problems


def in_run_folder(trainer: Mapping[str, Any], root_dir: str, trust: registry.Trust) -> dict[str, Any]:
    """The `trainer:` section with each class argument that names where files go (a logger's save_dir, a
    callback's dirpath) made relative to the run folder where the config may not name code (the gate let
    through only relative paths), so nothing it names is written elsewhere."""

    def moved(item: Any, at: tuple) -> Any:
        if not (isinstance(item, Mapping) and isinstance(item.get("init_args"), Mapping)):
            return item
        return {
            **item,
            "init_args": {
                k: str(Path(root_dir) / v)
                if _PATH_ARGUMENT.search(k)
                and isinstance(v, str)
                and not leaves(v)
                and not trust.of(at + ("init_args", k))
                else v
                for k, v in item["init_args"].items()
            },
        }

    section = dict(trainer)
    for key in [k for k in _class_keys() if k in section]:
        entries = [moved(item, at) for at, item in _items(key, section[key])]
        section[key] = entries if isinstance(section[key], (list, tuple)) else entries[0]
    return section


def check_trainer_values(trainer: dict[str, Any], section: dict[str, Any] | None = None) -> list[Problem]:
    """Each Trainer argument against its type, one problem per bad argument (after the gate: it imports).
    `section`, the whole section these arguments are of and all of it through the gate, is parsed as the
    Trainer will be built from it (once: build_trainer reuses the parse); only where that fails is each
    argument parsed on its own, to name every bad one."""
    if section is not None:
        try:
            _parsed(_runnable(section))
            return []
        except Exception:  # noqa: BLE001 - named below, argument by argument
            pass
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
    for key in (
        "fast_dev_run",
        "overfit_batches",
        "limit_train_batches",
        "limit_val_batches",
        "limit_test_batches",
        "limit_predict_batches",
    ):
        value = trainer.get(key)
        if (
            value is None
            or value is False
            or (key == "overfit_batches" and value == 0)
            or (key.startswith("limit_") and value == 1.0)
        ):
            continue
        found.append(f"trainer.{key}={value}")
    return found


def refused(err: Exception, trainer: Mapping[str, Any]) -> list[Problem]:
    """What lightning.Trainer refused once the types were right (an accelerator it does not know, devices it
    cannot use, a strategy that does not fit them, a callback that cannot be made), at the key it names."""
    text = " ".join(str(err).split())
    named = [k for k in trainer if re.search(rf"\b{re.escape(k)}=", text)]  # Lightning's `Trainer(devices=0)`
    if len(named) != 1:
        named = [k for k in trainer if re.search(rf"\b{re.escape(k)}\b", text)]
    if len(named) == 1:
        return [Problem(("trainer", named[0]), f"{show(trainer[named[0]])} is not valid here: {text}")]
    return [Problem(("trainer",), text)]


def _runnable(trainer: Mapping[str, Any]) -> dict[str, Any]:
    """The section as the Trainer is built from it: its default_root_dir is the run folder's."""
    return {k: v for k, v in trainer.items() if k != "default_root_dir"}


_PARSED: dict[str, Any] = {}  # canonical section -> its parse, so that a run parses its section once


def _parsed(trainer: Mapping[str, Any]) -> Any:
    """The section parsed by jsonargparse (which imports what a class_path names: only after the gate)."""
    key = json.dumps(trainer, sort_keys=True, default=repr)
    if key not in _PARSED:
        # a copy: jsonargparse turns `{class_path: ...}` mappings into Namespaces in place
        namespace = trainer_parser().parse_object({"trainer": copy.deepcopy(dict(trainer))}, defaults=False)
        _PARSED.clear()  # one section is in use at a time
        _PARSED[key] = namespace
    return _PARSED[key]


def _instantiated(trainer: Mapping[str, Any]) -> dict[str, Any]:
    """The section's Trainer arguments, its callbacks, loggers and plugins made (new objects on every call)."""
    namespace = trainer_parser().instantiate(copy.deepcopy(_parsed(trainer)))
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


def check_trainer_keys(trainer: dict[str, Any], trust: registry.Trust) -> list[Problem]:
    """Names against lightning.Trainer's signature, the classes it names through the trust gate, then each
    value against its type (only values the gate let through reach jsonargparse, which imports classes)."""
    problems = check_arguments("lightning", pl.Trainer, trainer, ("trainer",))
    problems += gate({k: v for k, v in trainer.items() if not any(p.path == ("trainer", k) for p in problems)}, trust)
    linked = {b.split(".", 1)[1] for _, b in LINKED_KEYS}  # typed by their EdnaML twin already
    known = {
        k: v for k, v in trainer.items() if k not in linked and not any(p.path[:2] == ("trainer", k) for p in problems)
    }
    return problems + check_trainer_values(known, None if problems else trainer)


def fill_machine_precision(cfg: dict[str, Any]) -> None:
    """EXECUTION.FP16 with no trainer.precision, where only this machine can say which (config.load leaves it):
    16-mixed with CUDA, else bf16-mixed."""
    execution, trainer = cfg.get("EXECUTION"), cfg.get("trainer")
    if isinstance(execution, dict) and isinstance(trainer, dict) and execution.get("FP16") is True:
        if trainer.get("precision") is None:
            cuda = os.environ.get("CUDA_VISIBLE_DEVICES") != "" and torch.cuda.is_available()
            trainer["precision"] = fp16_precision(trainer.get("accelerator", "auto"), cuda)


def build_trainer(
    trainer: Mapping[str, Any], root_dir: str, callbacks: list, trust: registry.Trust = registry.Trust()
) -> pl.Trainer:
    """The one Trainer of a run, from the `trainer:` section, with EdnaML's `callbacks` that need no run folder
    yet (the rest, and the run's loggers, join it with add_run_parts once the folder exists); where the config
    may not name code, the files its classes write go into the run folder `root_dir`. What Lightning refuses
    is a ConfigError at the key it names, raised before anything is written."""
    import logging

    given = _runnable(trainer)
    if problems := gate(given, trust):
        raise ConfigError(problems)
    quiet = logging.getLogger("lightning.pytorch")
    level, quiet.level = quiet.level, logging.WARNING  # the device banner: provenance.json records the machine
    try:
        kwargs = _instantiated(in_run_folder(given, root_dir, trust))  # gated as given: its relative paths moved in
        user_callbacks = kwargs.pop("callbacks", None) or []
        user_logger = kwargs.pop("logger", None)
        plugins = kwargs.pop("plugins", None) or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        return pl.Trainer(
            default_root_dir=root_dir,
            callbacks=callbacks + (user_callbacks if isinstance(user_callbacks, list) else [user_callbacks]),
            logger=[] if user_logger in (None, True, False) else user_logger,
            plugins=plugins,
            **kwargs,
        )
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - Lightning raises several kinds for a setting it cannot use
        raise ConfigError(refused(err, given)) from err
    finally:
        quiet.setLevel(level)


def add_run_parts(
    trainer: pl.Trainer, section: Mapping[str, Any], built_with: list, callbacks: list, loggers: list
) -> None:
    """The run's callbacks and loggers, made with its folder, joined to the Trainer built before it (with
    EdnaML's callbacks `built_with`) where they would be had it been given them: the callbacks after
    EdnaML's own and before the user's (the checkpoint callbacks stay last, as Lightning orders them), the
    loggers before the user's unless the section says `logger: false`."""
    ours = {id(c) for c in built_with if not isinstance(c, Checkpoint)}
    before = [
        i
        for i, c in enumerate(trainer.callbacks)
        if id(c) in ours or isinstance(c, (BatchSizeFinder, LearningRateFinder))  # tuners first, as Lightning has it
    ]
    at = max(before, default=-1) + 1
    trainer.callbacks[at:at] = callbacks
    if section.get("logger") is not False:
        trainer.loggers = loggers + trainer.loggers


def trainer_schema() -> dict[str, Any]:
    """The JSON Schema of the `trainer:` section: lightning.Trainer's arguments, each with its type and default
    (callbacks, loggers and plugins in LightningCLI's `class_path`/`init_args` form are any mapping)."""
    from ednaml.config.json_types import of_signature

    schema = of_signature(pl.Trainer)
    schema["description"] = "lightning.Trainer's arguments, as `--trainer.KEY VALUE` sets them on the command line"
    return schema
