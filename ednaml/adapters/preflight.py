"""What a run tries before it makes a run folder, and what `check` tries too: the optimizers build and two
training samples go through the model; and an exception said as a problem at the config key it names."""

from __future__ import annotations

import re
from typing import Any

import torch

from ednaml.errors import ConfigError, DataError, Problem, did_you_mean
from ednaml.faults import explain

KEY_PATH = re.compile(r"^((?:[A-Z_]+|trainer)(?:\[\d+\])?(?:\.[A-Za-z_][\w]*(?:\[\d+\])?)*): (.*)$", re.S)


def seed(config: Any) -> None:
    """The random number generators seeded as `seed_everything` says (false: not seeded), before anything is
    built: a run, and `check`, draw the same weights, batches and augmentations."""
    if config.seed_everything is not False:
        import lightning.pytorch as pl

        pl.seed_everything(int(config.seed_everything), workers=True, verbose=False)


def problem_from(err: BaseException, default: tuple) -> Problem:
    """A Problem at the key path the message starts with ('MODEL.MODEL_KWARGS: ...'), else at `default`."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)  # KeyError quotes its message
    if isinstance(err, DataError):
        return Problem(tuple(err.key.split(".")), text.split(": ", 1)[1] if ": " in text else text)
    match = KEY_PATH.match(text)
    if match:
        from ednaml.config.load import parse_key_path

        return Problem(tuple(parse_key_path(match.group(1))), match.group(2))
    return Problem(default, text)


def problems_from(err: BaseException, default: tuple) -> list[Problem]:
    """As problem_from; a ConfigError (a component's kwargs refused as it was built) keeps its own problems,
    a DataError each of its own."""
    if isinstance(err, DataError):
        return [Problem(tuple(key.split(".")), message) for key, message in err.problems]
    return list(err.problems) if isinstance(err, ConfigError) else [problem_from(err, default)]


def shape_of(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(shape_of(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shape_of(v)}" for k, v in value.items()) + "}"
    return type(value).__name__


def forward(module: Any, batch: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's outputs for `batch`; a batch it cannot take is said in the config's words."""
    try:
        return module.step_logic(module.model, batch)
    except RuntimeError as err:
        if explain(err):
            raise
        raise ValueError(
            f"MODEL: the model cannot take a training batch of {shape_of(batch)}: {err}. Check "
            "TRANSFORMATION.ARGS (i_shape, channels) against MODEL.MODEL_KWARGS (initial_channels, ...)"
        ) from err


def output_problems(outputs: dict[str, Any], labels: dict[str, list[str]]) -> list[Problem]:
    """Each output must give one score per class of its label."""
    problems = []
    for name, output in outputs.items():
        classes = len(labels[output.label])
        if output.logits.shape[-1] != classes:
            problems.append(
                Problem(
                    ("MODEL", "MODEL_KWARGS"),
                    f"output {name!r} gives {output.logits.shape[-1]} classes but label "
                    f"{output.label!r} has {classes}; leave its size blank to take it from the data",
                )
            )
    return problems


def monitor_problems(module: Any, has_val: bool) -> list[Problem]:
    """SAVE.MONITOR and each scheduler's MONITOR must name a value the run logs: the loss, a loss term or a
    metric of an output (Lightning would only find out after the first epoch)."""
    config = module.config
    logged = set(module.logged_names("train")) | set(module.logged_names("val"))
    val_names = sorted(name for name in logged if name.startswith("val/"))
    problems = []
    monitor = config.SAVE.MONITOR
    if monitor and has_val and monitor not in logged:
        problems.append(
            Problem(
                ("SAVE", "MONITOR"),
                f"{monitor!r} is not logged by this run; validation "
                f"logs {', '.join(val_names)}{did_you_mean(monitor, val_names)}",
            )
        )
    for section in ("SCHEDULER", "LOSS_SCHEDULER"):
        for i, entry in enumerate(config[section]):
            if entry.MONITOR and entry.MONITOR not in logged:
                problems.append(
                    Problem(
                        (section, i, "MONITOR"),
                        f"{entry.MONITOR!r} is not logged by this run; it logs "
                        f"{', '.join(sorted(logged))}{did_you_mean(entry.MONITOR, logged)}",
                    )
                )
    return problems


def preflight(module: Any, data: Any) -> list[Problem]:
    """What `fit` tries before it makes a run folder, as `check` does: the parameter groups and optimizers
    build (once: Lightning is handed these), and the model takes two training samples and gives one score per
    class. Nothing else is changed: evaluation mode, no gradients, the random number generators as they were."""
    problems: list[Problem] = []
    try:
        module.build_optimizers()
    except Exception as err:  # noqa: BLE001 - every failure becomes a reported problem
        problems += problems_from(err, ("OPTIMIZER",))
    problems += monitor_problems(module, data.has("val"))
    if not data.has("train"):
        return problems
    samples = data.crawl.splits["train"][:2]
    dataset = data.dataset_of(samples, train=False)
    collate = data.collate or torch.utils.data.default_collate
    training = module.training
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            module.eval()
            outputs, _ = forward(module, collate([dataset[i] for i in range(len(samples))]))
            problems += output_problems(outputs, data.labels)
        except Exception as err:  # noqa: BLE001
            problems += problems_from(err, ("MODEL",))
        finally:
            module.train(training)
    return problems
