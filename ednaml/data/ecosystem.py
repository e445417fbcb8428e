"""Data from the ecosystem's dataset libraries, read from local files only unless the user allows a download.

- `TorchvisionDataset`: any torchvision image-classification dataset by name (MNIST, FashionMNIST,
  KMNIST, CIFAR10, CIFAR100, SVHN, ...) from a local root; `download: true` lets torchvision fetch it.
- `HFDataset` (text) and `HFImageDataset` (images): a Hugging Face `datasets` dataset from local
  parquet, Arrow, CSV or JSON files, or a directory written by `Dataset.save_to_disk`.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ednaml.config.paths import Location
from ednaml.data.base import Crawl, Crawler, Sample, Stored, seeded_split
from ednaml.data.readers import ImageReader
from ednaml.data.text import TextReader
from ednaml.errors import DataError, DataProblems
from ednaml.registry import register
from ednaml.utils import require

_ARGS = "EXECUTION.DATAREADER.CRAWLER_ARGS"


def _as_images(data: Any) -> list[np.ndarray]:
    """A dataset's image array (N x H x W, N x H x W x C or N x C x H x W) as one H x W [x C] uint8 array each."""
    array = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    if array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(0, 2, 3, 1)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    return list(array.astype(np.uint8, copy=False))


class TorchvisionCrawler(Crawler):
    """A torchvision dataset's train and test parts from `root` (its own file layout); val: a seeded split."""

    def __init__(
        self,
        name: str = "MNIST",
        root: Location = "data",
        download: bool = False,
        label_name: str = "label",
        dataset_kwargs: dict[str, Any] | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        super().__init__(val_fraction, split_seed)
        self.test_fraction = test_fraction
        self.name, self.root, self.download, self.label_name = name, root, download, label_name
        self.dataset_kwargs = dict(dataset_kwargs or {})

    def _accepts(self, cls: type) -> set[str]:
        """The arguments a dataset class takes, its bases' included (EMNIST passes `train` on to MNIST)."""
        names: set[str] = set()
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                names |= set(inspect.signature(klass.__init__).parameters)
        return names

    def _part(self, cls: type, which: dict[str, Any]) -> Any:
        accepts = self._accepts(cls)
        download = {"download": self.download} if "download" in accepts else {}
        try:
            return cls(self.root, **download, **which, **self.dataset_kwargs)
        except (
            RuntimeError,
            FileNotFoundError,
        ) as err:  # torchvision: "Dataset not found. You can use download=True ..."
            hint = "" if self.download or not download else " (set download: true to let torchvision fetch it)"
            raise DataError(f"{_ARGS}.root", f"{self.name} is not under {self.root!r}: {err}{hint}") from None
        except (TypeError, ValueError) as err:
            raise DataError(f"{_ARGS}.dataset_kwargs", f"{self.name}: {err}") from None

    def _samples(self, part: Any) -> list[Sample]:
        targets = getattr(part, "targets", None)
        targets = getattr(part, "labels", None) if targets is None else targets
        data = getattr(part, "data", None)
        if targets is not None and hasattr(targets, "tolist"):
            targets = targets.tolist()
        if targets is not None and targets and isinstance(targets[0], (list, tuple)):
            if self.name != "QMNIST":
                raise DataError(
                    f"{_ARGS}.name", f"{self.name} gives several targets per image, not one class: not read here"
                )
            targets = [t[0] for t in targets]  # QMNIST: the digit, then its writer and other metadata
        if (
            data is not None
            and targets is not None
            and not (isinstance(data, (list, tuple)) and data and isinstance(data[0], str))
        ):
            images: list[Any] = _as_images(data)
        elif data is not None and targets is not None:  # file paths, read as the dataset serves them
            images = [str(path) for path in data]
        else:  # a dataset without arrays: each item read as it serves it (all of them, into memory)
            pairs = [part[i] for i in range(len(part))]
            images, targets = [np.asarray(image) for image, _ in pairs], [t for _, t in pairs]
        return [(image, (int(label),)) for image, label in zip(images, targets)]

    def find(self) -> Crawl:
        datasets = require("torchvision.datasets", "vision")
        cls = getattr(datasets, self.name, None)
        if not (inspect.isclass(cls) and issubclass(cls, datasets.VisionDataset)):
            from ednaml.errors import did_you_mean

            names = [
                n
                for n in dir(datasets)
                if inspect.isclass(getattr(datasets, n)) and issubclass(getattr(datasets, n), datasets.VisionDataset)
            ]
            raise DataError(
                f"{_ARGS}.name", f"{self.name!r} is not a torchvision dataset" + did_you_mean(self.name, names)
            )
        accepts = self._accepts(cls)
        if "train" in accepts:
            parts = {"train": {"train": True}, "test": {"train": False}}
        elif "split" in accepts and "split" not in self.dataset_kwargs:
            parts = {"train": {"split": "train"}, "test": {"split": "test"}}
        else:  # one part (Caltech101, ...): the test split is a seeded share of it
            parts = {"all": {}}
        splits: dict[str, list[Sample]] = {}
        classes: list[str] | None = None
        for split, which in parts.items():
            part = self._part(cls, which)
            classes = (
                classes
                or [str(c) for c in getattr(part, "classes", None) or getattr(part, "categories", None) or []]
                or None
            )
            splits[split] = self._samples(part)
        if "all" in splits:
            train, test = seeded_split(splits.pop("all"), self.test_fraction, self.split_seed + 1)
            splits = {"train": train, "test": test}
        count = 1 + max(label for samples in splits.values() for _, (label,) in samples)
        names = classes if classes and len(classes) >= count else [str(i) for i in range(count)]
        return Crawl(splits=splits, labels={self.label_name: names}, files=[str(Path(self.root).resolve())])


@register("datareader", "TorchvisionDataset")
class TorchvisionDataset(ImageReader):
    """A torchvision image-classification dataset (MNIST, FashionMNIST, CIFAR10, ...) from a local root;
    downloaded only with `download: true`. Note: CIFAR's files are Python pickles; read only a root you trust."""

    crawler = TorchvisionCrawler


def _load_hf(path: str, format: str | None, key: str, streaming: bool, cache_dir: str | None) -> Any:
    """A local dataset: parquet / csv / json(l) / arrow files, or a `save_to_disk` directory.

    Read into memory through a temporary cache (nothing is written under the home directory), or with
    `streaming`, memory-mapped: Arrow files and saved datasets where they are, parquet / csv / json once
    converted to Arrow in the datasets cache (`cache_dir`, else HF_DATASETS_CACHE)."""
    datasets = require("datasets", "datasets")
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"{_ARGS}.{key}", f"{str(source)!r} does not exist")
    if source.is_dir():
        loaded = datasets.load_from_disk(str(source), keep_in_memory=not streaming)
        if isinstance(loaded, datasets.DatasetDict):
            raise DataError(
                f"{_ARGS}.{key}",
                f"{str(source)!r} holds several splits ({', '.join(loaded)}): give one split's "
                "directory to each of path, val_path and test_path",
            )
        return loaded
    kind = format or {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".arrow": "arrow"}.get(
        source.suffix.lower()
    )
    if kind is None:
        raise DataError(f"{_ARGS}.{key}", f"{str(source)!r}: not a parquet, arrow, csv or json(l) file; give `format`")
    if kind == "arrow":
        return datasets.Dataset.from_file(str(source), in_memory=not streaming)
    reader = {
        "parquet": datasets.Dataset.from_parquet,
        "csv": datasets.Dataset.from_csv,
        "json": datasets.Dataset.from_json,
    }[kind]
    if streaming:
        if (
            cache_dir is not None
            and Path(cache_dir).expanduser().exists()
            and not Path(cache_dir).expanduser().is_dir()
        ):
            raise DataError(
                f"{_ARGS}.cache_dir", f"{cache_dir!r} is a file: give a folder for the Arrow copy of {source.name}"
            )
        try:
            return reader(str(source), cache_dir=cache_dir, keep_in_memory=False)
        except OSError as err:
            raise DataError(
                f"{_ARGS}.{key}",
                f"{str(source)!r} could not be copied to Arrow in {cache_dir or 'the datasets cache'}: {err}",
            ) from None
    with tempfile.TemporaryDirectory(prefix="ednaml-hf-") as cache:
        return reader(str(source), cache_dir=cache, keep_in_memory=True)


