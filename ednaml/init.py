"""`ednaml init --data PATH`: a commented starter config for a folder of images (one subfolder per class, or
train/ val/ test/ folders of them) or a CSV manifest, sized to what is there, that `ednaml check` accepts.

The data is read by the reader the config will name, so bad or unreadable data is said as `check` says it."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ednaml.errors import ConfigError, UsageError

LABEL_NAMES = ("label", "labels", "class", "category", "target", "y")
SPLIT_VALUES = {"train", "val", "test", "validation", "valid", "dev"}
STEPS = 400  # optimizer steps a starter trains for, about: enough for a small CNN to learn, quick on a CPU


@dataclass
class Found:
    """What the data is: its reader and crawler arguments, then what reading it found."""

    reader: str
    arguments: dict[str, Any]
    layout: str  # in words, for the config's comment
    samples: dict[str, int] | None = None
    labels: dict[str, list[str]] | None = None
    side: int = 32
    channels: int = 3


def starter(data: str, output: Path | None) -> tuple[str, Found]:
    """The starter config's text for `data` (written relative to where the config goes), and what was found.
    A ConfigError where the data cannot be read (named as `check` names it) or the config would not check."""
    found = layout(Path(data), output.parent if output else Path.cwd())
    _read(found)
    text = render(found)
    _checked(text, found, output)
    return text, found


def layout(path: Path, config_folder: Path) -> Found:
    """The reader for what `path` is: a folder of class subfolders, or a CSV manifest."""
    where = _relative(path, config_folder)
    if path.is_dir():
        splits = [s for s in ("train", "val", "test") if (path / s).is_dir()]
        layout = (
            f"train/ val/ test/ folders of class subfolders in {path}"
            if "train" in splits
            else (f"one subfolder per class in {path}")
        )
        return Found("ImageFolder", {"data_folder": where}, layout)
    if path.is_file() and path.suffix.lower() == ".csv":
        return Found("CSVManifest", {"manifest": where, **_manifest_columns(path)}, f"the CSV manifest {path}")
    if path.exists():
        raise UsageError(f"--data {path}: not a folder of images or a .csv manifest")
    raise UsageError(f"--data {path}: no such file or folder")


def _relative(path: Path, folder: Path) -> str:
    """`path` as the config will hold it: relative to the config's folder where it can be."""
    try:
        return os.path.relpath(path.absolute(), folder.absolute())
    except ValueError:  # another drive
        return str(path.absolute())


def _manifest_columns(path: Path) -> dict[str, Any]:
    """The path, label and split columns of a manifest, from its header and rows."""
    from ednaml.data.readers import IMAGE_EXTENSIONS

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"--data {path}: cannot be read as CSV: {err}") from None
    if not rows:
        raise UsageError(f"--data {path}: the manifest has no rows")
    columns = list(rows[0])
    paths = [c for c in columns if all(str(r[c] or "").lower().endswith(IMAGE_EXTENSIONS) for r in rows)]
    if not paths:
        raise UsageError(
            f"--data {path}: no column holds image paths ({', '.join(IMAGE_EXTENSIONS)}); its columns are {columns}"
        )
    splits = [c for c in columns if c not in paths and _names_splits({str(r[c]).strip().lower() for r in rows})]
    rest = [c for c in columns if c not in paths and c not in splits]
    if not rest:
        raise UsageError(f"--data {path}: no label column besides {paths[0]!r}; its columns are {columns}")
    named = [c for c in rest if c.strip().lower() in LABEL_NAMES]
    arguments: dict[str, Any] = {"path_column": paths[0], "label_columns": [(named or rest)[0]]}
    if splits:
        arguments["split_column"] = splits[0]
    return arguments


def _names_splits(values: set[str]) -> bool:
    """Whether a column's values say each row's split: train and val or test, nothing else."""
    return values <= SPLIT_VALUES and "train" in values and len(values) > 1


