"""Single-output classification models: features -> [embedding] -> normalization -> logits."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ednaml.models.attention import attention, check_attention
from ednaml.registry import register
from ednaml.utils import require

NORMALIZATIONS = ("bn", "ln", "gn", "l2", "none")
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


class L2Norm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


def feature_norm(kind: str | None, dim: int) -> nn.Module:
    """The feature normalization named by MODEL_NORMALIZATION."""
    kind = (kind or "none").lower()
    if kind == "bn":
        return nn.BatchNorm1d(dim)
    if kind == "ln":
        return nn.LayerNorm(dim)
    if kind == "gn":
        return nn.GroupNorm(math.gcd(32, dim), dim)
    if kind == "l2":
        return L2Norm()
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"MODEL.MODEL_NORMALIZATION: {kind!r} is not one of {', '.join(NORMALIZATIONS)}")


class ClassificationHead(nn.Module):
    """[Linear to embedding_dimensions] -> feature normalization -> Linear to softmax_dimensions.

    Returns (logits, features): the features (after the embedding, before normalization) are what
    metric-learning losses (TripletLoss, CenterLoss, ...) read.
    """

    def __init__(
        self, in_features: int, softmax_dimensions: int, embedding_dimensions: int | None, normalization: str | None
    ):
        super().__init__()
        self.embedding = nn.Linear(in_features, embedding_dimensions) if embedding_dimensions else nn.Identity()
        self.feature_dimensions = embedding_dimensions or in_features
        self.norm = feature_norm(normalization, self.feature_dimensions)
        self.classifier = nn.Linear(self.feature_dimensions, softmax_dimensions)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.embedding(features)
        return self.classifier(self.norm(embedded)), embedded


@register("model", "SmallCNN")
class SmallCNN(nn.Module):
    """A small 4-layer CNN for small images (digits, MNIST-sized); fast on a CPU."""

    def __init__(
        self,
        softmax_dimensions: int | None = None,
        initial_channels: int = 1,
        width: int = 32,
        embedding_dimensions: int | None = 64,
        normalization: str | None = "bn",
        dropout: float = 0.1,
    ):
        super().__init__()
        if not softmax_dimensions:
            raise ValueError("SmallCNN needs softmax_dimensions (left blank, it is taken from the data's label)")

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(initial_channels, width),
            *block(width, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
        )
        self.head = ClassificationHead(2 * width, softmax_dimensions, embedding_dimensions, normalization)
        self.feature_dimensions = self.head.feature_dimensions

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features)."""
        return self.head(self.features(x))


def resnet_stages(base: str, initial_channels: int, attention_kind: str | None) -> tuple[nn.ModuleList, list[int]]:
    """A torchvision ResNet (random init) as 5 stages (stem, layer1..layer4) and each stage's channels.

    With an attention kind, each of layer1..layer4 is followed by that attention module.
    """
    if base not in RESNETS:
        raise ValueError(f"MODEL.MODEL_BASE: {base!r} is not one of {', '.join(RESNETS)}")
    models = require("torchvision.models", "vision")
    net = getattr(models, base)(weights=None)
    if initial_channels != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(initial_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    layers = [net.layer1, net.layer2, net.layer3, net.layer4]
    channels = [64] + [
        layer[-1].conv3.out_channels if hasattr(layer[-1], "conv3") else layer[-1].conv2.out_channels
        for layer in layers
    ]
    stages = [stem] + [
        nn.Sequential(layer, attention(attention_kind, c)) if attention_kind else layer
        for layer, c in zip(layers, channels[1:])
    ]
    return nn.ModuleList(stages), channels


@register("model", "ClassificationResnet")
class ClassificationResnet(nn.Module):
    """A torchvision ResNet (resnet18-152, random init) with an embedding, feature normalization and a classifier."""

    def __init__(
        self,
        base: str = "resnet18",
        softmax_dimensions: int | None = None,
        initial_channels: int = 3,
        embedding_dimensions: int | None = None,
        normalization: str | None = "bn",
        attention: str | None = None,
    ):
        super().__init__()
        if not softmax_dimensions:
            raise ValueError(
                "ClassificationResnet needs softmax_dimensions (left blank, it is taken from the data's label)"
            )
        self.stages, channels = resnet_stages(base, initial_channels, attention)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = ClassificationHead(channels[-1], softmax_dimensions, embedding_dimensions, normalization)
        self.feature_dimensions = self.head.feature_dimensions

    check_kwargs = staticmethod(check_attention)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features)."""
        for stage in self.stages:
            x = stage(x)
        return self.head(self.pool(x))
