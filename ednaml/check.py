"""`ednaml check`: build every part of a run and try one step of it, without training.

Reads one batch of each split, runs the model and every loss, one backward pass and one optimizer step
on a throwaway copy, and lays out what the run will do. Every problem is reported, with its key path.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ednaml.adapters.preflight import forward, monitor_problems, output_problems, problems_from, seed, shape_of
from ednaml.errors import Problem
from ednaml.faults import explain
from ednaml.registry import Trust
from ednaml.utils import text_table


def _lr_schedule(probe: Any, optimizer: Any, steps_per_epoch: int, epochs: int) -> list[str]:
    """The learning rate of every param group at the start of each epoch, simulated on `probe`'s schedules
    (a throwaway copy of the module: this steps them)."""
    groups = [(g.get("name", str(i)), g) for i, g in enumerate(optimizer.param_groups)]
    plateau = [s.name for s in probe.schedules.schedules if s.monitor]
    rows = [["epoch"] + [name for name, _ in groups]]
    step = 0
    with warnings.catch_warnings():  # the simulation steps schedulers without optimizer steps, on purpose
        warnings.simplefilter("ignore")
        for epoch in range(epochs):
            probe.schedules.warm(step)
            rows.append([str(epoch)] + [f"{g['lr']:.4g}" for _, g in groups])
            for _ in range(steps_per_epoch):
                probe.schedules.warm(step)
                step += 1
                probe.schedules.count_steps()
                probe.schedules.after_step({})
            probe.schedules.after_epoch({})
    shown = rows if len(rows) <= 13 else rows[:7] + [["..."] * len(rows[0])] + rows[-5:]
    lines = text_table(shown, indent="  ").splitlines()
    if plateau:
        lines.append(f"  (ReduceLROnPlateau of {', '.join(plateau)} depends on its MONITOR: shown constant)")
    return lines


@dataclass
class Report:
    """`check`'s report as it is made: its lines, and every problem found, each at its key path."""

    lines: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines += lines

    def failed(self, err: BaseException, default: tuple) -> None:
        self.problems += problems_from(err, default)


def check(config: dict[str, Any], trust: Trust = Trust()) -> tuple[list[str], list[Problem]]:
    """The report's lines and every problem found in a resolved, valid config (that may name code as `trust` says):
    the data and a batch of each split, the model, one training step, the optimizers and their schedule, the
    checkpoints, the Trainer and the run folder."""
    from ednaml.adapters.datamodule import EdnaDataModule
    from ednaml.adapters.module import EdnaModule
    from ednaml.config.sections import sections

    started = time.time()
    config = sections(config)
    seed(config)  # the weights and first batches a run would have
    report = Report()
    try:
        data = EdnaDataModule(config)
    except Exception as err:  # noqa: BLE001 - every failure becomes a reported problem
        report.failed(err, READER)
        return report.lines, report.problems
    batches = _data(report, data)
    try:
        module = EdnaModule(config, data.labels, data.info)
    except Exception as err:  # noqa: BLE001
        report.failed(err, ("MODEL",))
        return report.lines, report.problems
    _model(report, module, data)
    probe = copy.deepcopy(module)  # a throwaway copy: one optimizer step and the simulated schedule change it
    try:
        optimizer = probe.build_optimizers()
    except Exception as err:  # noqa: BLE001
        report.failed(err, ("OPTIMIZER",))
        optimizer = None
    if "train" in batches:
        _training_step(report, probe, optimizer, batches["train"], data.labels, config)
    if optimizer is not None:
        _optimizers(report, probe, optimizer, data, config)
    del probe
    _checkpoints_and_trainer(report, config, data, trust)
    report.add(f"checked in {time.time() - started:.1f} s")
    unique = {(p.path, p.message): p for p in report.problems}
    return [line.rstrip() for line in report.lines], list(unique.values())


READER = ("EXECUTION", "DATAREADER", "DATAREADER")


def _data(report: Report, data: Any) -> dict[str, Any]:
    """The samples and labels, and the first batch of each split (a sample that fails: stopped or skipped, as
    a run does)."""
    report.add(
        "data",
        "  samples: " + ", ".join(f"{split} {len(samples)}" for split, samples in data.crawl.splits.items()),
        "  labels: " + ", ".join(f"{name} ({len(classes)} classes)" for name, classes in data.labels.items()),
    )
    if not data.has("train"):
        report.problems.append(Problem(READER, "the data has no training samples"))
    batches: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        if not data.has(split):
            report.add(f"  {split}: none" + (" (fit will not validate)" if split == "val" else ""))
            continue
        try:
            loader = data.train_dataloader() if split == "train" else data._evaluation_loader(split)
            batches[split] = data.on_before_batch_transfer(next(iter(loader)), 0)
            report.add(f"  {split} batch: {shape_of(batches[split])}, {len(loader)} batches")
            if data.dropped:
                report.add(
                    f"    {len(data.dropped)} sample(s) of it failed to load and were skipped "
                    "(EXECUTION.DATAREADER.BAD_SAMPLES: skip)"
                )
        except Exception as err:  # noqa: BLE001
            report.failed(err, ("EXECUTION", "DATAREADER"))
    return batches