class Column:
    """One column of a dataset as the reader's inputs, a row at a time (streamed: by the data loader's workers),
    from its stored values: an image column's bytes, not the PIL image `datasets` would decode."""

    def __init__(self, dataset: Any, name: str, convert: Callable[[Any], Any]):
        self.dataset, self.name, self.convert = dataset, name, convert
        self._values: Any = None

    def read(self, index: int) -> Any:
        if self._values is None:
            self._values = self.dataset.data.column(self.name)
        try:
            return self.convert(self._values[index].as_py())
        except DataError as err:
            raise DataError(err.key, f"row {index}: {err.message}") from None

    def __getstate__(self) -> dict[str, Any]:  # the dataset pickles as its file's path; the column is found again
        return {**self.__dict__, "_values": None}


def _label_codes(part: Any, column: str, index: dict[str, int] | None) -> np.ndarray:
    """Each row's class index in `column` (-1: no label): a ClassLabel's own, else `index` of the value's text."""
    import pyarrow.compute as pc

    values = part.data.column(column)
    if index is None:
        codes = pc.fill_null(values, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return np.where(codes >= 0, codes, -1)
    found = pc.unique(values).drop_null()
    lookup = np.array([index[str(v)] for v in found.to_pylist()] + [-1], dtype=np.int64)
    position = pc.fill_null(pc.index_in(values, value_set=found), len(found)).to_numpy(zero_copy_only=False)
    return lookup[position] if len(position) else np.zeros(0, dtype=np.int64)


class HFCrawler(Crawler):
    """Rows of a Hugging Face dataset: an input column and one or more label columns; a train file and
    val / test files, or seeded splits of it. Labels stored as a ClassLabel keep its names. With
    `streaming: true` the rows stay on disk (memory-mapped) and are read as batches need them."""

    input_kind = "text"

    def __init__(
        self,
        path: Location,
        val_path: Location | None = None,
        test_path: Location | None = None,
        format: str | None = None,
        input_column: str | None = None,
        label_columns: Sequence[str] | str = ("label",),
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        streaming: bool = False,
        cache_dir: Location | None = None,
    ):
        super().__init__(val_fraction, split_seed)
        if cache_dir is not None and not streaming:
            raise DataError(f"{_ARGS}.cache_dir", "is used only with streaming: true (in memory, nothing is cached)")
        self.paths = {"train": path, "val": val_path, "test": test_path}
        self.format, self.streaming, self.cache_dir = format, streaming, cache_dir
        self.input_column = input_column or self.input_kind
        self.label_columns = [label_columns] if isinstance(label_columns, str) else list(label_columns)
        self.test_fraction = test_fraction

    def convert(self, value: Any) -> Any:
        return str(value)

    def find(self) -> Crawl:
        import pyarrow as pa

        problems = DataProblems()  # every file that cannot be read and every column missing from one, at once
        parts = {}
        for split, source in self.paths.items():
            with problems.collected():
                if source:
                    parts[split] = _load_hf(
                        source,
                        self.format,
                        "path" if split == "train" else f"{split}_path",
                        self.streaming,
                        self.cache_dir,
                    )
        names: dict[str, list[str]] = {}
        for split, part in parts.items():
            for key, column in [("input_column", self.input_column)] + [
                ("label_columns", c) for c in self.label_columns
            ]:
                if column not in part.column_names:
                    problems.add(
                        f"{_ARGS}.{key}",
                        f"column {column!r} is not in {self.paths[split]!r}; its columns are {part.column_names}",
                    )
        problems.raise_any()
        for column in self.label_columns:
            kinds = {split: hasattr(part.features[column], "names") for split, part in parts.items()}
            if len(set(kinds.values())) > 1:
                raise DataError(
                    f"{_ARGS}.label_columns",
                    f"column {column!r} is a ClassLabel in some files and not in others "
                    f"({kinds}): give it the same type everywhere",
                )
            feature = parts["train"].features[column]
            if hasattr(feature, "names"):  # a ClassLabel: its names, in its order
                names[column] = list(feature.names)
                continue
            kind = parts["train"].data.column(column).type
            if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
                raise DataError(
                    f"{_ARGS}.label_columns",
                    f"column {column!r} holds {kind} values: a label column holds one "
                    "class per row (a ClassLabel, an integer or a string); give each "
                    "label its own column in label_columns",
                )
            values = {v for part in parts.values() for v in part.data.column(column).unique().drop_null().to_pylist()}
            numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            names[column] = [str(v) for v in sorted(values)] if numeric else sorted(str(v) for v in values)
        index = {c: {v: i for i, v in enumerate(values)} for c, values in names.items()}
        samples: dict[str, list[Sample]] = {}
        for split, part in parts.items():
            codes = (
                np.stack(
                    [
                        _label_codes(part, c, None if hasattr(part.features[c], "names") else index[c])
                        for c in self.label_columns
                    ],
                    axis=1,
                )
                if len(part)
                else np.zeros((0, len(self.label_columns)), int)
            )
            # a row without a label (ClassLabel -1, a missing value) is left out: nothing to learn or score
            rows = np.flatnonzero((codes >= 0).all(axis=1))
            column = Column(part, self.input_column, self.convert)
            if self.streaming:
                inputs: Sequence[Any] = [Stored(column, int(row)) for row in rows]
                if inputs:
                    inputs[0].read()  # a column this reader cannot use fails here, not later in a worker
            else:
                inputs = [column.read(int(row)) for row in rows]
            samples[split] = [(x, tuple(int(c) for c in codes[row])) for x, row in zip(inputs, rows)]
        if "test" not in samples:
            train, test = seeded_split(samples["train"], self.test_fraction, self.split_seed + 1)
            samples["train"], samples["test"] = train, test
        return Crawl(splits=samples, labels=names, files=[str(Path(p).resolve()) for p in self.paths.values() if p])


class HFImageCrawler(HFCrawler):
    input_kind = "image"

    def convert(self, value: Any) -> Any:
        """An image column's stored value ({bytes, path}, or an array as nested lists) as an array."""
        if isinstance(value, dict) and value.get("bytes"):
            import io

            from PIL import Image

            try:
                value = Image.open(io.BytesIO(value["bytes"]))
                value.load()
            except (OSError, ValueError, SyntaxError) as err:  # not an image, or a damaged one
                raise DataError(f"{_ARGS}.input_column", f"an image cannot be read: {err}") from None
        elif isinstance(value, dict) and value.get("path"):
            raise DataError(
                f"{_ARGS}.input_column", "images stored as file paths are not read; store their bytes (datasets.Image)"
            )
        if hasattr(value, "mode") and value.mode not in ("L", "RGB"):  # a decoded PIL image: palette, alpha, 16-bit
            value = value.convert("L" if value.mode in ("1", "LA", "I", "I;16") else "RGB")
        return np.asarray(value)


@register("datareader", "HFDataset")
class HFDataset(TextReader):
    """Texts from a Hugging Face dataset in local files (parquet, arrow, csv, json, a saved dataset), tokenized
    like TextFiles."""

    crawler = HFCrawler


@register("datareader", "HFImageDataset")
class HFImageDataset(ImageReader):
    """Images from a Hugging Face dataset in local files (an image column of datasets.Image, or arrays)."""

    crawler = HFImageCrawler
