"""LOSS entries -> one objective: weights normalised within an entry, entries summed, every term kept."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ednaml import registry


class LossEntry(nn.Module):
    """One LOSS entry: its losses, their normalised weights, and which output and label it reads."""

    def __init__(self, entry: dict[str, Any]):
        super().__init__()
        self.name, self.label = entry["NAME"], entry["LABEL"]
        total = float(sum(entry["LAMBDAS"]))
        self.weights = [float(w) / total for w in entry["LAMBDAS"]]
        self.losses = nn.ModuleList(registry.get("loss", n)(**(kw or {})) for n, kw in zip(entry["LOSSES"], entry["KWARGS"]))
        self.term_names: list[str] = []
        for loss_name in entry["LOSSES"]:
            term = f"{self.name}/{loss_name}"
            suffix = 2
            while term in self.term_names:  # the same loss twice in one entry
                term, suffix = f"{self.name}/{loss_name}_{suffix}", suffix + 1
            self.term_names.append(term)

    def pick(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The output named NAME, else the one tracking LABEL, else the only one; the target of LABEL."""
        if self.name in outputs:
            output = outputs[self.name]
        elif self.label in outputs:
            output = outputs[self.label]
        elif len(outputs) == 1:
            output = next(iter(outputs.values()))
        else:
            raise KeyError(f"LOSS entry {self.name!r}: no model output named {self.name!r} or tracking label {self.label!r}; outputs are {list(outputs)}")
        if self.label in targets:
            target = targets[self.label]
        elif len(targets) == 1:
            target = next(iter(targets.values()))
        else:
            raise KeyError(f"LOSS entry {self.name!r}: LABEL {self.label!r} is not a label of the data; labels are {list(targets)}")
        return output, target


class Criterion(nn.Module):
    """Sum of all LOSS entries; returns the total and each unweighted term by 'NAME/LossClass'."""

    def __init__(self, entries: list[dict[str, Any]]):
        super().__init__()
        self.entries = nn.ModuleList(LossEntry(e) for e in entries)

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total: torch.Tensor | float = 0.0
        terms: dict[str, torch.Tensor] = {}
        for entry in self.entries:
            output, target = entry.pick(outputs, targets)
            for loss, weight, term in zip(entry.losses, entry.weights, entry.term_names):
                value = loss(output, target)
                terms[term] = value.detach()
                total = total + weight * value
        return total, terms
