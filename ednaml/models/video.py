"""Video models: each takes clips (B x T x C x H x W) and returns (logits, features)."""

from __future__ import annotations

import torch
from torch import nn

from ednaml.models.classification import ClassificationHead
from ednaml.registry import register


def _needs(name: str, softmax_dimensions: int | None) -> None:
    if not softmax_dimensions:
        raise ValueError(f"MODEL.MODEL_KWARGS: {name} needs softmax_dimensions (left blank, it comes from the data)")


@register("model", "FrameCNN")
class FrameCNN(nn.Module):
    """A small 2-D CNN on every frame, features averaged over time, then a classifier."""

    def __init__(
        self,
        softmax_dimensions: int | None = None,
        channels: int = 3,
        width: int = 32,
        embedding_dimensions: int | None = 64,
        normalization: str | None = "bn",
    ):
        super().__init__()
        _needs("FrameCNN", softmax_dimensions)

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]

        self.frames = nn.Sequential(
            *block(channels, width),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = ClassificationHead(2 * width, softmax_dimensions, embedding_dimensions, normalization)
        self.feature_dimensions = self.head.feature_dimensions

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = clips.shape[:2]
        per_frame = self.frames(clips.flatten(0, 1)).view(b, t, -1)
        return self.head(per_frame.mean(dim=1))


@register("model", "Small3DCNN")
class Small3DCNN(nn.Module):
    """Three 3-D convolution blocks over (time, height, width), globally pooled, then a classifier."""

    def __init__(
        self,
        softmax_dimensions: int | None = None,
        channels: int = 3,
        width: int = 16,
        embedding_dimensions: int | None = 64,
        normalization: str | None = "bn",
    ):
        super().__init__()
        _needs("Small3DCNN", softmax_dimensions)

        def block(cin: int, cout: int, pool: tuple[int, int, int]) -> list[nn.Module]:
            return [
                nn.Conv3d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm3d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool3d(pool),
            ]

        self.body = nn.Sequential(
            *block(channels, width, (1, 2, 2)),
            *block(width, 2 * width, (2, 2, 2)),
            *block(2 * width, 4 * width, (2, 2, 2)),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
        )
        self.head = ClassificationHead(4 * width, softmax_dimensions, embedding_dimensions, normalization)
        self.feature_dimensions = self.head.feature_dimensions

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.body(clips.transpose(1, 2)))  # B x C x T x H x W
