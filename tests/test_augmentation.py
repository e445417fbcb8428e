"""A training sample's augmentation depends only on (seed, epoch, index): not on the workers, the order
of fetching, what else drew random numbers, or a resume in the middle of the epoch."""

from __future__ import annotations

import pytest
import torch
from helpers import CONFIGS

from ednaml.adapters.datamodule import EdnaDataModule, EpochSeeded
from ednaml.config import resolve

EPOCH = 1


def datamodule(workers: int, seed: int = 0) -> EdnaDataModule:
    # random crops on the digits: every draw of the crop's offset shows in the pixels
    config = resolve(
        [CONFIGS / "digits.yml"], [("TRANSFORMATION.WORKERS", str(workers)), ("seed_everything", str(seed))]
    )
    return EdnaDataModule(config)


def epoch_by_index(
    loader: torch.utils.data.DataLoader, epoch: int = EPOCH, resume_after: int | None = None
) -> dict[int, torch.Tensor]:
    """{sample index: its augmented image} over one epoch of the training loader (or what is left of it)."""
    if resume_after is not None:
        loader.load_state_dict({"epoch": epoch, "batches_done": resume_after})
    else:
        loader.sampler.set_epoch(epoch)
    order = [index for index, _ in loader.sampler]  # the sampler's order is the batches' order
    images = torch.cat([x for x, _ in loader])
    assert len(order) == len(images)
    return dict(zip(order, images))


def reference(module: EdnaDataModule, indices: list[int], epoch: int = EPOCH) -> dict[int, torch.Tensor]:
    """Each sample fetched alone, in reverse order, with the global RNG disturbed before each fetch."""
    dataset = EpochSeeded(module.dataset("train"), module.seed)
    out = {}
    for index in reversed(indices):
        torch.rand(index % 7 + 1)
        out[index] = dataset[(index, epoch)][0]
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_a_samples_augmentation_depends_only_on_seed_epoch_and_index(workers):
    module = datamodule(workers)
    seen = epoch_by_index(module.train_dataloader())
    expected = reference(module, sorted(seen))
    assert sorted(seen) == list(range(len(module.dataset("train"))))
    assert all(torch.equal(seen[i], expected[i]) for i in seen)


def test_a_resumed_epoch_gives_the_remaining_samples_the_same_augmentation():
    module = datamodule(0)
    whole = epoch_by_index(module.train_dataloader())
    rest = epoch_by_index(datamodule(0).train_dataloader(), resume_after=5)
    assert len(rest) == len(whole) - 5 * 64
    assert all(torch.equal(rest[i], whole[i]) for i in rest)


def test_the_augmentation_changes_with_the_epoch_and_the_seed_and_leaves_the_global_rng_alone():
    module = datamodule(0)
    indices = list(range(200))
    base = reference(module, indices)
    next_epoch = reference(module, indices, epoch=EPOCH + 1)
    other_seed = reference(datamodule(0, seed=1), indices)
    # a 10% pad-and-crop of an 8x8 image has 9 offsets: most samples land on another one
    assert sum(not torch.equal(base[i], next_epoch[i]) for i in indices) > 150
    assert sum(not torch.equal(base[i], other_seed[i]) for i in indices) > 150
    state = torch.get_rng_state()
    dataset = EpochSeeded(module.dataset("train"), module.seed)
    dataset[(3, EPOCH)]
    dataset.__getitems__([(4, EPOCH), (5, EPOCH)])  # as the loader asks for a batch
    assert torch.equal(torch.get_rng_state(), state)
