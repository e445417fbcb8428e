"""Read config files, merge them, apply overrides and legacy forms, fill defaults: one resolved config."""

from __future__ import annotations

import contextlib
import copy
import os
import random
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ednaml.config.schema import (
    LIGHTNING_KEYS,
    LINKED_KEYS,
    SCHEMA,
    Key,
    ListOf,
    Section,
    component_arguments,
    deployment_reader,
    with_trainer_defaults,
)
from ednaml.config.values import DELETE, Replace, TooLarge, as_mapping, get_path, parse_value, parse_yaml
from ednaml.errors import ConfigError, OnlyOnTheCommandLine, Problem, WrittenAs, format_path, show

TORCH_OPTIMIZERS = {
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "Adamax",
    "AdamW",
    "ASGD",
    "LBFGS",
    "Muon",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SGD",
    "SparseAdam",
}


class ConfigWarning(UserWarning):
    """An accepted but ignored or rewritten part of a config."""


MAX_CONFIG_BYTES = 1_000_000  # a config is a few kilobytes; this bounds time and memory for any file given


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Load one config file (safe YAML, YAML 1.2 numbers); errors name the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} does not exist" if not path.exists() else f"{str(path)!r} is not a file"
        )
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{str(path)!r} is {path.stat().st_size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}")
    return parse_config(path.read_bytes(), str(path))


def parse_config(raw: bytes, name: str) -> dict[str, Any]:
    """A config file's bytes -> its mapping of sections (safe YAML, YAML 1.2 numbers, within the limits of
    parse_yaml); errors name the file `name` (and line)."""
    if b"\x00" in raw[:4096]:
        raise ConfigError(f"{name!r} is a binary file, not a YAML config")
    try:
        data = parse_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{name!r} is not UTF-8 text, not a YAML config") from None
    except TooLarge as err:
        raise ConfigError(f"{name!r}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"YAML syntax error in {name!r}{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{name!r} is empty; a config needs at least one section (e.g. EXECUTION:)")
    if not isinstance(data, dict):
        raise ConfigError(f"{name!r} holds a {type(data).__name__}, not a mapping of sections")
    return data


def deep_merge(base: Any, update: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) is replaced wholesale. A mapping tagged
    `!replace` replaces the one below it; a key set to `!delete` is removed."""
    if isinstance(base, dict) and isinstance(update, dict) and not isinstance(update, Replace):
        merged = dict(base)
        for key, value in update.items():
            if value is DELETE:
                merged.pop(key, None)
            else:
                merged[key] = deep_merge(base.get(key), value) if key in base else plain(value)
        return merged
    return plain(update)


def plain(value: Any) -> Any:
    """A deep copy with the merge tags resolved: `!replace` mappings as mappings, `!delete` keys gone."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not DELETE}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return copy.deepcopy(value)


def parse_key_path(dotted: str) -> list[str | int]:
    """'OPTIMIZER.0.BASE_LR' or 'OPTIMIZER[0].BASE_LR' -> ['OPTIMIZER', 0, 'BASE_LR']."""
    parts: list[str | int] = []
    for segment in dotted.split("."):
        match = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", segment)
        if not match:
            raise ConfigError(f"cannot read the key path {dotted!r}; write it as SECTION.KEY or LIST.0.KEY")
        name, indices = match.groups()
        if name:
            parts.append(int(name) if name.isdigit() else name)
        parts += [int(i) for i in re.findall(r"\d+", indices)]
    return parts


def set_path(cfg: dict[str, Any], path: Sequence[str | int], value: Any, dotted: str) -> None:
    """Set `value` at `path`, creating mappings; a list entry is addressed by its index."""
    node: Any = cfg
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            if not isinstance(part, int):
                if len(node) != 1:
                    where = format_path(path[:i])
                    raise ConfigError(
                        f"--{dotted}: {where} has {len(node)} entries; say which one, e.g. --{where}.0.{part}"
                    )
                node = node[0]
            elif part == len(node):
                node.append({})
            elif part > len(node):
                raise ConfigError(f"--{dotted}: {format_path(path[:i])} has {len(node)} entries, no index {part}")
        if isinstance(node, list):
            if last and value is DELETE:
                del node[part]
            elif last:
                node[part] = value
            else:
                node = node[part]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--{dotted}: {format_path(path[:i])} is {show(node)}, not a mapping")
        key = str(part) if isinstance(part, int) and part not in node else part
        if last and value is DELETE:
            node.pop(key, None)
        elif last:
            node[key] = plain(value)
        else:
            if node.get(key) is None:
                node[key] = [] if isinstance(SCHEMA.get(key), ListOf) else {}
            node = node[key]


def config_warning(message: str) -> None:
    warnings.warn(message, ConfigWarning, stacklevel=3)


@contextlib.contextmanager
def noted(show: bool = True) -> Iterator[list[str]]:
    """The config notes made inside the block (ConfigWarnings: old spellings read as new, keys accepted but
    not used, defaults added), once each, in the list it yields, filled when the block ends. With `show`,
    every warning is shown once, as it would have been; without, none is."""
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConfigWarning)
            yield notes
    finally:
        seen = set()
        for warning in caught:
            if (str(warning.message), warning.category) in seen:
                continue
            seen.add((str(warning.message), warning.category))
            if show:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            if issubclass(warning.category, ConfigWarning):
                notes.append(str(warning.message))


def _legacy_entry(section: str, entry: Any) -> Any:
    """Rewrite the original EdnaML's forms of one list entry into the canonical form."""
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)
    if section in ("OPTIMIZER", "LOSS_OPTIMIZER") and "OPTIMIZER" not in entry:
        name = entry.get("OPTIMIZER_NAME")
        if name in TORCH_OPTIMIZERS:
            config_warning(f"{section}: OPTIMIZER_NAME {name!r} names a torch optimizer; read as OPTIMIZER: {name}")
            entry["OPTIMIZER"] = name
            entry["OPTIMIZER_NAME"] = "opt-1" if section == "OPTIMIZER" else None
    return entry


