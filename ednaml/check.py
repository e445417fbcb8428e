"""`ednaml check`: build every part of a run and try one step of it, without training.

Reads one batch of each split, runs the model and every loss, one backward pass and one optimizer step
on a throwaway copy, and lays out what the run will do. Every problem is reported, with its key path.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ednaml.adapters.preflight import forward, monitor_problems, output_problems, problems_from, shape_of
from ednaml.errors import Problem
from ednaml.faults import explain
from ednaml.registry import Trust
from ednaml.utils import text_table


def _lr_schedule(module: Any, steps_per_epoch: int, epochs: int) -> list[str]:
    """The learning rate of every param group at the start of each epoch, simulated on a copy."""
    probe = copy.deepcopy(module)
    optimizer = probe.configure_optimizers()
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


def check(config: dict[str, Any], trust: Trust = Trust()) -> tuple[list[str], list[Problem]]:
    """The report's lines and every problem found in a resolved, valid config (that may name code as `trust` says)."""
    from ednaml.adapters.callbacks import backup_problem, checkpoint_callbacks
    from ednaml.adapters.datamodule import EdnaDataModule
    from ednaml.adapters.module import EdnaModule
    from ednaml.adapters.trainer import build_trainer
    from ednaml.config.sections import sections
    from ednaml.optim.optimizers import format_table
    from ednaml.tracking.run_folder import RunFolder, experiment_name, new_run_id
    from ednaml.tracking.wandb import wandb_mode

    started = time.time()
    config = sections(config)
    lines: list[str] = []
    problems: list[Problem] = []
    reader = ("EXECUTION", "DATAREADER", "DATAREADER")

    try:
        data = EdnaDataModule(config)
    except Exception as err:  # noqa: BLE001 - every failure becomes a reported problem
        return lines, problems_from(err, reader)
    lines.append("data")
    lines.append("  samples: " + ", ".join(f"{split} {len(samples)}" for split, samples in data.crawl.splits.items()))
    lines.append("  labels: " + ", ".join(f"{name} ({len(classes)} classes)" for name, classes in data.labels.items()))
    if not data.has("train"):
        problems.append(Problem(reader, "the data has no training samples"))
    batches: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        if not data.has(split):
            lines.append(f"  {split}: none" + (" (fit will not validate)" if split == "val" else ""))
            continue
        try:
            loader = data.train_dataloader() if split == "train" else data._evaluation_loader(split)
            batches[split] = data.on_before_batch_transfer(
                next(iter(loader)), 0
            )  # a sample that fails: stopped or skipped, as a run does
            lines.append(f"  {split} batch: {shape_of(batches[split])}, {len(loader)} batches")
            if data.dropped:
                lines.append(
                    f"    {len(data.dropped)} sample(s) of it failed to load and were skipped "
                    "(EXECUTION.DATAREADER.BAD_SAMPLES: skip)"
                )
        except Exception as err:  # noqa: BLE001
            problems += problems_from(err, ("EXECUTION", "DATAREADER"))

    try:
        module = EdnaModule(config, data.labels, data.info)
    except Exception as err:  # noqa: BLE001
        return lines, problems + problems_from(err, ("MODEL",))
    problems += monitor_problems(module, data.has("val"))
    lines.append("model")
    lines.append(
        f"  {type(module.model).__name__}: {sum(p.numel() for p in module.model.parameters()):,} parameters; "
        f"outputs: " + ", ".join(f"{n} -> {o.label}" for n, o in module.outputs.items())
    )

    if "train" in batches:
        probe = copy.deepcopy(module)
        batch = batches["train"]
        try:
            outputs, targets = forward(probe, batch)
            problems += output_problems(outputs, data.labels)
            lines.append("  forward: " + ", ".join(f"{n} {shape_of(o.logits)}" for n, o in outputs.items()))
            loss, terms = probe.criterion(outputs, targets)
            lines.append("losses (one batch)")
            lines += [f"  {name}: {value.item():.4f}" for name, value in terms.items()] + [
                f"  total: {loss.item():.4f}"
            ]
            if not torch.isfinite(loss):
                problems.append(Problem(("LOSS",), f"the loss of the first batch is {loss.item()}"))
            optimizer = probe.configure_optimizers()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            lines.append("  backward and one optimizer step: ok")
        except Exception as err:  # noqa: BLE001
            reason = explain(err, config.TRAIN_TRANSFORMATION.BATCH_SIZE)
            problems += (
                [Problem(("TRANSFORMATION", "BATCH_SIZE"), reason)] if reason else problems_from(err, ("MODEL",))
            )
        del probe

    try:
        module.configure_optimizers()
        lines.append("parameter groups")
        lines += ["  " + line for line in format_table(module.parameter_table).splitlines()]
        steps = (
            max(1, len(data.train_dataloader()) // config.EXECUTION.TRAINER_ARGS["accumulation_steps"])
            if data.has("train")
            else 1
        )
        lines.append(f"learning rate at the start of each epoch ({steps} optimizer steps per epoch)")
        lines += _lr_schedule(module, steps, config.EXECUTION.EPOCHS)
    except Exception as err:  # noqa: BLE001
        problems += problems_from(err, ("OPTIMIZER",))

    root = config.trainer.get("default_root_dir") or "runs"
    placeholder = RunFolder(
        path=Path(root).absolute() / experiment_name(config) / new_run_id(),
        run_id="",
        experiment=experiment_name(config),
        writer=False,
    )
    save = config.SAVE
    epochs = config.EXECUTION.EPOCHS
    lines.append("checkpoints")
    every = save.SAVE_FREQUENCY
    saved = [e - 1 for e in range(1, epochs + 1) if every and e % every == 0]
    prefix = f"{save.MODEL_CORE_NAME}-v{save.MODEL_VERSION}"
    lines.append(
        f"  {prefix}_epoch{{E}}_step{{S}}.ckpt after epochs (E, from 0): {saved or 'none'}; last.ckpt after every epoch"
    )
    if save.STEP_SAVE_FREQUENCY:
        lines.append(f"  and every {save.STEP_SAVE_FREQUENCY} optimizer steps")
    if save.MONITOR and data.has("val"):
        lines.append(f"  the best by {save.MONITOR} ({save.MONITOR_MODE}) as {prefix}_best_epoch{{E}}_step{{S}}.ckpt")
    if save.DRIVE_BACKUP or save.LOG_BACKUP:
        lines.append(f"  copies to {save.CHECKPOINT_DIRECTORY}")
        if trouble := backup_problem(save.CHECKPOINT_DIRECTORY):
            problems.append(Problem(("SAVE", "CHECKPOINT_DIRECTORY"), trouble))
    quiet = logging.getLogger("lightning.pytorch")
    level, quiet.level = quiet.level, logging.WARNING  # not the Trainer's device banner in the middle of the report
    try:
        build_trainer(
            config.trainer, str(placeholder.path), checkpoint_callbacks(save, placeholder, data.has("val")), [], trust
        )
    except Exception as err:  # noqa: BLE001
        problems += problems_from(err, ("trainer",))
    finally:
        quiet.setLevel(level)
    lines.append("run folder")
    lines.append(f"  {placeholder.path.parent}/<run id>  (W&B: {wandb_mode(config)})")
    lines.append(f"checked in {time.time() - started:.1f} s")
    unique = {(p.path, p.message): p for p in problems}
    return [line.rstrip() for line in lines], list(unique.values())
