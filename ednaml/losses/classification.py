"""Classification losses: each takes (logits, target class indices) and returns a scalar."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ednaml.errors import did_you_mean
from ednaml.registry import register


@register("loss", "SoftmaxLogitsLoss")
class SoftmaxLogitsLoss(nn.Module):
    """Cross-entropy of softmax(logits) against the target class."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target)


@register("loss", "SoftmaxLabelSmooth")
class SoftmaxLabelSmooth(nn.Module):
    """Cross-entropy against label-smoothed targets: (1 - eps) on the class, eps spread over all classes."""

    def __init__(self, eps: float = 0.1, softmax_dimensions: int | None = None):
        super().__init__()
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"SoftmaxLabelSmooth eps must be in [0, 1), got {eps}")
        self.eps, self.softmax_dimensions = eps, softmax_dimensions

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.softmax_dimensions is not None and logits.shape[-1] != self.softmax_dimensions:
            raise ValueError(
                f"SoftmaxLabelSmooth: softmax_dimensions is {self.softmax_dimensions} "
                f"but the output has {logits.shape[-1]} classes"
            )
        return F.cross_entropy(logits, target, label_smoothing=self.eps)


def _torch_loss_classes() -> list[str]:
    return sorted(
        n for n, obj in vars(nn).items() if n.endswith("Loss") and inspect.isclass(obj) and issubclass(obj, nn.Module)
    )


@register("loss", "TorchLoss")
class TorchLoss(nn.Module):
    """Any torch.nn loss by name: {loss_class: CrossEntropyLoss, loss_kwargs: {...}}."""

    def __init__(self, loss_class: str = "CrossEntropyLoss", loss_kwargs: dict[str, Any] | None = None):
        super().__init__()
        problems = self.check_kwargs({"loss_class": loss_class, "loss_kwargs": loss_kwargs or {}})
        if problems:
            raise ValueError("; ".join(f"{key}: {message}" for key, message in problems))
        self.loss = getattr(nn, loss_class)(**(loss_kwargs or {}))

    @staticmethod
    def check_kwargs(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
        """(kwarg, message) for each problem with loss_class / loss_kwargs."""
        name = kwargs.get("loss_class", "CrossEntropyLoss")
        if name not in _torch_loss_classes():
            hint = did_you_mean(name, _torch_loss_classes(), "; torch.nn losses end in 'Loss', e.g. 'CrossEntropyLoss'")
            return [("loss_class", f"{name!r} is not a torch.nn loss{hint}")]
        loss_kwargs = kwargs.get("loss_kwargs") or {}
        if not isinstance(loss_kwargs, dict):
            return [("loss_kwargs", f"{loss_kwargs!r} is not a mapping")]
        accepted = inspect.signature(getattr(nn, name)).parameters
        return [
            ("loss_kwargs", f"torch.nn.{name} takes no argument {k!r}; it takes {', '.join(accepted)}")
            for k in loss_kwargs
            if k not in accepted
        ]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, target)