# The oldest configs put transform arguments straight into TRANSFORMATION, in upper case.
LEGACY_TRANSFORM_KEYS = {
    "SHAPE": "i_shape",
    "NORMALIZATION_MEAN": "normalization_mean",
    "NORMALIZATION_STD": "normalization_std",
    "NORMALIZATION_SCALE": "normalization_scale",
    "H_FLIP": "h_flip",
    "T_CROP": "t_crop",
    "RANDOM_ERASE": "random_erase",
    "RANDOM_ERASE_VALUE": "random_erase_value",
    "CHANNELS": "channels",
}


def _legacy_transformation(section: str, value: Any) -> Any:
    if not isinstance(value, dict) or not any(k in value for k in LEGACY_TRANSFORM_KEYS):
        return value
    value = dict(value)
    args = dict(value.get("ARGS") or {})
    moved = [k for k in LEGACY_TRANSFORM_KEYS if k in value]
    for key in moved:
        args[LEGACY_TRANSFORM_KEYS[key]] = value.pop(key)
    value["ARGS"] = args
    config_warning(
        f"{section}: {', '.join(moved)} read as ARGS.{', ARGS.'.join(LEGACY_TRANSFORM_KEYS[k] for k in moved)}"
    )
    return value


def normalize_legacy(raw: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the original EdnaML's older forms into the canonical one (each rewrite is warned about)."""
    from ednaml.config.legacy import translate

    cfg = dict(raw)
    for section, spec in SCHEMA.items():  # list sections first: the key rewrites below meet lists only
        if not isinstance(spec, ListOf) or section not in cfg:
            continue
        value = cfg[section]
        if value is None:
            cfg[section] = copy.deepcopy(spec.default)
            continue
        if isinstance(value, dict):
            value = [value]
        if isinstance(value, list):
            cfg[section] = [_legacy_entry(section, e) for e in value]
    cfg = translate(cfg, config_warning)
    for section in ("TRANSFORMATION", "TRAIN_TRANSFORMATION", "TEST_TRANSFORMATION"):
        if section in cfg:
            cfg[section] = _legacy_transformation(section, cfg[section])
    save = cfg.get("SAVE")
    if isinstance(save, dict) and isinstance(save.get("LOG_BACKUP"), dict):
        config_warning("SAVE.LOG_BACKUP: storage-based backups are not supported; read as LOG_BACKUP: false")
        cfg["SAVE"] = {**save, "LOG_BACKUP": False}
    return cfg


def _materialize_lists(cfg: dict[str, Any]) -> None:
    for section, spec in SCHEMA.items():
        if isinstance(spec, ListOf) and section not in cfg:
            cfg[section] = copy.deepcopy(spec.default)


def _coerce(key: Key, value: Any) -> Any:
    """Old configs wrote kwargs as strings holding a dict ('{"step_size": 20}')."""
    if dict in key.types and isinstance(value, str) and isinstance(parsed := as_mapping(value), dict):
        return parsed
    if key.types == (list,) and isinstance(value, str) and key.default and isinstance(key.default[0], dict):
        value = parse_value(value)
    if isinstance(value, list) and key.types == (list,):
        return [
            _coerce(Key({}, (dict,), ""), v) if isinstance(v, str) and v.strip().startswith("{") else v for v in value
        ]
    return value


def fill_section(spec: Section, value: Any, path: tuple, warned: set) -> Any:
    """Defaults for every known key; unknown keys kept as they are (validation names them)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        return value  # validation reports the wrong type
    out: dict[str, Any] = {}
    for name, sub in spec.keys.items():
        given = value.get(name)
        if isinstance(sub, Section):
            out[name] = fill_section(sub, given, path + (name,), warned)
        elif sub.dead:
            if name in value:
                dotted = format_path(path + (name,))
                if dotted not in warned:
                    warned.add(dotted)
                    config_warning(f"{dotted} is accepted but not used: {sub.doc}")
                out[name] = given
        elif given is None:  # blank: the default, unless the key may be null and was written as such
            out[name] = None if sub.optional and name in value else copy.deepcopy(sub.default)
        else:
            out[name] = _coerce(sub, given)
    for name, given in value.items():
        if name not in spec.keys:
            out[name] = given
    return out


def fill_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    warned: set[str] = set()
    out: dict[str, Any] = {}
    for section, spec in SCHEMA.items():
        value = cfg.get(section)
        if section in ("TRAIN_TRANSFORMATION", "TEST_TRANSFORMATION"):
            value = deep_merge(cfg.get("TRANSFORMATION") or {}, value or {})
        if isinstance(spec, ListOf):
            entries = value if isinstance(value, list) else value
            if isinstance(entries, list):
                out[section] = [fill_section(spec.entry, e, (section, i), warned) for i, e in enumerate(entries)]
            else:
                out[section] = entries
        elif section == "STORAGE":
            out[section] = value if value is not None else {}
        else:
            out[section] = fill_section(spec, value, (section,), warned)
    for name, key in LIGHTNING_KEYS.items():
        given = cfg.get(name)
        out[name] = copy.deepcopy(key.default) if given is None and not key.optional else given
    for section, value in cfg.items():  # unknown sections: kept for custom components
        if section not in out:
            out[section] = value
    return out


def _linked() -> list[tuple[list, list]]:
    return [(parse_key_path(a), parse_key_path(b)) for a, b in LINKED_KEYS]


def _drop_stale_arguments(merged: dict[str, Any], named: dict[tuple, Any], layer: str) -> None:
    """`named`: the component names a layer sets, by key path. Where one differs from the name below it,
    the arguments below it (schema.component_arguments) are removed, so that the layer's own arguments (if
    any) stand alone."""
    for pattern, argument_keys in component_arguments():
        for path, new in named.items():
            if len(path) != len(pattern) or not all(
                p == q or (p == "*" and isinstance(q, int)) for p, q in zip(pattern, path)
            ):
                continue
            old = get_path(merged, path)
            if old is None or old == new:
                continue
            for argument_key in argument_keys:
                argument_path = [path[i] if part == "*" else part for i, part in enumerate(argument_key)]
                parent, last = get_path(merged, argument_path[:-1]), argument_path[-1]
                if isinstance(parent, dict) and parent.get(last):
                    del parent[last]
                    config_warning(
                        f"{format_path(argument_path)} of {old} dropped: {layer} sets {format_path(path)} to {new}"
                    )


def _named_components(layer: dict[str, Any]) -> dict[tuple, Any]:
    named = {}
    for path, _ in component_arguments():
        if "*" not in path:  # a list in a file replaces the list below it, arguments and all
            value = get_path(layer, list(path))
            if value is not None:
                named[path] = value
    return named


def _inherit_transformations(layer: dict[str, Any]) -> dict[str, Any]:
    """TRAIN_/TEST_TRANSFORMATION hold what differs from TRANSFORMATION: a value equal to TRANSFORMATION's in
    the same layer is read as inherited, so that a later TRANSFORMATION change reaches both splits (a resolved
    config, which spells every value out, stays open to `--TRANSFORMATION.BATCH_SIZE 32`)."""
    shared = layer.get("TRANSFORMATION")
    if not isinstance(shared, dict):
        return layer

    def differing(own: Any, common: Any) -> Any:
        if not isinstance(own, dict) or isinstance(own, Replace) or not isinstance(common, dict):
            return own
        kept = {}
        for key, value in own.items():
            if key in common and value == common[key] and value is not DELETE:
                continue
            kept[key] = differing(value, common[key]) if key in common else value
        return kept

    out = dict(layer)
    for section in ("TRAIN_TRANSFORMATION", "TEST_TRANSFORMATION"):
        if isinstance(out.get(section), dict):
            out[section] = differing(out[section], shared)
    return out


def flatten_keys(value: Any, path: tuple = ()) -> Iterable[tuple]:
    """Every key path of a nested config, leaves and the mappings and lists above them."""
    if path:
        yield path
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from flatten_keys(sub, path + (key,))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from flatten_keys(sub, path + (i,))


def resolve(
    files: Sequence[str | os.PathLike] = (),
    overrides: Iterable[tuple[str, Any]] = (),
    base: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    origins: dict[tuple, str] | None = None,
    base_label: str = "the given config",
) -> dict[str, Any]:
    """Defaults < base (one mapping or several, left to right) < files (left to right) < Lightning keys <
    overrides -> the resolved config. Each layer is read in the original EdnaML's older forms too, and
    translated once, as it is read.

    Mappings merge key by key; lists and other values replace. `!replace` and `!delete` (`~KEY.PATH` on the
    command line) replace a mapping or remove a key; a layer that names another component drops the old
    one's arguments. `overrides` are (dotted key path, value) pairs; string values are read as YAML.
    `origins`, where given, is filled with the file or flag each key path was last set by.
    """
    origins = {} if origins is None else origins
    bases = [base] if isinstance(base, Mapping) else list(base or [])
    merged = _merged_layers([(base_label, dict(b)) for b in bases if b] + [(str(f), f) for f in files], origins)
    links = _linked()
    _trainer_keys_win(merged, links, origins)
    _command_line(merged, overrides, links, origins)
    return _completed(fill_defaults(merged), links)


def _merged_layers(layers: list[tuple[str, Any]], origins: dict[tuple, str]) -> dict[str, Any]:
    """The layers (label, mapping or file) merged in order; each canonical as it is read, so what they merge
    into is canonical too."""
    merged: dict[str, Any] = {}
    for label, source in layers:
        layer = _inherit_transformations(
            normalize_legacy(read_yaml(source) if not isinstance(source, dict) else copy.deepcopy(source))
        )
        _drop_stale_arguments(merged, _named_components(layer), label)
        merged = deep_merge(merged, layer)
        origins.update({path: label for path in flatten_keys(layer)})
    _materialize_lists(merged)
    return merged


def _trainer_keys_win(merged: dict[str, Any], links: list[tuple[list, list]], origins: dict[tuple, str]) -> None:
    """A Trainer argument in a file wins over the EdnaML key it mirrors."""
    for ednaml_path, trainer_path in links:
        value = get_path(merged, trainer_path)
        if value is not None:
            set_path(merged, ednaml_path, value, format_path(ednaml_path))
            if tuple(trainer_path) in origins:
                origins[tuple(ednaml_path)] = WrittenAs(origins[tuple(trainer_path)], trainer_path)


def _command_line(
    merged: dict[str, Any], overrides: Iterable[tuple[str, Any]], links: list[tuple[list, list]], origins: dict
) -> None:
    """The command line, one layer: overrides left to right (the original's spellings read as this version's);
    a linked key sets its twin too."""
    from ednaml.config.legacy import renamed_override

    parsed = [
        (
            dotted,
            renamed_override(parse_key_path(dotted), config_warning),
            parse_value(value) if isinstance(value, str) else value,
        )
        for dotted, value in overrides
    ]
    _drop_stale_arguments(
        merged, {tuple(path): value for _, path, value in parsed if value is not DELETE}, "the command line"
    )
    for dotted, path, value in parsed:
        unknown = bool(path) and path[0] not in merged and path[0] not in SCHEMA and path[0] not in LIGHTNING_KEYS
        set_path(merged, path, value, dotted)
        if path and path[0] in SCHEMA and isinstance(SCHEMA[path[0]], ListOf):
            merged[path[0]] = normalize_legacy({path[0]: merged[path[0]]})[path[0]]
        flag = f"~{dotted}" if value is DELETE else f"--{dotted}"
        origins.update({tuple(path) + sub: flag for sub in [()] + list(flatten_keys(value))})
        if unknown:  # a section no file has: validation says it is no key (the command line sets keys that exist)
            origins[(path[0],)] = OnlyOnTheCommandLine(flag)
        for a, b in links:
            if path == a:
                set_path(merged, b, value, dotted)
                origins[tuple(b)] = WrittenAs(flag, a)
            elif path == b:
                set_path(merged, a, value, dotted)
                origins[tuple(a)] = WrittenAs(flag, b)


def _completed(cfg: dict[str, Any], links: list[tuple[list, list]]) -> dict[str, Any]:
    """The config with its defaults filled: each linked Trainer argument the section leaves out from its EdnaML
    twin, then the rest of Lightning's defaults; the precision, the seed and the loss names settled."""
    if (reader := deployment_reader(cfg)) is not None and reader.get("CRAWLER_ARGS"):
        config_warning(
            "DEPLOYMENT.DATAREADER.CRAWLER_ARGS: not used; `ednaml predict --data PATH` says where the new data is"
        )
    if isinstance(cfg["EXECUTION"], dict) and isinstance(cfg["EXECUTION"].get("STEP_LOGIC_ARGS"), dict):
        cfg["EXECUTION"]["STEP_LOGIC_ARGS"].setdefault("accumulation_steps", 1)
    trainer = cfg["trainer"] if isinstance(cfg["trainer"], dict) else {}
    for ednaml_path, trainer_path in links:
        value = get_path(cfg, ednaml_path)
        if get_path(cfg, trainer_path) is None and value is not None and isinstance(trainer, dict):
            trainer[trainer_path[-1]] = value
    _resolve_precision(cfg)
    cfg["trainer"] = with_trainer_defaults(cfg["trainer"])  # after the links, which fill what the section leaves out
    _resolve_seed(cfg)
    _resolve_loss_names(cfg)
    return cfg


