"""Metrics by name (torchmetrics), computed per output on val and test, synced across devices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ednaml import registry
from ednaml.registry import register

if TYPE_CHECKING:  # torchmetrics costs a second to import: only runs pay for it, not `ednaml list`
    from torchmetrics import Metric, MetricCollection


@register("metric", "accuracy")
def accuracy(num_classes: int) -> Metric:
    """Fraction of samples whose top class is right (micro-averaged accuracy)."""
    from torchmetrics.classification import MulticlassAccuracy

    return MulticlassAccuracy(num_classes=num_classes, average="micro")


@register("metric", "f1_micro")
def f1_micro(num_classes: int) -> Metric:
    """F1 over all samples (micro average)."""
    from torchmetrics.classification import MulticlassF1Score

    return MulticlassF1Score(num_classes=num_classes, average="micro")


@register("metric", "f1_weighted")
def f1_weighted(num_classes: int) -> Metric:
    """Per-class F1, averaged with class frequencies as weights."""
    from torchmetrics.classification import MulticlassF1Score

    return MulticlassF1Score(num_classes=num_classes, average="weighted")


def classification_metrics(num_classes: int, names: Sequence[str]) -> MetricCollection:
    """The named metrics (EXECUTION.METRICS) of one classification output, as one collection; each
    registered metric is a function of the number of classes that returns a torchmetrics Metric."""
    from torchmetrics import MetricCollection

    return MetricCollection(
        {
            name: registry.build("metric", name, {}, num_classes, at=("EXECUTION", "METRICS", i))
            for i, name in enumerate(names)
        }
    )


def confusion_matrix(num_classes: int) -> Metric:
    """Counts of (true class, predicted class), synced across devices."""
    from torchmetrics.classification import MulticlassConfusionMatrix

    return MulticlassConfusionMatrix(num_classes=num_classes)
