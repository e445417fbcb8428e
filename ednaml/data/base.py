"""Data readers: a crawler finds samples and labels, a dataset loads them, transforms prepare them."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from ednaml.errors import DataError

# One sample: its input (a path, an array, ...) and one class index per label.
Sample = tuple[Any, tuple[int, ...]]
SPLITS = ("train", "val", "test")


def read_rows(path: Path, key: str) -> list[dict[str, Any]]:
    """The rows of a CSV manifest (or, for .jsonl / .json, of a JSON Lines file); a file that is not UTF-8 text
    or not JSON Lines is a DataError at `key`, naming it."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            if path.suffix.lower() in (".jsonl", ".json"):
                return [json.loads(line) for line in handle if line.strip()]
            return list(csv.DictReader(handle))
    except UnicodeDecodeError as err:
        raise DataError(
            key,
            f"{str(path)!r} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8",
        ) from None
    except json.JSONDecodeError as err:
        raise DataError(key, f"{str(path)!r} is not JSON Lines: {err}") from None


@dataclass
class Crawl:
    """What a crawler found: samples per split, and each label's class names (their order is the index)."""

    splits: dict[str, list[Sample]]
    labels: dict[str, list[str]]
    files: list[str] = field(default_factory=list)

    def num_classes(self, label: str) -> int:
        return len(self.labels[label])


class Stored:
    """An input left on disk until a batch needs it (one row of a memory-mapped table): `read()` gives it.
    A split of them costs memory per row, not per byte of data."""

    __slots__ = ("source", "index")

    def __init__(self, source: Any, index: int):
        self.source, self.index = source, index

    def read(self) -> Any:
        return self.source.read(self.index)


def loaded(item: Any) -> Any:
    """A sample's input itself: read from disk where the crawler left it there."""
    return item.read() if isinstance(item, Stored) else item


class Crawler:
    """Finds the samples of a source. A crawler without its own val split gets a seeded one from train."""

    def __init__(self, val_fraction: float = 0.1, split_seed: int = 0):
        self.val_fraction = val_fraction
        self.split_seed = split_seed

    def find(self) -> Crawl:
        raise NotImplementedError

    def crawl(self) -> Crawl:
        found = self.find()
        if not found.splits.get("val") and self.val_fraction > 0 and found.splits.get("train"):
            train, val = seeded_split(found.splits["train"], self.val_fraction, self.split_seed)
            found.splits["train"], found.splits["val"] = train, val
        for split in SPLITS:
            found.splits.setdefault(split, [])
        return found


def seeded_split(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off `fraction` of `samples`, the same way every time for the same seed."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    cut = int(round(len(samples) * fraction))
    held = set(order[:cut])
    return [s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held]


class LabelledDataset(Dataset):
    """Loads each sample's input, applies the transform, returns (input, labels as a LongTensor)."""

    def __init__(self, samples: Sequence[Sample], transform: Callable | None = None, labels: Sequence[str] = ()):
        self.samples = list(samples)
        self.transform = transform
        self.labels = list(labels)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, item: Any) -> Any:
        return item

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        item, target = self.samples[index]
        x = self.load(loaded(item))
        if self.transform is not None:
            x = self.transform(x)
        return x, torch.tensor(target, dtype=torch.long)


class DataReader:
    """One data source: which crawler, dataset and transform builder to use together; `inputs` reads new,
    unlabelled data of the same kind for prediction."""

    crawler: ClassVar[type[Crawler]]
    dataset: ClassVar[type[LabelledDataset]]
    transforms: ClassVar[Callable[..., Callable]]

    @classmethod
    def inputs(cls, path: str) -> list[tuple[str, Any]]:
        """New data at `path` (`ednaml predict --data PATH`): (id, what the dataset loads) per input, in order."""
        from ednaml.errors import DataError

        raise DataError(
            "--data",
            f"the {cls.__name__} reader does not read new data; predict with a reader of images, "
            "texts or videos, or give the reader an `inputs(path)` classmethod",
        )

    @classmethod
    def example(cls) -> Any:
        """One raw input of this reader's kind (what its dataset's `load` returns), for tracing a model to export."""
        from ednaml.errors import DataError

        raise DataError(
            "EXECUTION.DATAREADER",
            f"the {cls.__name__} reader has no example input to export a model with; "
            "give it an `example()` classmethod",
        )
