"""EdnaDataModule: crawler -> dataset -> transforms -> train / val / test loaders."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from ednaml import registry
from ednaml.data.base import Crawl


class EvaluationShards(DistributedSampler):
    """Each process evaluates every world_size-th sample, none twice: metrics synced over ranks are exact.

    (Lightning's default DistributedSampler pads the last batch with repeated samples.)
    """

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class EdnaDataModule(pl.LightningDataModule):
    """The data of EXECUTION.DATAREADER with TRAIN_ / TEST_TRANSFORMATION; validation uses TEST_."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        reader_cfg = config["EXECUTION"]["DATAREADER"]
        self.reader = registry.get("datareader", reader_cfg["DATAREADER"])
        self.dataset_cls = registry.get("dataset", reader_cfg["GENERATOR"]) if reader_cfg["GENERATOR"] else self.reader.dataset
        self.dataset_kwargs = {**reader_cfg["DATASET_ARGS"], **reader_cfg["GENERATOR_ARGS"]}
        self.loader_kwargs = dict(reader_cfg["DATALOADER_ARGS"])
        self.train_cfg, self.test_cfg = config["TRAIN_TRANSFORMATION"], config["TEST_TRANSFORMATION"]
        self.crawl: Crawl = self.reader.crawler(**reader_cfg["CRAWLER_ARGS"]).crawl()
        self.transforms = {
            True: self.reader.transforms(train=True, **self.train_cfg["ARGS"]),
            False: self.reader.transforms(train=False, **self.test_cfg["ARGS"]),
        }

    @property
    def labels(self) -> dict[str, list[str]]:
        return self.crawl.labels

    def has(self, split: str) -> bool:
        return bool(self.crawl.splits.get(split))

    def dataset(self, split: str) -> Any:
        return self.dataset_cls(self.crawl.splits[split], transform=self.transforms[split == "train"],
                                labels=list(self.crawl.labels), **self.dataset_kwargs)

    def _loader(self, split: str) -> DataLoader:
        settings = self.train_cfg if split == "train" else self.test_cfg
        kwargs = {"persistent_workers": settings["WORKERS"] > 0, **self.loader_kwargs}
        dataset = self.dataset(split)
        if split != "train" and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            kwargs["sampler"] = EvaluationShards(dataset, shuffle=False)
        return DataLoader(dataset, batch_size=settings["BATCH_SIZE"], shuffle=split == "train",
                          num_workers=settings["WORKERS"], **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
