"""Check a resolved config before anything heavy runs: every key, type, name and kwarg, all at once."""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ednaml.config.load import ConfigWarning
from ednaml.config.schema import (
    ANY,
    LIGHTNING_KEYS,
    SCHEMA,
    Key,
    ListOf,
    Section,
    key_paths,
)
from ednaml.errors import OnlyOnTheCommandLine, Problem, did_you_mean, show
from ednaml.kinds import Trust

NAME_LENGTH = 40
NAME_PART = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._+-]{{0,{NAME_LENGTH - 1}}}")
_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    dict: "a mapping",
    list: "a list",
}


def _type_ok(key: Key, value: Any) -> bool:
    if value is None:
        return key.optional or key.default is None
    if ANY in key.types:
        return True
    if isinstance(value, bool):
        return bool in key.types
    if isinstance(value, int) and float in key.types:
        return True
    return isinstance(value, tuple(t for t in key.types if t is not bool))


def _expected(key: Key) -> str:
    names = [_TYPE_NAMES.get(t, t.__name__) for t in key.types]
    return " or ".join(names) + (" or null" if key.optional else "")


def _check_section(spec: Section, value: Any, path: tuple, problems: list[Problem]) -> None:
    if not isinstance(value, dict):
        problems.append(Problem(path, f"must be a mapping of keys, got {show(value)}"))
        return
    for name, given in value.items():
        sub = spec.keys.get(name)
        if sub is None:
            known = [k for k in spec.keys if not (isinstance(spec.keys[k], Key) and spec.keys[k].dead)]
            hint = did_you_mean(name, spec.keys) or f"; known keys: {', '.join(known)}"
            problems.append(Problem(path + (name,), f"unknown key{hint}"))
        elif isinstance(sub, Section):
            _check_section(sub, given, path + (name,), problems)
        elif not sub.dead:
            if not _type_ok(sub, given):
                problems.append(Problem(path + (name,), f"{show(given)} is not {_expected(sub)}"))
            elif sub.choices and given is not None and given not in sub.choices:
                options = ", ".join(map(str, sub.choices))
                problems.append(
                    Problem(
                        path + (name,),
                        f"{show(given)} is not one of: {options}{did_you_mean(str(given), map(str, sub.choices))}",
                    )
                )


def _keys_like(name: str, cutoff: float) -> list[str]:
    """The schema's key paths that a top-level name was likely meant as: those ending in it, in any case
    (EPOCHS, epochs -> EXECUTION.EPOCHS), else those ending in a spelling as close as `cutoff`."""
    leaves = {path: path.rsplit(".", 1)[-1].upper() for path in key_paths()}
    exact = [path for path, leaf in leaves.items() if leaf == name.upper()]
    if exact:
        return exact
    close = set(difflib.get_close_matches(name.upper(), set(leaves.values()), n=3, cutoff=cutoff))
    return [path for path, leaf in leaves.items() if leaf in close]


def _unknown_section(section: str, origins: dict[tuple, str]) -> Problem | None:
    """A top-level name that is neither EdnaML's nor Lightning's: an error where it comes from the command line
    (which overrides keys that exist), is lower-case, or is close to a section or key; else a custom
    section, kept for custom components with a warning."""
    if hint := did_you_mean(section, list(SCHEMA) + list(LIGHTNING_KEYS), cutoff=0.75):
        return Problem((section,), f"unknown section{hint}")
    flag = origins.get((section,))
    flag = flag if isinstance(flag, OnlyOnTheCommandLine) else None
    like = _keys_like(section, 0.8 if flag else 0.9)  # a file's own section may be named like a key (COLABEL, LABEL)
    meant = f"; did you mean {' or '.join(like[:3])}?" if like else ""
    if flag:
        return Problem(
            (section,),
            "not a config key; the command line overrides keys that exist, EdnaML's or those of a "
            f"section a config file adds{meant or ' (`ednaml fit --help` lists the sections)'}",
            flag,
        )
    if not section.isupper():
        return Problem(
            (section,), f"unknown top-level key{meant or ';'} Lightning's keys are {', '.join(LIGHTNING_KEYS)}"
        )
    if like:
        return Problem((section,), f"unknown section{meant} (a custom section takes a name of its own)")
    warnings.warn(
        f"section {section} is not EdnaML's; kept in the config for custom components", ConfigWarning, stacklevel=2
    )
    return None


