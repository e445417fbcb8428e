"""The whole check of a config before anything is built: the structure and rules between keys
(config/validate.py), then every component name resolved through the registry with its kwargs against its
signature, then what the Trainer itself refuses and W&B's login. All problems at once, one ConfigError."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ednaml import registry
from ednaml.config.arguments import check_arguments
from ednaml.config.paths import SCHEMA_PATHS, location_arguments
from ednaml.config.schema import OUTPUT_FORMATS, component_paths
from ednaml.config.validate import check_structure, destinations_are_the_users
from ednaml.errors import ConfigError, Problem, did_you_mean, locate, show
from ednaml.kinds import Trust


def _resolver(problems: list[Problem], trust: Trust) -> Callable[[str, Any, tuple], Any]:
    def resolve(kind: str, name: Any, path: tuple) -> Any:
        if not isinstance(name, str) or not name:
            problems.append(Problem(path, f"{show(name)} is not a {kind.replace('_', ' ')} name"))
            return None
        try:
            return registry.get(kind, name, trust.of(path))
        except registry.RegistryError as err:
            problems.append(Problem(path, str(err)))
        except ImportError as err:  # a component whose optional extra is missing
            problems.append(Problem(path, f"{name!r} needs a package that is not installed: {err}"))
        return None

    return resolve


Resolved = dict[tuple, Any]  # key path -> the component it names (None where it does not resolve)


Target = tuple[str, Any, tuple, Any]  # kind, component, key path of its kwargs, the kwargs


def argument_targets(cfg: dict[str, Any], resolved: Resolved) -> list[Target]:
    """Each mapping of keyword arguments in the config with the component it is given to. Validation checks
    each against its component's signature; `path_keys` finds the paths among them. A malformed part of the
    config is passed over (the structure checks name it)."""
    from torch.utils.data import DataLoader

    found: list[Target] = []

    def add(make: Callable[[], list[Target]]) -> None:
        try:
            found.extend(make())
        except (KeyError, TypeError, AttributeError, IndexError, ValueError):
            pass

    def listed(section: str, kind: str, name: str, kwargs: str) -> list[Target]:
        return [
            (kind, component, (section, i, kwargs), entry[kwargs])
            for i, entry in enumerate(cfg[section])
            if (component := resolved.get((section, i, name))) is not None
        ]

    def reader_parts(reader: Any) -> list[Target]:
        dr = cfg["EXECUTION"]["DATAREADER"]
        parts: list[Target] = [
            ("crawler", reader.crawler, ("EXECUTION", "DATAREADER", "CRAWLER_ARGS"), dr["CRAWLER_ARGS"])
        ]
        dataset = resolved.get(("EXECUTION", "DATAREADER", "GENERATOR")) if dr["GENERATOR"] else reader.dataset
        if dataset is not None:
            parts += [
                ("dataset", dataset, ("EXECUTION", "DATAREADER", key), dr[key])
                for key in ("DATASET_ARGS", "GENERATOR_ARGS")
            ]
        return parts + [
            ("transforms", reader.transforms, (section, "ARGS"), cfg[section]["ARGS"])
            for section in ("TRAIN_TRANSFORMATION", "TEST_TRANSFORMATION")
        ]

    if (step_logic := resolved.get(("EXECUTION", "STEP_LOGIC"))) is not None:
        add(
            lambda: [
                (
                    "step_logic",
                    step_logic,
                    ("EXECUTION", "STEP_LOGIC_ARGS"),
                    {k: v for k, v in cfg["EXECUTION"]["STEP_LOGIC_ARGS"].items() if k != "accumulation_steps"},
                )
            ]
        )
    if (reader := resolved.get(("EXECUTION", "DATAREADER", "DATAREADER"))) is not None:
        add(lambda: reader_parts(reader))
    add(
        lambda: [
            (
                "dataloader",
                DataLoader,
                ("EXECUTION", "DATAREADER", "DATALOADER_ARGS"),
                cfg["EXECUTION"]["DATAREADER"]["DATALOADER_ARGS"],
            )
        ]
    )
    if (arch := resolved.get(("MODEL", "MODEL_ARCH"))) is not None:
        add(lambda: [("model", arch, ("MODEL", "MODEL_KWARGS"), cfg["MODEL"]["MODEL_KWARGS"])])
    add(
        lambda: [
            ("loss", loss, ("LOSS", i, "KWARGS", j), entry["KWARGS"][j] or {})
            for i, entry in enumerate(cfg["LOSS"])
            for j in range(min(len(entry["LOSSES"]), len(entry["KWARGS"])))
            if (loss := resolved.get(("LOSS", i, "LOSSES", j))) is not None
        ]
    )
    for section, kind, name, kwargs in (
        ("OPTIMIZER", "optimizer", "OPTIMIZER", "OPTIMIZER_KWARGS"),
        ("LOSS_OPTIMIZER", "optimizer", "OPTIMIZER", "OPTIMIZER_KWARGS"),
        ("SCHEDULER", "scheduler", "LR_SCHEDULER", "LR_KWARGS"),
        ("LOSS_SCHEDULER", "scheduler", "LR_SCHEDULER", "LR_KWARGS"),
        ("MODEL_PLUGIN", "plugin", "PLUGIN", "PLUGIN_KWARGS"),
    ):
        add(lambda section=section, kind=kind, name=name, kwargs=kwargs: listed(section, kind, name, kwargs))
    if (deploy := resolved.get(("DEPLOYMENT", "DEPLOY"))) is not None:
        add(lambda: [("deployment", deploy, ("DEPLOYMENT", "DEPLOYMENT_ARGS"), cfg["DEPLOYMENT"]["DEPLOYMENT_ARGS"])])
    return found


def path_keys(cfg: dict[str, Any], trust: Trust) -> list[tuple]:
    """Every key of the config that holds a path: the schema's (paths.SCHEMA_PATHS) and each component
    argument annotated `Location` that the config sets (names that do not resolve are validation's to report)."""
    resolve = _resolver([], trust)
    resolved = {path: resolve(kind, name, path) for path, kind, name in component_paths(cfg)}
    keys = [key for key in SCHEMA_PATHS if key != ("EXECUTION", "IMPORTS")]  # IMPORTS: anchored before it is imported
    for kind, component, path, kwargs in argument_targets(cfg, resolved):
        if isinstance(kwargs, Mapping):
            named = [name for name in location_arguments(component) if name in kwargs]
            keys += [path + (name,) for name in named]
            if kind == "transforms":  # the shared section the split's arguments were written in
                keys += [("TRANSFORMATION", "ARGS", name) for name in named]
    return list(dict.fromkeys(keys))


def arguments_fit(cfg: dict[str, Any], resolved: Resolved, problems: list[Problem]) -> None:
    """Every mapping of keyword arguments against the signature of the component it is given to."""
    for kind, component, path, kwargs in argument_targets(cfg, resolved):
        problems += check_arguments(kind, component, kwargs, path)


def losses_learn_with_an_optimizer(cfg: dict[str, Any], resolved: Resolved, problems: list[Problem]) -> None:
    """A loss that learns has an optimizer."""
    optimized_losses = {e["OPTIMIZER_NAME"] for e in cfg["LOSS_OPTIMIZER"]}
    for i, entry in enumerate(cfg["LOSS"]):
        for j, name in enumerate(entry["LOSSES"]):
            loss = resolved.get(("LOSS", i, "LOSSES", j))
            if getattr(loss, "learnable", False) and entry["NAME"] not in optimized_losses:
                problems.append(
                    Problem(
                        ("LOSS", i, "LOSSES", j),
                        f"{name} learns parameters: add a LOSS_OPTIMIZER entry with OPTIMIZER_NAME: {entry['NAME']}",
                    )
                )


def deployment_output_fits(cfg: dict[str, Any], resolved: Resolved, problems: list[Problem]) -> None:
    output = cfg["DEPLOYMENT"]["OUTPUT_ARGS"]
    if not isinstance(output, dict):
        problems.append(Problem(("DEPLOYMENT", "OUTPUT_ARGS"), f"{show(output)} is not a mapping"))
        return
    for key, value in output.items():
        if key != "format":
            problems.append(
                Problem(
                    ("DEPLOYMENT", "OUTPUT_ARGS", key),
                    "is not an output option" + did_you_mean(key, ["format"], "; the option is format"),
                )
            )
        elif value not in OUTPUT_FORMATS:
            problems.append(
                Problem(
                    ("DEPLOYMENT", "OUTPUT_ARGS", "format"),
                    f"{show(value)} is not one of {', '.join(OUTPUT_FORMATS)}",
                )
            )


# Each component rule reads the resolved components and adds what it finds to `problems` as it goes, so a
# rule that stops at a malformed value keeps what it found before it.
COMPONENT_RULES = [arguments_fit, losses_learn_with_an_optimizer, deployment_output_fits]


def check_components(cfg: dict[str, Any], trust: Trust | None = None) -> list[Problem]:
    """Every component name resolves (dotted paths only where `trust` allows: a registry.Trust, default the
    whole config), then every kwarg is a parameter of its component; each rule on its own, as in run_rules."""
    trust = trust or Trust()
    problems: list[Problem] = []
    resolve = _resolver(problems, trust)
    resolved = {path: resolve(kind, name, path) for path, kind, name in component_paths(cfg)}
    for rule in COMPONENT_RULES:
        try:
            rule(cfg, resolved, problems)
        except (KeyError, TypeError, AttributeError, IndexError, ValueError):
            continue
    if isinstance(cfg.get("trainer"), dict):
        from ednaml.adapters.trainer import check_trainer_keys

        problems += check_trainer_keys(cfg["trainer"], trust)
    return problems


def validate(
    cfg: dict[str, Any],
    source: str | None = None,
    origins: dict[tuple, str] | None = None,
    trusted: bool | Trust = True,
) -> None:
    """Raise one ConfigError listing every problem in `cfg` (with the file or flag each value came from).
    A config that is not `trusted` (from a checkpoint or run folder; a registry.Trust says how far) names
    only registered components and Lightning's own classes, with data for their arguments."""
    trust = trusted if isinstance(trusted, Trust) else Trust.given(trusted, origins)
    problems = check_structure(cfg, origins) + check_components(cfg, trust)
    problems += [] if problems else destinations_are_the_users(cfg, trust)
    if not problems:  # every value well-formed (what the Trainer itself refuses, build_trainer says as it builds it)
        from ednaml.tracking.wandb import login_problem

        problems = [p for p in [login_problem(cfg)] if p]
    if problems:
        first: dict[tuple, Problem] = {}
        for problem in locate(problems, origins or {}):  # one message per key path
            first.setdefault(problem.path, problem)
        raise ConfigError(list(first.values()), source)
