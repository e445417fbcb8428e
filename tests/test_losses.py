"""Every loss in the catalogue gives its reference value on a fixed batch and decreases when it trains a small model
on real data."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import load_digits

from ednaml import registry

FEATURE_LOSSES = [
    "TripletLoss",
    "MarginLoss",
    "ContrastiveLoss",
    "CompactContrastiveLoss",
    "ClusterLoss",
    "CenterLoss",
    "ProxyNCA",
]
LOGIT_LOSSES = [
    ("SoftmaxLogitsLoss", {}),
    ("SoftmaxLabelSmooth", {"eps": 0.1}),
    ("TorchLoss", {"loss_class": "CrossEntropyLoss"}),
]


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


# Four points on the unit square, labels [0, 0, 1, 1]: a=(0,0), b=(0,1) and c=(1,0), d=(1,1). Each
# value below is worked out by hand from the loss's definition, not by running it.
SQUARE = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
SQUARE_LABELS = torch.tensor([0, 0, 1, 1])
LOGITS, LOGIT_TARGETS = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1])
CE = math.log(1 + math.exp(-2))  # -log softmax of the right class at a logit gap of 2
REFERENCE = [
    # every anchor: farthest positive 1, nearest negative 1 -> relu(1 - 1 + 0.3)
    ("TripletLoss", {"margin": 0.3}, 0.3),
    # ordered pairs: 4 positive at distance 1 (1^2 each), 8 negative at 1 or sqrt 2 (relu(1 - d)^2 = 0)
    ("ContrastiveLoss", {"margin": 1.0}, 4 / 12),
    # only the 4 negative pairs at distance 1 are active: relu(1.2 - 1 + 0.2) = 0.4 each
    ("MarginLoss", {"margin": 0.2, "beta": 1.2, "normalize": False}, 0.4),
    # 4 pulls of 1^2 and 4 pushes of relu(1 - 1)^2
    ("CompactContrastiveLoss", {"margin": 1.0}, 4 / 8),
    # class means (0, .5) and (1, .5): spread 0.5, means 1 apart -> relu(0.5 - 1 + 0.8)
    ("ClusterLoss", {"margin": 0.8}, 0.3),
]


@pytest.mark.parametrize("name, kwargs, expected", REFERENCE, ids=[r[0] for r in REFERENCE])
def test_a_feature_loss_gives_its_reference_value_on_a_fixed_batch(name, kwargs, expected):
    value = registry.get("loss", name)(**kwargs)(SQUARE, SQUARE_LABELS)
    assert value.item() == pytest.approx(expected, abs=1e-5)


def test_the_learnable_losses_give_their_reference_values_with_fixed_centers():
    center = registry.get("loss", "CenterLoss")(num_classes=2, feat_dim=2)
    center.centers.data = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert center(SQUARE, SQUARE_LABELS).item() == pytest.approx(0.5 * (0 + 1 + 1 + 0) / 4)
    proxy = registry.get("loss", "ProxyNCA")(num_classes=2, feat_dim=2, scale=3.0)
    proxy.proxies.data = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # (1, 1) is as far from both proxies: log 2; (0, 1) sits on its own proxy, 18 (squared) from the other
    value = proxy(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    assert value.item() == pytest.approx((math.log(2) + math.log(1 + math.exp(-18))) / 2, abs=1e-5)


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("SoftmaxLogitsLoss", {}, CE),
        ("TorchLoss", {"loss_class": "CrossEntropyLoss"}, CE),
        # smoothed targets (0.95, 0.05): 0.95 CE + 0.05 (CE + 2)
        ("SoftmaxLabelSmooth", {"eps": 0.1}, 0.95 * CE + 0.05 * (CE + 2)),
    ],
    ids=["SoftmaxLogitsLoss", "TorchLoss", "SoftmaxLabelSmooth"],
)
def test_a_logit_loss_gives_its_reference_value_on_a_fixed_batch(name, kwargs, expected):
    assert registry.get("loss", name)(**kwargs)(LOGITS, LOGIT_TARGETS).item() == pytest.approx(expected, abs=1e-6)
