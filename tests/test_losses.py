"""Every loss in the catalogue decreases when it trains a small model on real data (the digits)."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from ednaml import registry

FEATURE_LOSSES = ["TripletLoss", "MarginLoss", "ContrastiveLoss", "CompactContrastiveLoss", "ClusterLoss", "CenterLoss", "ProxyNCA"]
LOGIT_LOSSES = [("SoftmaxLogitsLoss", {}), ("SoftmaxLabelSmooth", {"eps": 0.1}), ("TorchLoss", {"loss_class": "CrossEntropyLoss"})]


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.data[:200], dtype=torch.float32) / 16.0
    return x, torch.tensor(data.target[:200])


def train(loss: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, out: int, steps: int = 60) -> tuple[float, float]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, out))
    optimizer = torch.optim.Adam(list(model.parameters()) + list(loss.parameters()), lr=0.01)
    values = []
    for step in range(steps):
        batch = torch.arange(step * 40, step * 40 + 40) % len(x)
        value = loss(model(x[batch]), y[batch])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(value.item())
    return sum(values[:5]) / 5, sum(values[-5:]) / 5


@pytest.mark.parametrize("name", FEATURE_LOSSES)
def test_feature_loss_decreases(name, digits):
    cls = registry.get("loss", name)
    assert cls.input == "features"
    kwargs = {"num_classes": 10, "feat_dim": 16} if getattr(cls, "learnable", False) else {}
    first, last = train(cls(**kwargs), *digits, out=16)
    assert last < 0.8 * first, (first, last)


@pytest.mark.parametrize("name, kwargs", LOGIT_LOSSES)
def test_classification_loss_decreases(name, kwargs, digits):
    first, last = train(registry.get("loss", name)(**kwargs), *digits, out=10)
    assert last < 0.5 * first, (first, last)


@pytest.mark.parametrize("name", ["CenterLoss", "ProxyNCA"])
def test_learnable_losses_learn_their_own_parameters(name, digits):
    loss = registry.get("loss", name)(num_classes=10, feat_dim=16)
    before = [p.detach().clone() for p in loss.parameters()]
    train(loss, *digits, out=16, steps=5)
    assert before and all(not torch.equal(b, p) for b, p in zip(before, loss.parameters()))
