"""EdnaDataModule: crawler -> dataset -> transforms -> train / val / test loaders."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from ednaml import registry
from ednaml.config import sections
from ednaml.config.arguments import check_arguments
from ednaml.config.schema import deployment_reader
from ednaml.data.base import Crawl, loaded
from ednaml.errors import ConfigError, DataError

log = logging.getLogger("ednaml")


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class EpochSampler(DistributedSampler):
    """Training order: shuffled by (seed, epoch), sharded across processes, resumable mid-epoch.

    Yields (index, epoch) so that each sample's augmentation is seeded by both (see `EpochSeeded`).
    """

    def __init__(self, dataset: Dataset, seed: int):
        world, rank = _world()
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.skip, self.skip_epoch = 0, -1

    def __iter__(self):
        indices = list(super().__iter__())
        if self.epoch == self.skip_epoch:
            indices = indices[self.skip :]
        return iter([(index, self.epoch) for index in indices])


class EpochSeeded(Dataset):
    """A dataset whose random transforms draw from an RNG seeded by (seed, epoch, index): the same sample
    in the same epoch is augmented the same way, whatever the workers, prefetching or a resume did."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[Any]:
        """A batch's samples (the loader asks for them together): the generator's state is saved and
        restored once per batch, and reseeded for each sample."""
        # The CPU generator directly: `torch.manual_seed` also queues a CUDA seed with a formatted stack
        # trace on every call, which costs milliseconds per sample inside a training loop.
        generator, dataset, seed = torch.default_generator, self.dataset, self.seed
        outside = generator.get_state()
        try:
            samples = []
            for index, epoch in keys:
                generator.manual_seed(sample_seed(seed, epoch, index))
                samples.append(dataset[index])
            return samples
        finally:
            generator.set_state(outside)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random transforms in one epoch."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2**63 - 1)


class BadSample:
    """Stands in for a sample that failed to load, so that a loader worker hands the failure to the main
    process, which stops or skips by EXECUTION.DATAREADER.BAD_SAMPLES."""

    __slots__ = ("key", "message")

    def __init__(self, err: DataError):
        self.key, self.message = err.key, err.message


