"""Losses by name, and the criterion that combines LOSS entries into one objective."""

from ednaml.losses.classification import SoftmaxLabelSmooth, SoftmaxLogitsLoss, TorchLoss
from ednaml.losses.criterion import Criterion
from ednaml.losses.metric_learning import (
    CenterLoss,
    ClusterLoss,
    CompactContrastiveLoss,
    ContrastiveLoss,
    MarginLoss,
    ProxyNCA,
    TripletLoss,
)

__all__ = [
    "CenterLoss",
    "ClusterLoss",
    "CompactContrastiveLoss",
    "ContrastiveLoss",
    "Criterion",
    "MarginLoss",
    "ProxyNCA",
    "SoftmaxLabelSmooth",
    "SoftmaxLogitsLoss",
    "TorchLoss",
    "TripletLoss",
]
