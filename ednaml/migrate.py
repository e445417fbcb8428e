"""`ednaml migrate`: a config written for the original EdnaML as this version's canonical config; and the
losses with parameters that the original optimised without a LOSS_OPTIMIZER entry of their own."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ednaml.config.legacy import note
from ednaml.config.load import config_warning, dump, noted, read_yaml, resolve
from ednaml.config.schema import SCHEMA, Key, ListOf, Section, component_paths
from ednaml.errors import ConfigError, format_path


def default_loss_optimizers(cfg: dict[str, Any], warn: Callable[[str], None]) -> None:
    """A loss that learns parameters (CenterLoss, ProxyNCA, ...) with no LOSS_OPTIMIZER entry of its own,
    which the original tolerated, gets one: a copy of the first OPTIMIZER entry under the loss entry's NAME.
    Written into the resolved config, so config.yaml shows it and a reproduced run has it."""
    from ednaml import registry

    if (
        not isinstance(cfg.get("LOSS"), list)
        or not isinstance(cfg.get("LOSS_OPTIMIZER"), list)
        or not cfg.get("OPTIMIZER")
    ):
        return
    have = {
        e.get("OPTIMIZER_NAME")
        for e in cfg["LOSS_OPTIMIZER"]
        if isinstance(e, dict) and isinstance(e.get("OPTIMIZER_NAME"), str)
    }
    for i, entry in enumerate(cfg["LOSS"]):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("NAME"), str)
            or entry["NAME"] in have
            or not isinstance(entry.get("LOSSES"), list)
        ):
            continue
        learning = []
        for name in entry["LOSSES"]:
            try:
                learning += (
                    [name]
                    if isinstance(name, str) and getattr(registry.get("loss", name, trusted=False), "learnable", False)
                    else []
                )
            except Exception:  # noqa: BLE001 - an unknown name is reported by validation
                continue
        if learning and isinstance(cfg["OPTIMIZER"][0], dict):
            optimizer = {**copy.deepcopy(cfg["OPTIMIZER"][0]), "OPTIMIZER_NAME": entry["NAME"]}
            cfg["LOSS_OPTIMIZER"].append(optimizer)
            have.add(entry["NAME"])
            note(
                ("LOSS", i),
                f"{', '.join(learning)} learns parameters and has no LOSS_OPTIMIZER entry: one was added, "
                f"OPTIMIZER[0]'s settings under OPTIMIZER_NAME {entry['NAME']}",
                warn,
            )


def unchecked_components(config: dict[str, Any]) -> dict[tuple, str]:
    """The components a config names that resolve only by importing something (a dotted path, or a name
    its EXECUTION.IMPORTS may register), each with why it is left as written: migrate only translates
    text, and imports none of the user's files or modules."""
    from ednaml import registry
    from ednaml.adapters.trainer import trainer_classes

    execution = config.get("EXECUTION")
    imports = (execution.get("IMPORTS") or []) if isinstance(execution, dict) else []
    unchecked = {}
    for path, kind, name in component_paths(config):
        if not isinstance(name, str) or not name or not ("." in name or imports):
            continue
        try:
            registry.get(kind, name, trusted=False)  # a registered name or torch's, never an import
        except Exception:  # noqa: BLE001 - whatever stops it, it is not resolved without importing
            label = kind.replace("_", " ")
            unchecked[path] = f"{format_path(path)}: {name!r}: " + (
                "a dotted import path"
                if "." in name
                else f"not a registered {label}; EXECUTION.IMPORTS {imports} may register it"
            )
    trainer = config.get("trainer")
    for path, kind, name, _ in trainer_classes(trainer) if isinstance(trainer, dict) else ():
        try:
            registry.get(kind, name, trusted=False)  # Lightning's own, never an import
        except registry.RegistryError:
            unchecked[path[:2]] = f"{format_path(path)}: {name!r}: a dotted import path outside Lightning"
    return unchecked


def migrate(path: str) -> tuple[str, list[str], list[str]]:
    """A config written for the original EdnaML as this version's canonical config (every key, in schema
    order, as `--print_config` writes it), headed by a comment line for each thing that changed or was
    dropped; the notes; and what `ednaml check` would still report (components that are not here, and
    those that only importing the config's EXECUTION.IMPORTS or a dotted path could resolve: migrate
    translates text and runs none of the user's code)."""
    from ednaml.validation import validate

    with noted(show=False) as notes:
        raw = read_yaml(path)
        config = resolve([path])
        default_loss_optimizers(config, config_warning)
        unchecked = unchecked_components(config)
        try:
            trainer = {k: v for k, v in config["trainer"].items() if ("trainer", k) not in unchecked}
            validate({**config, "trainer": trainer}, source=str(path), trusted=False)
            problems: list[str] = []
        except ConfigError as err:  # a component left as written is listed once, as such
            problems = [str(problem) for problem in err.problems if problem.path not in unchecked]
    if "seed_everything" not in raw:  # resolving picked one; a migrated config leaves it to each run
        config.pop("seed_everything", None)
    # Only the Trainer keys the file set: the ones resolving fills in mirror EdnaML keys (EPOCHS -> max_epochs) or
    # depend on this machine (FP16 -> bf16-mixed here, 16-mixed on a GPU), and in a file they would win over them.
    written = raw.get("trainer") if isinstance(raw.get("trainer"), dict) else {}
    config["trainer"] = {k: v for k, v in config["trainer"].items() if k in written}
    if not config["trainer"]:
        config.pop("trainer")
    deployment_reader = config.get("DEPLOYMENT", {}).get("DATAREADER")
    if isinstance(deployment_reader, dict) and deployment_reader.get("CRAWLER_ARGS"):
        deployment_reader["CRAWLER_ARGS"] = {}
        notes.append(
            "DEPLOYMENT.DATAREADER.CRAWLER_ARGS: dropped "
            "(not used: `ednaml predict --data PATH` says where the new data is)"
        )
    notes += [f"{path}: dropped (accepted but not used)" for path in _drop_dead(config)]
    head = [
        f"# Migrated from {path} (a config written for the original EdnaML) by `ednaml migrate`.",
        "# What changed or was dropped:" if notes else "# Nothing needed changing.",
    ]
    head += [f"#   - {note}" for note in notes]
    if problems:
        head += ["# Still to do (`ednaml check` reports these):"] + [f"#   - {problem}" for problem in problems]
    if unchecked:
        head += ["# Left as written, not checked (migrate imports nothing; `ednaml check` does, and checks these):"]
        head += [f"#   - {line}" for line in unchecked.values()]
    return "\n".join(head) + "\n" + dump(config), notes, problems + list(unchecked.values())


def _drop_dead(config: dict[str, Any]) -> list[str]:
    """Remove the keys this version accepts from old configs but does not use; their dotted paths."""
    dropped: list[str] = []

    def walk(spec: Section, node: Any, path: tuple) -> None:
        if not isinstance(node, dict):
            return
        for key, sub in spec.keys.items():
            if isinstance(sub, Key) and sub.dead and key in node:
                node.pop(key)
                dropped.append(format_path(path + (key,)))
            elif isinstance(sub, Section):
                walk(sub, node.get(key), path + (key,))

    for section, spec in SCHEMA.items():
        if isinstance(spec, ListOf):
            for i, entry in enumerate(config.get(section) or []):
                walk(spec.entry, entry, (section, i))
        elif isinstance(spec, Section):
            walk(spec, config.get(section), (section,))
    return dropped
