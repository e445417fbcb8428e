"""Model builders: MODEL_ARCH + MODEL_BASE + MODEL_NORMALIZATION + MODEL_KWARGS -> an nn.Module."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ednaml import registry
from ednaml.registry import register

# Keyword arguments that hold a model's output size; left blank, they are inferred from the data.
OUTPUT_SIZE_KWARGS = ("softmax_dimensions", "num_classes")


# The original EdnaML had one builder per model family; here they are one.
@register("model_builder", "multibranch_model_builder")
@register("model_builder", "multiclassification_model_builder")
@register("model_builder", "classification_model_builder")
@register("model_builder", "ednaml_model_builder")
def ednaml_model_builder(
    arch: type[nn.Module], base: str | None, normalization: str | None, kwargs: dict[str, Any]
) -> nn.Module:
    """Pass MODEL_BASE and MODEL_NORMALIZATION to the architecture when it takes them."""
    params = inspect.signature(arch).parameters
    given = {"base": base, "normalization": normalization}
    supplied = {key: value for key, value in given.items() if value is not None and key in params}
    return registry.build("model", arch, kwargs, at=("MODEL", "MODEL_KWARGS"), **supplied)


def fill_output_sizes(value: Any, classes: dict[str, int]) -> Any:
    """Blank `dimensions` of every {label, dimensions} mapping (and `fuse_dimensions` of `fuse_label`)
    become the number of classes of that label."""
    if isinstance(value, list):
        return [fill_output_sizes(v, classes) for v in value]
    if not isinstance(value, dict):
        return value
    filled = {k: fill_output_sizes(v, classes) for k, v in value.items()}
    for size_key, label_key in (("dimensions", "label"), ("fuse_dimensions", "fuse_label")):
        if size_key in filled and filled[size_key] is None and filled.get(label_key) is not None:
            label = filled[label_key]
            if label not in classes:
                raise ValueError(
                    f"MODEL.MODEL_KWARGS: label {label!r} is not a label of the data; its labels are {list(classes)}"
                )
            filled[size_key] = classes[label]
    return filled


def build_model(
    model: Any, classes: dict[str, int], target_label: str | None, data_info: dict[str, Any] | None = None
) -> nn.Module:
    """Build MODEL, filling blanks from the data: `softmax_dimensions` with the classes of the target
    label, blank `dimensions` of outputs with the classes of their own label, and what the data
    reader knows (a tokenizer's `vocab_size`, `padding_idx`)."""
    arch = registry.get("model", model.MODEL_ARCH)
    builder = registry.get("model_builder", model.BUILDER)
    kwargs = fill_output_sizes(dict(model.MODEL_KWARGS), classes)
    params = inspect.signature(arch).parameters
    for key in OUTPUT_SIZE_KWARGS:
        if key in params and kwargs.get(key) is None and target_label is not None:
            kwargs[key] = classes[target_label]
    for key, value in (data_info or {}).items():
        if key in params and kwargs.get(key) is None:
            kwargs[key] = value
    return builder(arch, model.MODEL_BASE, model.MODEL_NORMALIZATION, kwargs)