def check_structure(cfg: dict[str, Any], origins: dict[tuple, str] | None = None) -> list[Problem]:
    """Sections, keys, types and the rules between keys; no imports of torch or components. `origins` (the
    file or flag each key came from) tells a custom section from a misspelt override."""
    problems: list[Problem] = []
    for section, value in cfg.items():
        if section in LIGHTNING_KEYS:
            key = LIGHTNING_KEYS[section]
            if not _type_ok(key, value):
                problems.append(Problem((section,), f"{show(value)} is not {_expected(key)}"))
            continue
        spec = SCHEMA.get(section)
        if spec is None:
            problems += [p for p in [_unknown_section(section, origins or {})] if p]
            continue
        if isinstance(spec, ListOf):
            if not isinstance(value, list):
                problems.append(Problem((section,), f"must be a list of entries, got {show(value)}"))
                continue
            for i, entry in enumerate(value):
                _check_section(spec.entry, entry, (section, i), problems)
        elif section != "STORAGE":
            _check_section(spec, value, (section,), problems)
        elif not isinstance(value, (dict, list)):
            problems.append(Problem((section,), f"must be a mapping or a list, got {show(value)}"))
    return problems + run_rules(RULES, cfg)


Rule = Callable[..., list[Problem]]


def run_rules(rules: Iterable[Rule], *args: Any) -> list[Problem]:
    """Every rule, each on its own: a rule that meets a malformed value (reported by the structure check)
    gives up alone, and the rules after it still run."""
    problems: list[Problem] = []
    for rule in rules:
        try:
            problems += rule(*args)
        except (KeyError, TypeError, AttributeError, IndexError, ValueError):
            continue
    return problems


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def counts_are_positive(cfg: dict[str, Any]) -> list[Problem]:
    problems = [
        Problem(("EXECUTION", key), f"{cfg['EXECUTION'][key]} must be at least 1")
        for key in ("EPOCHS", "TEST_FREQUENCY")
        if _number(cfg["EXECUTION"][key]) and cfg["EXECUTION"][key] < 1
    ]
    arguments = cfg["EXECUTION"]["STEP_LOGIC_ARGS"]
    steps = arguments.get("accumulation_steps") if isinstance(arguments, dict) else None
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        problems.append(
            Problem(
                ("EXECUTION", "STEP_LOGIC_ARGS", "accumulation_steps"), f"{show(steps)} is not an integer of at least 1"
            )
        )
    for section in ("TRANSFORMATION", "TRAIN_TRANSFORMATION", "TEST_TRANSFORMATION"):
        if _number(cfg[section]["BATCH_SIZE"]) and cfg[section]["BATCH_SIZE"] < 1:
            problems.append(Problem((section, "BATCH_SIZE"), f"{cfg[section]['BATCH_SIZE']} must be at least 1"))
        if _number(cfg[section]["WORKERS"]) and cfg[section]["WORKERS"] < 0:
            problems.append(Problem((section, "WORKERS"), f"{cfg[section]['WORKERS']} must be 0 or more"))
    return problems


def frequencies_in_range(cfg: dict[str, Any]) -> list[Problem]:
    problems = []
    for path, least in (
        (("SAVE", "SAVE_FREQUENCY"), 0),
        (("SAVE", "STEP_SAVE_FREQUENCY"), 0),
        (("LOGGING", "STEP_VERBOSE"), 1),
    ):
        value = cfg[path[0]][path[1]]
        if _number(value) and value < least:
            problems.append(Problem(path, f"{value} must be " + ("0 or more (0: off)" if least == 0 else "at least 1")))
    return problems


def learning_rates_in_range(cfg: dict[str, Any]) -> list[Problem]:
    return [
        Problem((section, i, key), f"{entry[key]} must be a number, 0 or more")
        for section in ("OPTIMIZER", "LOSS_OPTIMIZER")
        for i, entry in enumerate(cfg[section])
        for key in ("BASE_LR", "WEIGHT_DECAY")
        if _number(entry[key]) and (entry[key] < 0 or entry[key] != entry[key])
    ]


def run_names_are_safe(cfg: dict[str, Any]) -> list[Problem]:
    """The SAVE name parts name the run folder and checkpoints: one safe path component each."""
    problems = []
    for key in ("MODEL_CORE_NAME", "MODEL_VERSION", "MODEL_BACKBONE", "MODEL_QUALIFIER"):
        part = cfg["SAVE"][key]
        if not isinstance(part, (str, int)) or isinstance(part, bool) or not NAME_PART.fullmatch(str(part)):
            problems.append(
                Problem(
                    ("SAVE", key),
                    f"{show(part)} is not a safe name: it names the run folder and "
                    "checkpoints, so use letters, digits and . _ + - (a letter or digit first), "
                    f"at most {NAME_LENGTH} characters",
                )
            )
    return problems


