"""The training-loss record: epoch means, and non-finite losses caught when the steps are settled."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy

from ednaml.adapters.module import StepLosses, TrainingLosses
from ednaml.errors import NonFiniteLoss

STRATEGY = SingleDeviceStrategy(torch.device("cpu"))


def step(n: int, loss: float, term: float, size: int = 4, epoch: int = 0) -> StepLosses:
    return StepLosses(n, epoch, n, size, {"loss": torch.tensor(loss), "digit/CE": torch.tensor(term)})


def test_epoch_means_weigh_each_step_by_its_batch_size():
    losses = TrainingLosses()
    losses.add(step(0, 1.0, 0.5, size=4), STRATEGY)
    losses.add(step(1, 4.0, 2.0, size=2), STRATEGY)
    assert losses.means(STRATEGY) == pytest.approx({"loss": 2.0, "digit/CE": 1.0})


def test_a_non_finite_step_is_named_with_its_step_epoch_batch_and_term_when_settled():
    losses = TrainingLosses()
    losses.add(step(0, 1.0, 1.0), STRATEGY)
    losses.add(step(1, float("nan"), float("nan")), STRATEGY)  # adding never looks at the values
    losses.add(step(2, float("inf"), 1.0), STRATEGY)
    with pytest.raises(
        NonFiniteLoss, match=r"the loss is nan at step 1 \(epoch 0, batch 1\); non-finite terms: digit/CE"
    ):
        losses.settle(STRATEGY)


def test_a_non_finite_total_with_finite_terms_names_the_loss():
    losses = TrainingLosses()
    losses.add(step(7, float("inf"), 1.0), STRATEGY)
    with pytest.raises(NonFiniteLoss, match="non-finite terms: loss"):
        losses.means(STRATEGY)


def test_steps_are_settled_once_the_buffer_is_full():
    losses = TrainingLosses()
    for n in range(TrainingLosses.MAX_PENDING - 1):
        losses.add(step(n, 1.0, 1.0), STRATEGY)
    with pytest.raises(NonFiniteLoss, match=f"at step {TrainingLosses.MAX_PENDING - 1} "):
        losses.add(step(TrainingLosses.MAX_PENDING - 1, float("nan"), 1.0), STRATEGY)


def test_the_state_carries_settled_sums_into_a_resumed_epoch():
    losses = TrainingLosses()
    losses.add(step(0, 3.0, 1.0, size=2), STRATEGY)
    losses.settle(STRATEGY)
    resumed = TrainingLosses()
    resumed.load_state_dict(losses.state_dict())
    resumed.add(step(1, 1.0, 1.0, size=2), STRATEGY)
    assert resumed.means(STRATEGY) == pytest.approx({"loss": 2.0, "digit/CE": 1.0})
