"""Image data readers: scikit-learn's bundled digits, a folder of class subfolders, a CSV manifest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ednaml.config.paths import Location
from ednaml.data.base import Crawl, Crawler, DataReader, LabelledDataset, Sample, read_rows, seeded_split
from ednaml.data.transforms import image_transforms
from ednaml.errors import DataError, DataProblems
from ednaml.registry import register
from ednaml.utils import require

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_ARGS = "EXECUTION.DATAREADER.CRAWLER_ARGS"


def _with_test_split(samples: list[Sample], test_fraction: float, seed: int) -> dict[str, list[Sample]]:
    train, test = seeded_split(samples, test_fraction, seed + 1)
    return {"train": train, "test": test}


@register("dataset", "ImageDataset")
class ImageDataset(LabelledDataset):
    """Images from file paths (read with Pillow) or arrays, with one class index per label."""

    def load(self, item: Any) -> Any:
        if isinstance(item, (str, Path)):
            from PIL import Image

            try:
                with Image.open(item) as image:
                    return image.convert("L" if image.mode in ("L", "1", "I;16") else "RGB")
            except (
                OSError,
                ValueError,
                SyntaxError,
                Image.DecompressionBombError,
            ) as err:  # changed after the crawl checked it
                raise DataError("EXECUTION.DATAREADER", f"image {str(item)!r} cannot be read: {err}") from None
        return item


def check_images(paths: Sequence[str], key: str) -> None:
    """Every image file exists, is not empty and has a header Pillow can read; every bad one is named at once."""
    from PIL import Image, UnidentifiedImageError

    bad = []
    for path in paths:
        file = Path(path)
        if not file.is_file():
            bad.append(f"{path} (missing)")
        elif file.stat().st_size == 0:
            bad.append(f"{path} (empty)")
        else:
            try:
                with Image.open(file) as image:
                    _ = image.size  # the header is parsed on open
            except (
                Image.DecompressionBombError
            ):  # a header claiming more pixels than any image here: decoding would fill memory
                bad.append(f"{path} (its header claims more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels)")
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                bad.append(f"{path} (not a readable image)")
    if bad:
        shown = "; ".join(bad[:20]) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise DataError(key, f"{len(bad)} of {len(paths)} images cannot be used: {shown}")


def _lines(found: Sequence[tuple[int, str]], limit: int = 20) -> str:
    """'line 3 (label), line 7 (label) and 4 more': where in a file its problems are."""
    shown = ", ".join(f"line {i} ({what})" for i, what in found[:limit])
    return shown + (f" and {len(found) - limit} more" if len(found) > limit else "")


def files_in(path: str, extensions: Sequence[str], kind: str) -> list[Path]:
    """The files of `kind` at `path` (`--data`): the file itself, or every one below the folder, sorted."""
    root = Path(path).expanduser()
    if root.is_file():
        if root.suffix.lower() not in extensions:
            raise DataError(
                "--data",
                f"{path!r} has none of the {kind} extensions ({', '.join(extensions)}); "
                "give such a file or a folder of them",
            )
        return [root]
    if not root.is_dir():
        raise DataError("--data", f"{path!r} does not exist")
    found = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in extensions)
    if not found:
        raise DataError("--data", f"no {kind} files ({', '.join(extensions)}) in {path!r}")
    return found


def image_inputs(path: str) -> list[tuple[str, Any]]:
    """Images to predict on: one image file, or every image below a folder."""
    files = [str(f) for f in files_in(path, IMAGE_EXTENSIONS, "image")]
    check_images(files, "--data")
    return [(f, f) for f in files]


def image_example() -> Any:
    """A blank RGB image; the transforms resize it and set its channels."""
    return require("PIL.Image", "vision").new("RGB", (32, 32))


# Labels derived from the digit, for multi-output experiments: name -> (class names, digit -> class).
DIGIT_LABELS = {
    "digit": ([str(d) for d in range(10)], list(range(10))),
    "parity": (["even", "odd"], [d % 2 for d in range(10)]),
    "loops": (["0", "1", "2"], [1, 0, 0, 0, 1, 0, 1, 0, 2, 1]),  # closed loops in the written digit
}


class DigitsCrawler(Crawler):
    """scikit-learn's bundled handwritten digits: 1,797 gray 8x8 images, 10 classes, no download.

    `extra_labels` adds labels derived from the digit ({name: parity | loops | digit}), so that one
    image carries several labels.
    """

    def __init__(
        self,
        label_name: str = "digit",
        extra_labels: dict[str, str] | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        super().__init__(val_fraction, split_seed)
        self.labels = {label_name: "digit", **(extra_labels or {})}
        for name, kind in self.labels.items():
            if kind not in DIGIT_LABELS:
                raise DataError(f"{_ARGS}.extra_labels.{name}", f"{kind!r} is not one of {', '.join(DIGIT_LABELS)}")
        self.test_fraction = test_fraction

    def find(self) -> Crawl:
        datasets = require("sklearn.datasets", "dev")
        digits = datasets.load_digits()
        images = (digits.images * (255.0 / 16.0)).round().astype("uint8")
        maps = [DIGIT_LABELS[kind][1] for kind in self.labels.values()]
        samples = [(image, tuple(m[digit] for m in maps)) for image, digit in zip(images, digits.target.tolist())]
        source = Path(datasets.__file__).parent / "data" / "digits.csv.gz"
        return Crawl(
            splits=_with_test_split(samples, self.test_fraction, self.split_seed),
            labels={name: DIGIT_LABELS[kind][0] for name, kind in self.labels.items()},
            files=[str(source)] if source.exists() else [],
        )


class ImageReader(DataReader):
    """A reader of images: Pillow or arrays, image_transforms, new images from a file or folder."""

    dataset = ImageDataset
    transforms = staticmethod(image_transforms)
    inputs = staticmethod(image_inputs)
    example = staticmethod(image_example)


@register("datareader", "Digits")
class Digits(ImageReader):
    """scikit-learn's bundled 8x8 handwritten digits (no download); seeded train/val/test splits."""

    crawler = DigitsCrawler