def _model(report: Report, module: Any, data: Any) -> None:
    report.problems += monitor_problems(module, data.has("val"))
    report.add(
        "model",
        f"  {type(module.model).__name__}: {sum(p.numel() for p in module.model.parameters()):,} parameters; "
        f"outputs: " + ", ".join(f"{n} -> {o.label}" for n, o in module.outputs.items()),
    )


def _training_step(
    report: Report, probe: Any, optimizer: Any, batch: Any, labels: dict[str, list[str]], config: Any
) -> None:
    """The model's outputs and every loss for one batch, then a backward pass and one optimizer step, on `probe`."""
    try:
        outputs, targets = forward(probe, batch)
        report.problems += output_problems(outputs, labels)
        report.add("  forward: " + ", ".join(f"{n} {shape_of(o.logits)}" for n, o in outputs.items()))
        loss, terms = probe.criterion(outputs, targets)
        report.add("losses (one batch)", *[f"  {name}: {value.item():.4f}" for name, value in terms.items()])
        report.add(f"  total: {loss.item():.4f}")
        if not torch.isfinite(loss):
            report.problems.append(Problem(("LOSS",), f"the loss of the first batch is {loss.item()}"))
        if optimizer is not None:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            report.add("  backward and one optimizer step: ok")
    except Exception as err:  # noqa: BLE001
        reason = explain(err, config.TRAIN_TRANSFORMATION.BATCH_SIZE)
        if reason:
            report.problems.append(Problem(("TRANSFORMATION", "BATCH_SIZE"), reason))
        else:
            report.failed(err, ("MODEL",))


def _optimizers(report: Report, probe: Any, optimizer: Any, data: Any, config: Any) -> None:
    """The parameter groups, and the learning rate of each at the start of every epoch."""
    from ednaml.optim.optimizers import format_table

    try:
        report.add("parameter groups", *["  " + line for line in format_table(probe.parameter_table).splitlines()])
        accumulation = config.EXECUTION.STEP_LOGIC_ARGS["accumulation_steps"]
        steps = max(1, len(data.train_dataloader()) // accumulation) if data.has("train") else 1
        report.add(f"learning rate at the start of each epoch ({steps} optimizer steps per epoch)")
        report.add(*_lr_schedule(probe, optimizer, steps, config.EXECUTION.EPOCHS))
    except Exception as err:  # noqa: BLE001
        report.failed(err, ("OPTIMIZER",))


def _checkpoints_and_trainer(report: Report, config: Any, data: Any, trust: Trust) -> None:
    """What is saved and when, where backups go, the Trainer (built, as a run builds it), the run folder."""
    from ednaml.adapters.callbacks import backup_problem, checkpoint_callbacks
    from ednaml.adapters.trainer import build_trainer
    from ednaml.tracking.run_folder import RunFolder
    from ednaml.tracking.wandb import wandb_mode

    placeholder = RunFolder.new(config.trainer.get("default_root_dir") or "runs", config)  # not made
    save, epochs = config.SAVE, config.EXECUTION.EPOCHS
    every = save.SAVE_FREQUENCY
    saved = [e - 1 for e in range(1, epochs + 1) if every and e % every == 0]
    prefix = f"{save.MODEL_CORE_NAME}-v{save.MODEL_VERSION}"
    report.add(
        "checkpoints",
        f"  {prefix}_epoch{{E}}_step{{S}}.ckpt after epochs (E, from 0): {saved or 'none'}; "
        "last.ckpt after every epoch",
    )
    if save.STEP_SAVE_FREQUENCY:
        report.add(f"  and every {save.STEP_SAVE_FREQUENCY} optimizer steps")
    if save.MONITOR and data.has("val"):
        report.add(f"  the best by {save.MONITOR} ({save.MONITOR_MODE}) as {prefix}_best_epoch{{E}}_step{{S}}.ckpt")
    if save.DRIVE_BACKUP or save.LOG_BACKUP:
        report.add(f"  copies to {save.CHECKPOINT_DIRECTORY}")
        if trouble := backup_problem(save.CHECKPOINT_DIRECTORY):
            report.problems.append(Problem(("SAVE", "CHECKPOINT_DIRECTORY"), trouble))
    try:
        build_trainer(
            config.trainer, str(placeholder.path), checkpoint_callbacks(save, placeholder, data.has("val")), trust
        )
    except Exception as err:  # noqa: BLE001
        report.failed(err, ("trainer",))
    report.add("run folder", f"  {placeholder.path.parent}/<run id>  (W&B: {wandb_mode(config)})")
