"""Step logic: how a batch becomes named model outputs and named targets.

Lightning owns the loop (its Trainer, the `trainer:` section); the EdnaModule turns outputs and targets
into losses and metrics. Step logic is registered as kind "step_logic" and chosen by EXECUTION.STEP_LOGIC
(the original EdnaML called it a trainer: EXECUTION.TRAINER and `@register("trainer", ...)` are read as
these); the built-ins are in `ednaml.steps.classification`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class Output:
    """One model output: its logits, the features they came from (if the model gives them), its label."""

    logits: torch.Tensor
    features: torch.Tensor | None
    label: str


@dataclass(frozen=True)
class OutputInfo:
    """What the step logic knows of an output before any batch: its name, label and feature size."""

    name: str
    label: str
    features: int | None


def split_result(result: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A model's answer for one output: logits, or (logits, features)."""
    if isinstance(result, (tuple, list)):
        return result[0], result[1] if len(result) > 1 else None
    return result, None


class StepLogic:
    """The base of every step logic: `bind` says which outputs the model gives, `__call__` runs one batch."""

    multi_output = False

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.outputs: dict[str, OutputInfo] = {}

    def bind(self, model: nn.Module, labels: Sequence[str], target_label: str | None) -> dict[str, OutputInfo]:
        """Called once the data and model are known; returns the outputs the model gives, by name."""
        raise NotImplementedError

    def targets(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch's label columns by label name; none for unlabelled data (predicting on new inputs)."""
        if y.ndim == 2 and y.shape[1] == 0:
            return {}
        return {name: y[:, i] for i, name in enumerate(self.labels)}

    def outputs_of(self, result: Any) -> dict[str, Output]:
        """The model's answer for a batch as named outputs (plugins see these)."""
        raise NotImplementedError

    def __call__(self, model: nn.Module, batch: Any) -> tuple[dict[str, Output], dict[str, torch.Tensor]]:
        raise NotImplementedError