def _read(found: Found) -> None:
    """Crawl the data with the reader's own crawler (its errors are `check`'s) and look at a few images."""
    from ednaml import registry
    from ednaml.errors import DataError

    reader = registry.get("datareader", found.reader)
    try:
        crawl = reader.crawler(**found.arguments).crawl()
    except DataError as err:
        raise ConfigError([_problem(err)]) from None
    found.samples = {split: len(samples) for split, samples in crawl.splits.items()}
    found.labels = crawl.labels
    if not found.samples.get("train"):
        raise ConfigError("--data: no training samples found")
    sides, modes = [], []
    from PIL import Image

    for file, _ in crawl.splits["train"][:16]:
        with Image.open(file) as image:
            sides.append(min(image.size))
            modes.append(image.mode)
    found.channels = 1 if all(m in ("1", "L", "I", "I;16", "F") for m in modes) else 3
    middle = sorted(sides)[len(sides) // 2]
    found.side = max(8, min(64, 8 * round(middle / 8)))  # small enough to train on a CPU in seconds


def _problem(err: Any) -> Any:
    from ednaml.errors import Problem

    return Problem(tuple(err.key.split(".")), str(err).split(": ", 1)[-1])


def sizes(found: Found) -> dict[str, int]:
    """The batch size, epochs and model width for the training split's size."""
    train = found.samples["train"]
    batch = 32 if train >= 512 else 16
    steps = math.ceil(train / batch)
    epochs = max(8, min(40, math.ceil(STEPS / steps)))
    return {"batch": batch, "epochs": epochs, "width": 32 if train < 5000 else 64, "steps": steps}


def render(found: Found) -> str:
    """The config, a comment with each choice."""
    size = sizes(found)
    label = next(iter(found.labels))
    classes = found.labels[label]
    shown = ", ".join(classes[:8]) + (f", ... ({len(classes)} in all)" if len(classes) > 8 else "")
    samples = ", ".join(f"{split} {count}" for split, count in found.samples.items())
    arguments = "\n".join(f"      {key}: {_yaml(value)}" for key, value in found.arguments.items())
    epochs, decay = size["epochs"], max(1, round(size["epochs"] * 2 / 3))
    return f"""# yaml-language-server: $schema=ednaml.schema.json
# Made by `ednaml init` for {found.layout}.
# Found: {samples} samples; the classes of {label!r}: {shown}.
# Check it with `ednaml check --config THIS.yml`, train it with `ednaml fit --config THIS.yml`.
EXECUTION:
  EPOCHS: {epochs}  # about {STEPS} optimizer steps: {size["steps"]} per epoch at batch size {size["batch"]}
  DATAREADER:
    DATAREADER: {found.reader}
    CRAWLER_ARGS:
{arguments}

SAVE:
  MODEL_CORE_NAME: {_name(found)}
  MODEL_VERSION: 1
  MODEL_BACKBONE: smallcnn
  MODEL_QUALIFIER: starter

TRANSFORMATION:
  BATCH_SIZE: {size["batch"]}
  ARGS:
    i_shape: [{found.side}, {found.side}]  # the images' shorter side is about {found.side} px (at most 64 here)
    channels: {found.channels}  # {"grayscale" if found.channels == 1 else "colour"} images
    normalization_mean: 0.5
    normalization_std: 0.5

TRAIN_TRANSFORMATION:
  ARGS:
    t_crop: true  # random crops; add h_flip: true where a mirrored image is the same class

MODEL:
  MODEL_ARCH: SmallCNN
  MODEL_KWARGS:
    initial_channels: {found.channels}
    width: {size["width"]}

LOSS:
  - LOSSES: [SoftmaxLogitsLoss]
    LABEL: {label}
    NAME: {label}

OPTIMIZER:
  - OPTIMIZER: Adam
    BASE_LR: 0.003
    WEIGHT_DECAY: 0.0001

SCHEDULER:
  - LR_SCHEDULER: StepLR  # the learning rate x0.2 after two thirds of the epochs
    LR_KWARGS: {{step_size: {decay}, gamma: 0.2}}

seed_everything: 0
"""


def _yaml(value: Any) -> str:
    import json

    return json.dumps(value) if not isinstance(value, str) or not value.replace("_", "").isalnum() else value


def _name(found: Found) -> str:
    import re

    where = found.arguments.get("data_folder") or Path(found.arguments["manifest"]).stem
    name = re.sub(r"[^A-Za-z0-9]+", "-", Path(where).name).strip("-").lower()
    return name or "starter"


def _checked(text: str, found: Found, output: Path | None) -> None:
    """The config as `ednaml check` would take it from where it goes: a ConfigError listing what it refuses."""
    import yaml

    from ednaml.api import prepare
    from ednaml.check import check

    config = yaml.safe_load(text)
    folder = (output.parent if output else Path.cwd()).absolute()
    arguments = config["EXECUTION"]["DATAREADER"]["CRAWLER_ARGS"]
    for key in ("data_folder", "manifest"):  # as the config's folder resolves it
        if key in arguments:
            arguments[key] = str((folder / arguments[key]).resolve())
    _, problems = check(prepare((), (), (), config, base_label="the starter config"))
    if problems:
        raise ConfigError(problems, "the starter config")
