"""SCHEDULER entries: any torch.optim.lr_scheduler class by name, FineGrainedSteppedLR, and a linear warmup."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from ednaml import registry
from ednaml.registry import register

if TYPE_CHECKING:
    from ednaml.config import sections

log = logging.getLogger("ednaml")


@register("scheduler", "FineGrainedSteppedLR")
class FineGrainedSteppedLR(LRScheduler):
    """Adds to or multiplies the learning rate at milestones: lr_ops [[milestone, '+' or '*', value], ...]."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr_ops: Sequence[Sequence[Any]] = (),
        relative: bool = False,
        last_epoch: int = -1,
    ):
        ops = [(int(m), str(op), float(v)) for m, op, v in lr_ops]
        if [m for m, _, _ in ops] != sorted(m for m, _, _ in ops):
            raise ValueError("FineGrainedSteppedLR: lr_ops milestones must be in increasing order")
        for _, op, _ in ops:
            if op not in ("+", "*"):
                raise ValueError(f"FineGrainedSteppedLR: operation {op!r} is not '+' or '*'")
        offset = last_epoch + 1 if relative else 0
        self.lr_ops = [(m + offset, op, v) for m, op, v in ops]
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lrs = []
        for base in self.base_lrs:
            lr = base
            for milestone, op, value in self.lr_ops:
                if milestone <= self.last_epoch:
                    lr = lr + value if op == "+" else lr * value
            lrs.append(lr)
        return lrs


@dataclass
class Schedule:
    """One SCHEDULER entry bound to its optimizer."""

    name: str
    scheduler: Any
    optimizer: torch.optim.Optimizer
    interval: str
    monitor: str | None
    warmup_steps: int
    warmup_start: float


def build_schedules(
    entries: tuple[sections.SchedulerEntry, ...],
    optimizers: dict[str, torch.optim.Optimizer],
    section: str = "SCHEDULER",
) -> list[Schedule]:
    """Each entry of `section` drives the optimizer its SCHEDULER_NAME names (blank: the only optimizer)."""
    schedules = []
    for i, entry in enumerate(entries):
        name = entry.SCHEDULER_NAME or next(iter(optimizers))
        optimizer = optimizers[name]
        cls = registry.get("scheduler", entry.LR_SCHEDULER)
        monitor = entry.MONITOR or ("val/loss" if issubclass(cls, ReduceLROnPlateau) else None)
        scheduler = registry.build("scheduler", cls, entry.LR_KWARGS, optimizer, at=(section, i, "LR_KWARGS"))
        schedules.append(
            Schedule(
                name,
                scheduler,
                optimizer,
                entry.INTERVAL,
                monitor,
                int(entry.WARMUP_STEPS),
                float(entry.WARMUP_START_FACTOR),
            )
        )
    return schedules


class ScheduleRunner:
    """Steps the schedulers: every epoch or every optimizer step, ReduceLROnPlateau on its MONITOR.

    A warmup scales an optimizer's learning rates linearly from WARMUP_START_FACTOR to 1 over the first
    WARMUP_STEPS optimizer steps; its scheduler sees the unscaled rates, so the two compose. (torch's
    LinearLR + SequentialLR would step both at one interval and cannot hold ReduceLROnPlateau, while a
    warmup here counts optimizer steps under a scheduler that may count epochs or read a metric.)
    """

    def __init__(self, schedules: list[Schedule]):
        self.schedules = schedules
        self.scheduled: dict[int, float] = {}  # id(param group) -> its lr before the warmup factor
        self.warned: set[str] = set()
        # Optimizer steps taken (counted by a hook, so a step that AMP's GradScaler skipped is not one), and how
        # many each step-interval scheduler has followed: a scheduler steps only after its optimizer did.
        self.taken: dict[int, int] = {}
        self.followed: dict[int, int] = {}
        for optimizer in {id(s.optimizer): s.optimizer for s in schedules}.values():
            self.taken[id(optimizer)] = 0
            optimizer.register_step_post_hook(self._count)

    def _count(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.taken[id(optimizer)] = self.taken.get(id(optimizer), 0) + 1

    def count_steps(self) -> None:
        """Count one step of every optimizer without taking it: `check`'s preview of the schedule."""
        for key in self.taken:
            self.taken[key] += 1

    def _restore(self) -> None:
        for schedule in self.schedules:
            for group in schedule.optimizer.param_groups:
                if id(group) in self.scheduled:
                    group["lr"] = self.scheduled.pop(id(group))

    def warm(self, step: int) -> None:
        """Before optimizer step `step` (0-based): apply each warmup's factor."""
        self._restore()
        for schedule in self.schedules:
            if step < schedule.warmup_steps:
                factor = schedule.warmup_start + (1 - schedule.warmup_start) * (step + 1) / schedule.warmup_steps
                for group in schedule.optimizer.param_groups:
                    self.scheduled[id(group)] = group["lr"]
                    group["lr"] = group["lr"] * factor

    def monitors(self, interval: str) -> bool:
        """Whether a scheduler stepped at `interval` reads a logged metric (ReduceLROnPlateau)."""
        return any(s.interval == interval and isinstance(s.scheduler, ReduceLROnPlateau) for s in self.schedules)

    def after_step(self, metrics: dict[str, Any]) -> None:
        self._step("step", metrics)

    def after_epoch(self, metrics: dict[str, Any]) -> None:
        self._step("epoch", metrics)

    def _step(self, interval: str, metrics: dict[str, Any]) -> None:
        self._restore()
        for schedule in self.schedules:
            if schedule.interval != interval:
                continue
            if interval == "step":  # only after an optimizer step that happened (not one AMP skipped)
                taken = self.taken[id(schedule.optimizer)]
                if taken == self.followed.get(id(schedule), 0):
                    continue
                self.followed[id(schedule)] = taken
            if isinstance(schedule.scheduler, ReduceLROnPlateau):
                value = metrics.get(schedule.monitor)
                if value is None:
                    if schedule.monitor not in self.warned:
                        self.warned.add(schedule.monitor)
                        log.warning(
                            "SCHEDULER %s: MONITOR %r was not logged; ReduceLROnPlateau not stepped",
                            schedule.name,
                            schedule.monitor,
                        )
                    continue
                schedule.scheduler.step(float(value))
            else:
                schedule.scheduler.step()

    def state_dict(self) -> list[dict[str, Any]]:
        return [schedule.scheduler.state_dict() for schedule in self.schedules]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for schedule, state in zip(self.schedules, states):
            schedule.scheduler.load_state_dict(state)
