"""Metric-learning losses: each reads an output's features (N x D) and its labels, not its logits."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ednaml.registry import register


def distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of a and b, in float32 and with a finite gradient at 0
    (cdist's gradient at a zero distance is not; mixed precision makes such near-zeros common)."""
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b = a.float(), b.float()
        squared = a.pow(2).sum(dim=1, keepdim=True) + b.pow(2).sum(dim=1) - 2 * a @ b.T
        return squared.clamp_min(1e-12).sqrt()


def pairwise_distances(features: torch.Tensor) -> torch.Tensor:
    """Distances between every pair of rows (N x N), 0 on the diagonal."""
    return distances(features, features) * (1 - torch.eye(len(features), device=features.device))


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(same label, not the same sample) and (different label) masks, N x N."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class FeatureLoss(nn.Module):
    """A loss on features; `normalize` puts them on the unit sphere first."""

    input = "features"

    def __init__(self, margin: float, normalize: bool):
        super().__init__()
        self.margin, self.normalize = margin, normalize

    def prepared(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=-1) if self.normalize else features


@register("loss", "TripletLoss")
class TripletLoss(FeatureLoss):
    """Batch-hard triplet loss: for each anchor, its farthest positive and nearest negative, with a margin."""

    def __init__(self, margin: float = 0.3, normalize: bool = False):
        super().__init__(margin, normalize)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.prepared(features)
        dist = pairwise_distances(features)
        positive, negative = pair_masks(labels)
        hardest_positive = (dist * positive).max(dim=1).values
        hardest_negative = dist.masked_fill(~negative, float("inf")).min(dim=1).values
        valid = positive.any(dim=1) & negative.any(dim=1)
        if not valid.any():
            return features.sum() * 0
        return F.relu(hardest_positive - hardest_negative + self.margin)[valid].mean()


@register("loss", "MarginLoss")
class MarginLoss(FeatureLoss):
    """Margin-based loss (Wu et al. 2017): positive pairs within beta - margin, negatives beyond beta + margin."""

    def __init__(self, margin: float = 0.2, beta: float = 1.2, normalize: bool = True):
        super().__init__(margin, normalize)
        self.beta = beta

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.prepared(features)
        dist = pairwise_distances(features)
        positive, negative = pair_masks(labels)
        pos_loss = F.relu(dist - self.beta + self.margin)[positive]
        neg_loss = F.relu(self.beta - dist + self.margin)[negative]
        terms = torch.cat([pos_loss, neg_loss])
        active = (terms > 0).sum().clamp_min(1)
        return terms.sum() / active


@register("loss", "ContrastiveLoss")
class ContrastiveLoss(FeatureLoss):
    """Contrastive loss over all pairs: same label -> distance^2, different -> max(0, margin - distance)^2."""

    def __init__(self, margin: float = 1.0, normalize: bool = False):
        super().__init__(margin, normalize)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.prepared(features)
        dist = pairwise_distances(features)
        positive, negative = pair_masks(labels)
        terms = torch.cat([dist[positive].pow(2), F.relu(self.margin - dist[negative]).pow(2)])
        return terms.mean() if len(terms) else features.sum() * 0


@register("loss", "CompactContrastiveLoss")
class CompactContrastiveLoss(FeatureLoss):
    """Contrastive loss with hard mining: each anchor's farthest positive pulled in, nearest negative pushed \
past the margin."""

    def __init__(self, margin: float = 1.0, normalize: bool = False):
        super().__init__(margin, normalize)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.prepared(features)
        dist = pairwise_distances(features)
        positive, negative = pair_masks(labels)
        pull = (dist * positive).max(dim=1).values.pow(2)[positive.any(dim=1)]
        push = F.relu(self.margin - dist.masked_fill(~negative, float("inf")).min(dim=1).values).pow(2)[
            negative.any(dim=1)
        ]
        terms = torch.cat([pull, push])
        return terms.mean() if len(terms) else features.sum() * 0


@register("loss", "ClusterLoss")
class ClusterLoss(FeatureLoss):
    """Cluster loss: each class's farthest member must be nearer its class mean than the nearest other mean, \
by a margin."""

    def __init__(self, margin: float = 0.3, normalize: bool = False):
        super().__init__(margin, normalize)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.prepared(features)
        classes = labels.unique()
        if len(classes) < 2:
            return features.sum() * 0
        features = features.float()
        means = torch.stack([features[labels == c].mean(dim=0) for c in classes])
        spread = torch.stack(
            [
                (features[labels == c] - means[i]).pow(2).sum(dim=1).clamp_min(1e-12).sqrt().max()
                for i, c in enumerate(classes)
            ]
        )
        between = distances(means, means) + torch.eye(len(classes), device=features.device) * 1e12
        return F.relu(spread - between.min(dim=1).values + self.margin).mean()


@register("loss", "CenterLoss")
class CenterLoss(nn.Module):
    """Center loss (Wen et al. 2016): squared distance of each feature to its class's learned center.

    Learns one center per class: optimise them with a LOSS_OPTIMIZER entry naming this LOSS entry.
    num_classes and feat_dim, left blank, come from the label and the model.
    """

    input, learnable = "features", True

    def __init__(self, num_classes: int | None = None, feat_dim: int | None = None):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim) * 0.1)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return 0.5 * (features.float() - self.centers[labels]).pow(2).sum(dim=1).mean()


@register("loss", "ProxyNCA")
class ProxyNCA(nn.Module):
    """ProxyNCA (Movshovitz-Attias et al. 2017): features near their class's learned proxy, far from the others.

    Learns one proxy per class: optimise them with a LOSS_OPTIMIZER entry naming this LOSS entry.
    """

    input, learnable = "features", True

    def __init__(self, num_classes: int | None = None, feat_dim: int | None = None, scale: float = 3.0):
        super().__init__()
        self.proxies = nn.Parameter(torch.randn(num_classes, feat_dim) * 0.1)
        self.scale = scale

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        f = self.scale * F.normalize(features.float(), dim=-1)
        p = self.scale * F.normalize(self.proxies, dim=-1)
        return F.cross_entropy(-distances(f, p).pow(2), labels)
