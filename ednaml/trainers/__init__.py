"""Step logic ("trainers"): how a batch becomes named model outputs and named targets.

Lightning owns the loop; the EdnaModule turns outputs and targets into losses and metrics.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ednaml.registry import register


@register("trainer", "ClassificationTrainer")
class ClassificationTrainer:
    """Single-output classification: the model's logits, scored against one label."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.output_label = ""

    def bind(self, labels: Sequence[str], output_label: str) -> None:
        """Called once the data is known: the data's label names and the label the output tracks."""
        self.labels, self.output_label = list(labels), output_label

    def __call__(self, model: nn.Module, batch: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        x, y = batch
        logits = model(x)
        targets = {name: y[:, i] for i, name in enumerate(self.labels)}
        return {self.output_label: logits}, targets
