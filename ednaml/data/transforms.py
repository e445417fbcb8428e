"""Image transforms from TRANSFORMATION.ARGS, with the original EdnaML's argument names."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ednaml.config.load import ConfigWarning
from ednaml.utils import require


def _per_channel(value: float | Sequence[float], channels: int, name: str) -> list[float]:
    values = [float(value)] * channels if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"TRANSFORMATION.ARGS.{name}: has {len(values)} values for {channels} channels")
    return values


def image_transforms(
    train: bool,
    i_shape: Sequence[int] | None = None,
    shape: Sequence[int] | None = None,
    channels: int = 3,
    normalization_mean: float | Sequence[float] = 0.5,
    normalization_std: float | Sequence[float] = 0.5,
    normalization_scale: float | None = None,
    h_flip: float = 0.0,
    t_crop: bool = False,
    rea: bool = False,
    random_erase: bool = False,
    random_erase_value: float = 0.5,
) -> Callable[[Any], torch.Tensor]:
    """Resize to i_shape, fix channels, [flip, pad-and-crop], scale to [0,1], normalize, [random erasing].

    Flip, crop and erasing apply to the training split only. `shape` is the original's other name for i_shape.
    """
    v2 = require("torchvision.transforms.v2", "vision")
    i_shape = i_shape or shape
    if normalization_scale is not None:
        warnings.warn(
            "TRANSFORMATION.ARGS.normalization_scale is ignored: pixels are scaled to [0, 1] before normalization",
            ConfigWarning,
            stacklevel=2,
        )
    steps: list[Any] = [v2.ToImage()]
    if i_shape:
        steps.append(v2.Resize(list(i_shape), antialias=True))
    steps.append(v2.Grayscale(1) if channels == 1 else v2.RGB())  # gray by luminance; RGB by repeating a gray channel
    if train and h_flip:
        steps.append(v2.RandomHorizontalFlip(p=float(h_flip)))
    if train and t_crop and i_shape:
        pad = max(1, round(0.1 * min(i_shape)))
        steps.append(v2.RandomCrop(list(i_shape), padding=pad))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    steps.append(
        v2.Normalize(
            _per_channel(normalization_mean, channels, "normalization_mean"),
            _per_channel(normalization_std, channels, "normalization_std"),
        )
    )
    if train and (rea or random_erase):
        steps.append(v2.RandomErasing(p=0.5, value=float(random_erase_value)))
    return v2.Compose(steps)


def check_image_kwargs(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """channels is 1 (gray) or 3 (RGB); and the normalization's rules."""
    channels = kwargs.get("channels", 3)
    problems = (
        []
        if channels in (1, 3) and not isinstance(channels, bool)
        else [("channels", f"{channels!r} is not 1 (gray) or 3 (RGB)")]
    )
    return problems + check_normalization(kwargs)


def check_normalization(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """normalization_std divides every pixel: each value must be a non-zero number."""
    problems = []
    for name in ("normalization_mean", "normalization_std"):
        if name not in kwargs:
            continue
        value = kwargs[name]
        values = value if isinstance(value, (list, tuple)) else [value]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            problems.append((name, f"{value!r} is not a number or a list of numbers (one per channel)"))
        elif name == "normalization_std" and any(v == 0 for v in values):
            problems.append(
                (name, f"{value!r}: a standard deviation of 0 would divide by zero; use 1 to leave values as they are")
            )
    return problems


image_transforms.check_kwargs = check_image_kwargs  # type: ignore[attr-defined]
