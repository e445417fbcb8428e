"""Losses by name, and the criterion that combines LOSS entries into one objective."""

from ednaml.losses.classification import SoftmaxLabelSmooth, SoftmaxLogitsLoss, TorchLoss
from ednaml.losses.criterion import Criterion

__all__ = ["Criterion", "SoftmaxLabelSmooth", "SoftmaxLogitsLoss", "TorchLoss"]