def as_recorded_now(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config an earlier version recorded (a run folder's config.yaml), in this version's form: its
    older spellings translated (silently: they are the record's, not the user's) and Lightning's defaults
    filled into its `trainer:` section, so that it compares key by key with a config resolved now."""
    if not isinstance(config, dict):
        return config
    with noted(show=False):
        current = normalize_legacy(config)
    if isinstance(current.get("trainer"), dict):
        current["trainer"] = with_trainer_defaults(current["trainer"])
    return current


def fp16_precision(accelerator: Any, cuda: bool | None) -> str | None:
    """The precision EXECUTION.FP16 stands for: bf16-mixed on a CPU, 16-mixed on CUDA; None where the machine
    decides and `cuda` (whether it has CUDA) is not known (the run fills it in: adapters.trainer)."""
    if str(accelerator) == "cpu" or cuda is False:
        return "bf16-mixed"
    return "16-mixed" if cuda else None


def _resolve_precision(cfg: dict[str, Any]) -> None:
    execution, trainer = cfg.get("EXECUTION"), cfg.get("trainer")
    if not isinstance(execution, dict) or not isinstance(trainer, dict):
        return
    precision = trainer.get("precision")
    if precision is None:
        if execution.get("FP16") is True and (chosen := fp16_precision(trainer.get("accelerator", "auto"), None)):
            trainer["precision"] = chosen
    else:
        execution["FP16"] = str(precision) in ("16-mixed", "bf16-mixed", "16", "bf16", "16-true", "bf16-true")


def _resolve_seed(cfg: dict[str, Any]) -> None:
    seed = cfg.get("seed_everything")
    if seed is True:
        # A DDP child process re-runs the command: it takes the seed its parent chose.
        inherited = os.environ.get("PL_GLOBAL_SEED")
        cfg["seed_everything"] = int(inherited) if inherited else random.randint(0, 2**31 - 1)


def _resolve_loss_names(cfg: dict[str, Any]) -> None:
    losses = cfg.get("LOSS")
    if not isinstance(losses, list):
        return
    for i, entry in enumerate(losses):
        if isinstance(entry, dict) and not entry.get("NAME"):
            entry["NAME"] = entry.get("LABEL") or f"out{i + 1}"


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # every value written out in full, no &anchors
        return True


def dump(cfg: dict[str, Any]) -> str:
    """The resolved config as YAML, in schema order; it loads again as the same config."""
    return yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


__all__ = [
    "ConfigError",
    "Problem",
    "as_mapping",
    "deep_merge",
    "dump",
    "get_path",
    "parse_key_path",
    "parse_value",
    "parse_yaml",
    "parse_config",
    "read_yaml",
    "resolve",
]
