"""A sweep's search space, read from YAML: which config keys to vary, how, and what to optimise.

METRIC: val/accuracy          # a value the runs log; each trial's best value of it is its result
DIRECTION: maximize           # or minimize
TRIALS: 8                     # the study's size (`--trials` overrides it)
SAMPLER: tpe                  # tpe | random | grid
PRUNER: median                # none | median | percentile | hyperband | successive_halving | threshold,
                              # or {NAME: {arguments}}: {threshold: {lower: 0.5}}
SEED: 0                       # the sampler's seed
SWEEP:
  OPTIMIZER.0.BASE_LR: {float: [1.0e-4, 1.0e-1], log: true}
  LOSS.0.LOSSES: {choice: [[SoftmaxLogitsLoss], [SoftmaxLabelSmooth]]}
  MODEL.MODEL_KWARGS.width: {int: [16, 64], step: 16}
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from ednaml.errors import ConfigError, Problem, did_you_mean

SAMPLERS = ("tpe", "random", "grid")
# PRUNER: a name, or {name: {its arguments}} (e.g. {threshold: {lower: 0.5}}, {median: {n_startup_trials: 2}})
PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "threshold": "ThresholdPruner",
}
DIRECTIONS = ("maximize", "minimize")
KINDS = ("float", "int", "choice")
DEFAULTS: dict[str, Any] = {
    "METRIC": "val/accuracy",
    "DIRECTION": "maximize",
    "TRIALS": 8,
    "SAMPLER": "tpe",
    "PRUNER": "median",
    "SEED": 0,
}


@dataclass(frozen=True)
class Param:
    """One config key of the search: a float or int range (`log`, `step`) or a choice among values."""

    key: str
    kind: str
    low: Any = None
    high: Any = None
    choices: tuple = ()
    log: bool = False
    step: Any = None

    def suggest(self, trial: Any) -> Any:
        if self.kind == "choice":  # Optuna stores choices that are plain values; a list is chosen by its index
            index = trial.suggest_categorical(self.key, list(range(len(self.choices))))
            return self.choices[index]
        suggest = trial.suggest_float if self.kind == "float" else trial.suggest_int
        return suggest(
            self.key, self.low, self.high, log=self.log, **({"step": self.step} if self.step is not None else {})
        )

    def value(self, stored: Any) -> Any:
        """The config value of what Optuna stored for this key (a choice's index -> the choice)."""
        return self.choices[stored] if self.kind == "choice" else stored

    def grid(self) -> list[Any] | None:
        """Every value, where the space is finite (a choice, or a range with a step); else None."""
        if self.kind == "choice":
            return list(range(len(self.choices)))
        if self.step is None:
            return None if self.kind == "float" else list(range(self.low, self.high + 1))
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [self.low + i * self.step for i in range(count)]

    def probes(self) -> list[Any]:
        """The values checked before the sweep starts: each choice, or a range's ends."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]
    metric: str
    direction: str
    trials: int
    sampler: str
    pruner: str
    seed: int
    source: str
    pruner_args: dict[str, Any] = field(default_factory=dict)

    @property
    def limit(self) -> int:
        """TRIALS, or fewer where a grid has fewer points."""
        if self.sampler != "grid":
            return self.trials
        return min(self.trials, math.prod(len(p.grid() or ()) for p in self.params))

    def describe(self) -> dict[str, Any]:
        """What defines the study (kept with it, so a resumed study is checked against its space)."""
        return {
            "METRIC": self.metric,
            "DIRECTION": self.direction,
            "SAMPLER": self.sampler,
            "SEED": self.seed,
            "PRUNER": {self.pruner: self.pruner_args} if self.pruner_args else self.pruner,
            "SWEEP": {
                p.key: (
                    {"choice": list(p.choices)}
                    if p.kind == "choice"
                    else {p.kind: [p.low, p.high], "log": p.log, "step": p.step}
                )
                for p in self.params
            },
        }


def _number(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind == "int" else isinstance(value, (int, float)) and math.isfinite(value)


def _param(key: str, spec: Any, problems: list[Problem]) -> Param | None:
    where = ("SWEEP", key)
    if not isinstance(key, str) or not key or key.startswith(".") or ".." in key:
        problems.append(Problem(where, "a key is a config key's dotted path, e.g. OPTIMIZER.0.BASE_LR"))
        return None
    kinds = [k for k in KINDS if isinstance(spec, dict) and k in spec]
    if len(kinds) != 1:
        problems.append(
            Problem(
                where, f"{spec!r}: give one of {{float: [LOW, HIGH]}}, {{int: [LOW, HIGH]}} or {{choice: [A, B, ...]}}"
            )
        )
        return None
    kind = kinds[0]
    extra = set(spec) - ({kind} if kind == "choice" else {kind, "log", "step"})
    if extra:
        problems.append(
            Problem(
                where,
                f"unknown option(s) {sorted(map(str, extra))} for {kind}"
                + ("" if kind == "choice" else "; a range takes log and step"),
            )
        )
        return None
    if kind == "choice":
        choices = spec["choice"]
        if not isinstance(choices, list) or not choices:
            problems.append(Problem(where + ("choice",), f"{choices!r}: a non-empty list of values"))
            return None
        return Param(key, kind, choices=tuple(choices))
    bounds, log, step = spec[kind], spec.get("log", False), spec.get("step")
    if not (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(_number(b, kind) for b in bounds)
        and bounds[0] < bounds[1]
    ):
        problems.append(Problem(where + (kind,), f"{bounds!r}: [LOW, HIGH], two {kind}s with LOW < HIGH"))
        return None
    if not isinstance(log, bool) or (log and bounds[0] <= 0):
        problems.append(Problem(where + ("log",), f"{log!r}: true or false; a log range needs LOW > 0"))
        return None
    if step is not None and (not _number(step, kind) or step <= 0 or log):
        problems.append(Problem(where + ("step",), f"{step!r}: a positive {kind}, and not with log: true"))
        return None
    return Param(key, kind, low=bounds[0], high=bounds[1], log=log, step=step)


def read_space(path: str | os.PathLike, trials: int | None = None) -> Space:
    """The search space of a sweep file, or a ConfigError naming every problem in it."""
    from ednaml.config.load import read_yaml

    source = str(path)
    raw = read_yaml(path)
    problems: list[Problem] = []
    for key in set(raw) - set(DEFAULTS) - {"SWEEP"}:
        problems.append(
            Problem(
                (key,),
                "not a sweep key"
                + did_you_mean(key, [*DEFAULTS, "SWEEP"], f"; sweep keys are SWEEP, {', '.join(DEFAULTS)}"),
            )
        )
    values = {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS}}
    if trials is not None:
        values["TRIALS"] = trials
    pruner = values["PRUNER"]
    if isinstance(pruner, dict) and len(pruner) == 1 and isinstance(next(iter(pruner.values())) or {}, dict):
        values["PRUNER"], pruner_args = next(iter(pruner)), next(iter(pruner.values())) or {}
    else:
        pruner_args = {}
    checks = [("DIRECTION", DIRECTIONS), ("SAMPLER", SAMPLERS), ("PRUNER", tuple(PRUNERS))]
    for key, allowed in checks:
        if values[key] not in allowed:
            problems.append(
                Problem((key,), f"{values[key]!r}: one of {', '.join(allowed)}" + did_you_mean(values[key], allowed))
            )
    for key in ("TRIALS", "SEED"):
        if not _number(values[key], "int") or values[key] < (1 if key == "TRIALS" else 0):
            problems.append(
                Problem(
                    (key,),
                    f"{values[key]!r}: a whole number" + (" of at least 1" if key == "TRIALS" else " (0 or more)"),
                )
            )
    if not isinstance(values["METRIC"], str) or "/" not in values["METRIC"]:
        problems.append(
            Problem(("METRIC",), f"{values['METRIC']!r}: a value the runs log, e.g. val/accuracy or val/loss")
        )
    sweep = raw.get("SWEEP")
    if not isinstance(sweep, dict) or not sweep:
        problems.append(
            Problem(("SWEEP",), "the keys to search, e.g. {OPTIMIZER.0.BASE_LR: {float: [1.0e-4, 1.0e-1], log: true}}")
        )
        sweep = {}
    params = tuple(p for p in (_param(key, spec, problems) for key, spec in sweep.items()) if p is not None)
    if values["SAMPLER"] == "grid":
        for p in params:
            if p.grid() is None:
                problems.append(
                    Problem(
                        ("SWEEP", p.key), "SAMPLER grid needs a finite set: give the float range a step, or a choice"
                    )
                )
    if not problems and (problem := _pruner_problem(values["PRUNER"], pruner_args)):
        problems.append(problem)
    if problems:
        raise ConfigError(problems, source)
    return Space(
        params,
        values["METRIC"],
        values["DIRECTION"],
        values["TRIALS"],
        values["SAMPLER"],
        values["PRUNER"],
        values["SEED"],
        source,
        pruner_args,
    )


def make_pruner(name: str, args: dict[str, Any]) -> Any:
    import optuna

    return getattr(optuna.pruners, PRUNERS[name])(**args)


def _pruner_problem(name: str, args: dict[str, Any]) -> Problem | None:
    try:
        make_pruner(name, args)
    except (TypeError, ValueError) as err:
        return Problem(("PRUNER", name), f"{args!r}: {err}")
    return None
