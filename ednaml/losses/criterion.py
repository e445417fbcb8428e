"""LOSS entries -> one objective: weights normalised within an entry, entries summed, every term kept."""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ednaml import registry
from ednaml.steps import Output, OutputInfo

if TYPE_CHECKING:
    from ednaml.config import sections


def reads_features(loss: Any) -> bool:
    """Metric-learning losses read an output's features; classification losses its logits."""
    return getattr(loss, "input", "logits") == "features"


def match_output(name: str, label: str | None, outputs: dict[str, Any]) -> str:
    """The output a LOSS entry reads: the one named NAME, else the one tracking LABEL, else (no LABEL given)
    the only one. An entry whose LABEL no output tracks is an error, not a silent mismatch."""
    if name in outputs:
        return name
    tracking = [n for n, o in outputs.items() if label is not None and o.label == label]
    if tracking:
        return tracking[0]
    if len(outputs) == 1 and label is None:
        return next(iter(outputs))
    raise ValueError(
        f"LOSS entry {name!r}: no model output is named {name!r} or tracks label {label!r}; "
        f"outputs are {[f'{n} ({o.label})' for n, o in outputs.items()]}"
    )


class LossEntry(nn.Module):
    """One LOSS entry: its losses, their normalised weights, and the output and label it reads."""

    def __init__(
        self,
        entry: sections.LossEntry,
        index: int,
        outputs: dict[str, OutputInfo],
        classes: dict[str, int],
        loss: nn.Module | None = None,
    ):
        """`loss`: a loss given from Python (EdnaML.add_loss), used instead of the entry's LOSSES. `index`: the
        entry's place in LOSS, for messages."""
        super().__init__()
        if loss is not None:
            entry = dataclasses.replace(entry, LOSSES=(type(loss).__name__,), KWARGS=({},), LAMBDAS=(1.0,))
        self.name, self.index = entry.NAME, index
        self.output = match_output(self.name, entry.LABEL, outputs)
        self.label = entry.LABEL or outputs[self.output].label
        if self.label not in classes:
            raise ValueError(
                f"LOSS entry {self.name!r}: LABEL {self.label!r} is not a label of the data; labels are {list(classes)}"
            )
        total = float(sum(entry.LAMBDAS))
        self.weights = [float(w) / total for w in entry.LAMBDAS]
        pairs = enumerate(zip(entry.LOSSES, entry.KWARGS))
        losses = (
            [loss]
            if loss is not None
            else [self._build(j, name, kwargs, outputs, classes) for j, (name, kwargs) in pairs]
        )
        self.losses = nn.ModuleList(losses)
        self.term_names: list[str] = []
        for loss_name in entry.LOSSES:
            term, suffix = f"{self.name}/{loss_name}", 2
            while term in self.term_names:  # the same loss twice in one entry
                term, suffix = f"{self.name}/{loss_name}_{suffix}", suffix + 1
            self.term_names.append(term)

    def _build(
        self,
        j: int,
        loss_name: str,
        kwargs: dict[str, Any] | None,
        outputs: dict[str, OutputInfo],
        classes: dict[str, int],
    ) -> nn.Module:
        """The entry's `j`th loss, with num_classes and feat_dim from the data and the model where it takes them."""
        cls = registry.get("loss", loss_name)
        kwargs = dict(kwargs or {})
        params = inspect.signature(cls).parameters
        if "num_classes" in params and kwargs.get("num_classes") is None:
            kwargs["num_classes"] = classes[self.label]
        if "feat_dim" in params and kwargs.get("feat_dim") is None:
            if outputs[self.output].features is None:
                raise ValueError(
                    f"LOSS entry {self.name!r}: {loss_name} needs feat_dim; the model does not say its feature size"
                )
            kwargs["feat_dim"] = outputs[self.output].features
        return registry.build("loss", cls, kwargs, at=("LOSS", self.index, "KWARGS", j))

    def forward(
        self, outputs: dict[str, Output], targets: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        output, target = outputs[self.output], targets[self.label]
        weighted, terms = [], {}
        for loss, weight, term in zip(self.losses, self.weights, self.term_names):
            if reads_features(loss):
                if output.features is None:
                    raise ValueError(
                        f"LOSS entry {self.name!r}: {type(loss).__name__} reads features, and the model gives none"
                    )
                value = loss(output.features, target)
            else:
                value = loss(output.logits, target)
            terms[term] = value.detach()
            weighted.append(value if weight == 1.0 else weight * value)  # no graph node for a weight of one
        return sum(weighted[1:], weighted[0]), terms


class Criterion(nn.Module):
    """Sum of all LOSS entries; returns the total and each unweighted term by 'NAME/LossClass'."""

    def __init__(
        self,
        entries: tuple[sections.LossEntry, ...],
        outputs: dict[str, OutputInfo],
        classes: dict[str, int],
        given: dict[str, nn.Module] | None = None,
    ):
        """`given`: losses from Python by LOSS entry NAME, each used instead of that entry's LOSSES."""
        super().__init__()
        given = given or {}
        unknown = sorted(set(given) - {e.NAME for e in entries})
        if unknown:
            raise ValueError(
                f"LOSS: add_loss names {unknown}, which are not LOSS entry NAMEs; they are {[e.NAME for e in entries]}"
            )
        self.entries = nn.ModuleList(
            LossEntry(e, i, outputs, classes, given.get(e.NAME)) for i, e in enumerate(entries)
        )

    def entry(self, name: str) -> LossEntry:
        return next(e for e in self.entries if e.name == name)

    def forward(
        self, outputs: dict[str, Output], targets: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values, terms = [], {}
        for entry in self.entries:
            value, entry_terms = entry(outputs, targets)
            values.append(value)
            terms.update(entry_terms)
        return sum(values[1:], values[0]), terms
