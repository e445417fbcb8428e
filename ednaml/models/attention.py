"""CBAM attention (channel, then spatial), inserted after a backbone stage."""

from __future__ import annotations

import torch
from torch import nn

ATTENTIONS = ("cbam",)


class CBAM(nn.Module):
    """Convolutional Block Attention Module: reweights channels, then spatial positions."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(
            self.channel(x.mean(dim=(2, 3), keepdim=True)) + self.channel(x.amax(dim=(2, 3), keepdim=True))
        )
        x = x * weights
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


def attention(kind: str | None, channels: int) -> nn.Module:
    if kind is None or str(kind).lower() == "none":
        return nn.Identity()
    if str(kind).lower() == "cbam":
        return CBAM(channels)
    raise ValueError(f"MODEL.MODEL_KWARGS.attention: {kind!r} is not one of {', '.join(ATTENTIONS)} (or null)")


def check_attention(kwargs: dict) -> list[tuple[str, str]]:
    """A model's `check_kwargs` rule for its `attention` kwarg."""
    kind = kwargs.get("attention")
    if kind is not None and str(kind).lower() not in ATTENTIONS + ("none",):
        return [("attention", f"{kind!r} is not a known attention; known: {', '.join(ATTENTIONS)}")]
    return []