class Tolerant(Dataset):
    """A dataset whose samples that fail to load come back as `BadSample`s rather than raising in a worker."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: Any) -> Any:
        try:
            return self.dataset[index]
        except DataError as err:
            return BadSample(err)


class WithBadSamples:
    """A batch collated from its good samples, with the failures and their positions in the batch."""

    __slots__ = ("batch", "bad", "positions")

    def __init__(self, batch: Any, bad: list[BadSample], positions: list[int]):
        self.batch, self.bad, self.positions = batch, bad, positions


class TolerantCollate:
    """The reader's collate function over a batch's good samples (a class, so spawned workers can pickle it)."""

    def __init__(self, collate: Callable | None):
        self.collate = collate or default_collate

    def __call__(self, samples: list[Any]) -> Any:
        positions = [i for i, sample in enumerate(samples) if isinstance(sample, BadSample)]
        if not positions:
            return self.collate(samples)
        good = [sample for sample in samples if not isinstance(sample, BadSample)]
        return WithBadSamples(self.collate(good) if good else None, [samples[i] for i in positions], positions)


class ResumableLoader(DataLoader):
    """The training loader; its state (epoch, batches done) travels in checkpoints, so a resumed run
    continues mid-epoch with exactly the batches that were left."""

    def __init__(self, dataset: Dataset, progress: Callable[[], tuple[int, int]], seed: int, **kwargs: Any):
        sampler = EpochSampler(dataset, seed)
        super().__init__(EpochSeeded(dataset, seed), sampler=sampler, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.progress()
        return {"epoch": epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.sampler
        sampler.set_epoch(state["epoch"])
        sampler.skip_epoch, sampler.skip = state["epoch"], state["batches_done"] * self.batch_size


@dataclass(frozen=True)
class NewData:
    """Data to predict on (`ednaml predict --data PATH`): where it is (None: no inputs, only the transforms),
    and the label names the model learned."""

    path: str | None
    labels: dict[str, list[str]]


class EdnaDataModule(pl.LightningDataModule):
    """The data of EXECUTION.DATAREADER with TRAIN_ / TEST_TRANSFORMATION; validation uses TEST_."""

    def __init__(
        self,
        config: sections.Config | dict[str, Any],
        saved: dict[str, Any] | None = None,
        new_data: NewData | None = None,
        crawler: Any = None,
    ):
        """`config`: the resolved config or its sections.
        `saved`: the data state a checkpoint carries (a text reader's tokenizer), used instead of fitting anew.
        `new_data`: unlabelled inputs to predict on instead of the reader's splits (the training data is not read).
        `crawler`: a crawler handed in from Python, used instead of the reader's."""
        super().__init__()
        # new data is read by DEPLOYMENT.DATAREADER where the config sets one (with the model's TRANSFORMATION args)
        config = sections.sections(config)
        own = new_data is not None and deployment_reader(config) is not None
        reader_cfg = config.DEPLOYMENT.DATAREADER if own else config.EXECUTION.DATAREADER
        self.at = ("DEPLOYMENT" if own else "EXECUTION", "DATAREADER")  # where the reader's keys are, for messages
        self.reader = registry.get("datareader", reader_cfg.DATAREADER)
        self.dataset_cls = (
            registry.get("dataset", reader_cfg.GENERATOR) if reader_cfg.GENERATOR else self.reader.dataset
        )
        if problems := [
            p
            for key in ("DATASET_ARGS", "GENERATOR_ARGS")
            for p in check_arguments("dataset", self.dataset_cls, reader_cfg[key], self.at + (key,))
        ]:
            raise ConfigError(problems)
        self.dataset_kwargs = {
            **reader_cfg.DATASET_ARGS,
            **reader_cfg.GENERATOR_ARGS,
        }  # checked as registry.build checks
        self.loader_kwargs = dict(reader_cfg.DATALOADER_ARGS)
        self.train_cfg, self.test_cfg = config.TRAIN_TRANSFORMATION, config.TEST_TRANSFORMATION
        seed = config.seed_everything
        self.seed = int(seed) if seed is not False and not isinstance(seed, bool) else 0
        self.ids: list[str] | None = None  # each prediction input's id (its path), by position
        if new_data is None:
            crawler = crawler or registry.build(
                "crawler", self.reader.crawler, reader_cfg.CRAWLER_ARGS, at=self.at + ("CRAWLER_ARGS",)
            )
            self.crawl: Crawl = crawler.crawl()
        else:
            found = self.reader.inputs(new_data.path) if new_data.path is not None else []
            if new_data.path is not None and not found:
                raise DataError("--data", f"{new_data.path!r} holds no inputs to predict on")
            self.ids = [identity for identity, _ in found]
            self.crawl = Crawl(splits={"predict": [(item, ()) for _, item in found]}, labels=new_data.labels)
        self.transforms = {
            True: registry.build(
                "transforms",
                self.reader.transforms,
                self.train_cfg.ARGS,
                at=("TRAIN_TRANSFORMATION", "ARGS"),
                train=True,
            ),
            False: registry.build(
                "transforms",
                self.reader.transforms,
                self.test_cfg.ARGS,
                at=("TEST_TRANSFORMATION", "ARGS"),
                train=False,
            ),
        }
        self.collate = getattr(self.reader, "collate", None)
        self.bad_samples = reader_cfg.BAD_SAMPLES
        self.skipped: dict[str, int] = {}  # message of each sample skipped -> times, in this process
        self.dropped: list[int] = []  # positions skipped in the latest batch
        train, test = self.transforms[True], self.transforms[False]
        if hasattr(train, "fit"):  # transforms learned from the training split (a tokenizer)
            if saved and saved.get("tokenizer"):
                train.adopt(saved["tokenizer"])
            elif new_data is not None:
                raise DataError(
                    "ckpt_path",
                    "the checkpoint carries no tokenizer, which new text data needs; predict with "
                    "a checkpoint EdnaML wrote after training on text",
                )
            else:
                train.fit(loaded(x) for x, _ in self.crawl.splits["train"])
            test.adopt(train.tokenizer.to_str())

    @property
    def info(self) -> dict[str, Any]:
        """What the model needs to know of the data besides its labels (a tokenizer's vocabulary size)."""
        return dict(getattr(self.transforms[True], "info", {}))

    def state_dict(self) -> dict[str, Any]:
        tokenizer = getattr(self.transforms[True], "tokenizer", None)
        return {"tokenizer": tokenizer.to_str()} if tokenizer is not None else {}

    @property
    def labels(self) -> dict[str, list[str]]:
        return self.crawl.labels

    def has(self, split: str) -> bool:
        return bool(self.crawl.splits.get(split))

    def dataset(self, split: str) -> Any:
        return self.dataset_of(self.crawl.splits[split], train=split == "train")

    def dataset_of(self, samples: list[Any], train: bool) -> Any:
        """The reader's dataset (or GENERATOR) over `samples`, with the training or the test transforms."""
        return self.dataset_cls(
            samples,
            transform=self.transforms[train],
            labels=list(self.crawl.labels),
            **copy.deepcopy(self.dataset_kwargs),
        )

    def _kwargs(self, settings: sections.TransformationSection) -> dict[str, Any]:
        return {
            "batch_size": settings.BATCH_SIZE,
            "num_workers": settings.WORKERS,
            "persistent_workers": settings.WORKERS > 0,
            "collate_fn": TolerantCollate(self.collate),
            "generator": torch.Generator().manual_seed(self.seed),  # worker seeds, not the global RNG
            **self.loader_kwargs,
        }

    def _progress(self) -> tuple[int, int]:
        trainer = self.trainer
        return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> DataLoader:
        return ResumableLoader(
            Tolerant(self.dataset("train")), self._progress, self.seed, **self._kwargs(self.train_cfg)
        )

    def _evaluation_loader(self, split: str) -> DataLoader:
        dataset = Tolerant(self.dataset(split))
        kwargs = self._kwargs(self.test_cfg)
        world = _world()[0]
        if world > 1:  # each process every world-th sample, none twice (DistributedSampler would repeat some)
            if len(dataset) < world:
                raise DataError(
                    "EXECUTION.DATAREADER",
                    f"the {split} split has {len(dataset)} sample(s), fewer than the "
                    f"{world} processes that evaluate it; each needs at least one",
                )
            kwargs["sampler"] = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(dataset, shuffle=False, **kwargs)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Stops at a sample that failed to load, or drops and counts it (BAD_SAMPLES: skip)."""
        self.dropped = []
        if not isinstance(batch, WithBadSamples):
            return batch
        first = batch.bad[0]
        if self.bad_samples == "stop":
            raise DataError(
                first.key, f"{first.message} (EXECUTION.DATAREADER.BAD_SAMPLES: skip would drop such samples and go on)"
            )
        for bad in batch.bad:
            message = f"{bad.key}: {bad.message}"
            if message not in self.skipped:
                log.warning("skipped a sample (EXECUTION.DATAREADER.BAD_SAMPLES: skip): %s", message)
            self.skipped[message] = self.skipped.get(message, 0) + 1
        if batch.batch is None:
            raise DataError(
                "EXECUTION.DATAREADER.BAD_SAMPLES",
                f"skip: every sample of a batch failed to load, e.g. {first.key}: {first.message}",
            )
        self.dropped = batch.positions
        return batch.batch

    def skipped_everywhere(self) -> dict[str, int]:
        """The samples skipped by every process (a collective under DDP: call it on all of them)."""
        if _world()[0] == 1:
            return dict(self.skipped)
        gathered: list[Any] = [None] * _world()[0]
        dist.all_gather_object(gathered, self.skipped)
        total: dict[str, int] = {}
        for part in gathered:
            for message, times in part.items():
                total[message] = total.get(message, 0) + times
        return total

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._evaluation_loader("predict" if self.has("predict") else "test")