def model_weights_exist(cfg: dict[str, Any]) -> list[Problem]:
    weights = cfg["MODEL"]["WEIGHTS"]
    if isinstance(weights, str) and weights and not Path(weights).is_file():
        return [
            Problem(
                ("MODEL", "WEIGHTS"),
                f"{weights!r} " + ("is not a file" if Path(weights).exists() else "does not exist"),
            )
        ]
    return []


def loss_entries_agree(cfg: dict[str, Any]) -> list[Problem]:
    """Per LOSS entry: one KWARGS and LAMBDA per loss, lambdas non-negative and not all 0, unique NAMEs."""
    problems: list[Problem] = []
    names: dict[str, int] = {}
    for i, entry in enumerate(cfg["LOSS"]):
        n = len(entry["LOSSES"])
        for key in ("KWARGS", "LAMBDAS"):
            if isinstance(entry[key], list) and len(entry[key]) != n:
                problems.append(
                    Problem(("LOSS", i, key), f"has {len(entry[key])} items but LOSSES has {n}; give one per loss")
                )
        for j, lam in enumerate(entry["LAMBDAS"]):
            if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
                problems.append(Problem(("LOSS", i, "LAMBDAS", j), f"{show(lam)} is not a non-negative number"))
        if entry["LAMBDAS"] and sum(x for x in entry["LAMBDAS"] if isinstance(x, (int, float))) <= 0:
            problems.append(Problem(("LOSS", i, "LAMBDAS"), "must not sum to 0"))
        for j, kw in enumerate(entry["KWARGS"]):
            if kw is not None and not isinstance(kw, dict):
                problems.append(Problem(("LOSS", i, "KWARGS", j), f"{show(kw)} is not a mapping of kwargs"))
        if entry["NAME"] in names:
            problems.append(
                Problem(
                    ("LOSS", i, "NAME"),
                    f"{entry['NAME']!r} is already the NAME of LOSS[{names[entry['NAME']]}]; NAMEs must be unique",
                )
            )
        names.setdefault(entry["NAME"], i)
    if not cfg["LOSS"]:
        problems.append(Problem(("LOSS",), "is empty; training needs at least one loss entry"))
    return problems


def _group_names(cfg: dict[str, Any]) -> list[str]:
    groups = cfg["MODEL"]["PARAMETER_GROUPS"]
    return list(groups) if isinstance(groups, (list, dict)) else []


def optimizers_cover_groups(cfg: dict[str, Any]) -> list[Problem]:
    """One OPTIMIZER entry per MODEL.PARAMETER_GROUPS group, by OPTIMIZER_NAME."""
    problems: list[Problem] = []
    group_names, opt_names = _group_names(cfg), []
    for i, entry in enumerate(cfg["OPTIMIZER"]):
        name = entry["OPTIMIZER_NAME"]
        if name in opt_names:
            problems.append(
                Problem(
                    ("OPTIMIZER", i, "OPTIMIZER_NAME"), f"{name!r} is used twice; one optimizer per parameter group"
                )
            )
        elif name not in group_names:
            problems.append(
                Problem(
                    ("OPTIMIZER", i, "OPTIMIZER_NAME"),
                    f"{name!r} is not a parameter group; "
                    f"MODEL.PARAMETER_GROUPS has {group_names}{did_you_mean(name, group_names)}",
                )
            )
        opt_names.append(name)
    if not cfg["OPTIMIZER"]:
        problems.append(Problem(("OPTIMIZER",), "is empty; training needs at least one optimizer"))
    for group in group_names:
        if opt_names and group not in opt_names:
            problems.append(
                Problem(
                    ("MODEL", "PARAMETER_GROUPS"),
                    f"group {group!r} has no OPTIMIZER entry (OPTIMIZER_NAME: {group}); "
                    "its parameters would never train",
                )
            )
    groups = cfg["MODEL"]["PARAMETER_GROUPS"]
    if isinstance(groups, dict):
        for name, prefixes in groups.items():
            if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
                problems.append(
                    Problem(("MODEL", "PARAMETER_GROUPS", name), f"{show(prefixes)} is not a list of module prefixes")
                )
    return problems