def _folder(data_folder: str) -> Path:
    root = Path(data_folder).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{_ARGS}.data_folder",
            f"folder {data_folder!r} does not exist" if not root.exists() else f"{data_folder!r} is not a folder",
        )
    return root


def _images_by_class(folder: Path, extensions: Sequence[str], depth: int = 1) -> dict[tuple[str, ...], list[str]]:
    """{(class at level 1, ..., class at level depth): image files below}."""
    found: dict[tuple[str, ...], list[str]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if depth > 1:
            for key, files in _images_by_class(sub, extensions, depth - 1).items():
                found[(sub.name, *key)] = files
            continue
        files = sorted(str(f) for f in sub.rglob("*") if f.suffix.lower() in extensions)
        if files:
            found[(sub.name,)] = files
    return found


class ImageFolderCrawler(Crawler):
    """A folder with one subfolder per class, or with train/ val/ test/ folders that each hold them.

    With several label names, each is one level of subfolders: label_name [type, color] reads
    <type>/<color>/image.png.
    """

    def __init__(
        self,
        data_folder: Location,
        label_name: str | Sequence[str] = "label",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        super().__init__(val_fraction, split_seed)
        self.data_folder = data_folder
        self.label_names = [label_name] if isinstance(label_name, str) else list(label_name)
        self.extensions = tuple(e.lower() for e in extensions)
        self.test_fraction = test_fraction

    def find(self) -> Crawl:
        root = _folder(self.data_folder)
        split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
        if "train" not in split_dirs:
            split_dirs = {"all": root}
        depth = len(self.label_names)
        parts = {s: _images_by_class(d, self.extensions, depth) for s, d in split_dirs.items()}
        classes = [sorted({key[level] for found in parts.values() for key in found}) for level in range(depth)]
        if not classes[0]:
            raise DataError(
                f"{_ARGS}.data_folder",
                f"no images ({', '.join(self.extensions)}) in {depth} level(s) of class subfolders "
                f"of {self.data_folder!r}",
            )
        index = [{c: i for i, c in enumerate(level)} for level in classes]
        samples = {
            s: [(f, tuple(index[lvl][k] for lvl, k in enumerate(key))) for key, files in found.items() for f in files]
            for s, found in parts.items()
        }
        splits = _with_test_split(samples["all"], self.test_fraction, self.split_seed) if "all" in samples else samples
        files = [f for split in samples.values() for f, _ in split]
        check_images(files, f"{_ARGS}.data_folder")
        return Crawl(splits=splits, labels=dict(zip(self.label_names, classes)), files=files)


@register("datareader", "ImageFolder")
class ImageFolder(ImageReader):
    """Images in one subfolder per class (optionally under train/ val/ test/)."""

    crawler = ImageFolderCrawler


class CSVManifestCrawler(Crawler):
    """A CSV file with an image path column and one or more label columns (and optionally a split column)."""

    def __init__(
        self,
        manifest: Location,
        path_column: str = "path",
        label_columns: Sequence[str] = ("label",),
        split_column: str | None = None,
        root: Location | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        super().__init__(val_fraction, split_seed)
        self.manifest, self.path_column, self.split_column = manifest, path_column, split_column
        self.label_columns = [label_columns] if isinstance(label_columns, str) else list(label_columns)
        self.root, self.test_fraction = root, test_fraction

    def find(self) -> Crawl:
        path = Path(self.manifest).expanduser()
        if not path.is_file():
            raise DataError(f"{_ARGS}.manifest", f"file {self.manifest!r} does not exist")
        rows = read_rows(path, f"{_ARGS}.manifest")
        columns = list(rows[0]) if rows else []
        wanted = [("path_column", self.path_column)] + [("label_columns", c) for c in self.label_columns]
        if self.split_column:
            wanted.append(("split_column", self.split_column))
        problems = DataProblems()  # every problem of the manifest at once
        for key, column in wanted:
            if column not in columns:
                problems.add(
                    f"{_ARGS}.{key}", f"column {column!r} is not in {self.manifest!r}; its columns are {columns}"
                )
        root = Path(self.root).expanduser() if self.root else path.parent
        blank = [
            (i, c)
            for i, row in enumerate(rows, start=2)
            for c in self.label_columns
            if c in columns and not (row[c] or "").strip()
        ]
        if blank:
            problems.add(
                f"{_ARGS}.label_columns",
                f"{len(blank)} blank label cells in {self.manifest!r}: {_lines(blank)}; "
                "a blank is not a class: fill them or remove those rows",
            )
        cells = (
            {i: row[self.split_column] or "" for i, row in enumerate(rows, start=2)}
            if self.split_column in columns
            else {}
        )
        aliases = {"validation": "val", "valid": "val", "dev": "val"}
        split_of = {i: aliases.get(cell.strip().lower(), cell.strip().lower()) for i, cell in cells.items()}
        if wrong := [(i, repr(cells[i])) for i, split in split_of.items() if split not in ("train", "val", "test")]:
            problems.add(
                f"{_ARGS}.split_column",
                f"{len(wrong)} values of column {self.split_column!r} are not train, val or test: {_lines(wrong)}",
            )
        if self.path_column in columns:
            with problems.collected():
                check_images([str(root / row[self.path_column]) for row in rows], f"{_ARGS}.manifest")
        problems.raise_any()
        classes = {c: sorted({row[c] for row in rows}) for c in self.label_columns}
        index = {c: {v: i for i, v in enumerate(vals)} for c, vals in classes.items()}

        def sample(row: dict[str, str]) -> Sample:
            return str(root / row[self.path_column]), tuple(index[c][row[c]] for c in self.label_columns)

        if self.split_column:
            splits: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
            for i, row in enumerate(rows, start=2):
                splits[split_of[i]].append(sample(row))
        else:
            splits = _with_test_split([sample(r) for r in rows], self.test_fraction, self.split_seed)
        images = [s for split in splits.values() for s, _ in split]
        return Crawl(splits=splits, labels=classes, files=[str(path)] + images)


@register("datareader", "CSVManifest")
class CSVManifest(ImageReader):
    """Images listed in a CSV file: a path column plus one or more label columns."""

    crawler = CSVManifestCrawler