def schedulers_name_optimizers(cfg: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    opt_names = [entry["OPTIMIZER_NAME"] for entry in cfg["OPTIMIZER"]]
    for i, entry in enumerate(cfg["SCHEDULER"]):
        name = entry["SCHEDULER_NAME"]
        if name is None and len(opt_names) > 1:
            problems.append(
                Problem(
                    ("SCHEDULER", i, "SCHEDULER_NAME"),
                    f"is blank but there are {len(opt_names)} optimizers; name one of {opt_names}",
                )
            )
        elif name is not None and name not in opt_names:
            problems.append(
                Problem(
                    ("SCHEDULER", i, "SCHEDULER_NAME"),
                    f"{name!r} names no optimizer; OPTIMIZER_NAMEs are {opt_names}{did_you_mean(name, opt_names)}",
                )
            )
    return problems


def loss_optimizers_name_losses(cfg: dict[str, Any]) -> list[Problem]:
    """LOSS_OPTIMIZER entries name LOSS entries; LOSS_SCHEDULER entries name LOSS_OPTIMIZER entries."""
    problems: list[Problem] = []
    loss_names = list(dict.fromkeys(entry["NAME"] for entry in cfg["LOSS"]))
    loss_opt_names = []
    for i, entry in enumerate(cfg["LOSS_OPTIMIZER"]):
        if entry["OPTIMIZER_NAME"] not in loss_names:
            problems.append(
                Problem(
                    ("LOSS_OPTIMIZER", i, "OPTIMIZER_NAME"),
                    f"{entry['OPTIMIZER_NAME']!r} names no LOSS entry; LOSS NAMEs are {loss_names}"
                    f"{did_you_mean(entry['OPTIMIZER_NAME'], loss_names)}",
                )
            )
        loss_opt_names.append(entry["OPTIMIZER_NAME"])
    for i, entry in enumerate(cfg["LOSS_SCHEDULER"]):
        name = entry["SCHEDULER_NAME"]
        if name is None and len(loss_opt_names) != 1:
            problems.append(
                Problem(
                    ("LOSS_SCHEDULER", i, "SCHEDULER_NAME"),
                    f"is blank; name one of the LOSS_OPTIMIZER entries {loss_opt_names}",
                )
            )
        elif name is not None and name not in loss_opt_names:
            problems.append(
                Problem(
                    ("LOSS_SCHEDULER", i, "SCHEDULER_NAME"),
                    f"{name!r} names no LOSS_OPTIMIZER entry; "
                    f"they are {loss_opt_names}{did_you_mean(name, loss_opt_names)}",
                )
            )
    return problems


def plugin_names_are_unique(cfg: dict[str, Any]) -> list[Problem]:
    problems, seen = [], set()
    for i, entry in enumerate(cfg["MODEL_PLUGIN"]):
        if entry["PLUGIN_NAME"] in seen:
            problems.append(
                Problem(
                    ("MODEL_PLUGIN", i, "PLUGIN_NAME"),
                    f"{entry['PLUGIN_NAME']!r} is used twice; PLUGIN_NAMEs must be unique",
                )
            )
        seen.add(entry["PLUGIN_NAME"])
    return problems


# The rules between keys, after the structure check (each reads keys it may find malformed, see run_rules).
RULES: list[Rule] = [
    counts_are_positive,
    frequencies_in_range,
    learning_rates_in_range,
    run_names_are_safe,
    model_weights_exist,
    loss_entries_agree,
    optimizers_cover_groups,
    schedulers_name_optimizers,
    loss_optimizers_name_losses,
    plugin_names_are_unique,
]


def destinations_are_the_users(cfg: dict[str, Any], trust: Trust) -> list[Problem]:
    """Where this machine sends its run besides the run folder (a backup target, W&B online) is the user's
    choice: a config from a checkpoint or run folder would send the run (its provenance, git diff and
    weights) wherever its author says, with this machine's credentials."""
    problems = []
    save, logging = cfg.get("SAVE") or {}, cfg.get("LOGGING") or {}
    target = ("SAVE", "CHECKPOINT_DIRECTORY")
    if (save.get("DRIVE_BACKUP") or save.get("LOG_BACKUP")) and not trust.of(target):
        problems.append(
            Problem(
                target,
                f"{show(save.get('CHECKPOINT_DIRECTORY'))} is where backups of this run would go, chosen "
                "by a config from a checkpoint or run folder: give your own with "
                "--SAVE.CHECKPOINT_DIRECTORY DIR, turn backups off with --SAVE.DRIVE_BACKUP false "
                "--SAVE.LOG_BACKUP false, or --trust",
            )
        )
    mode = ("LOGGING", "WANDB_MODE")
    if logging.get("WANDB_MODE") in ("online", "run") and not os.environ.get("WANDB_MODE") and not trust.of(mode):
        problems.append(
            Problem(
                mode,
                "'online' would upload this run to W&B, chosen by a config from a checkpoint or run "
                "folder: say so yourself (--LOGGING.WANDB_MODE online, or WANDB_MODE=online), or --trust",
            )
        )
    return problems
