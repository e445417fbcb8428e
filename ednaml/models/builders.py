"""Model builders: MODEL_ARCH + MODEL_BASE + MODEL_NORMALIZATION + MODEL_KWARGS -> an nn.Module."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ednaml import registry
from ednaml.registry import register

# Keyword arguments that hold a model's output size; left blank, they are inferred from the data.
OUTPUT_SIZE_KWARGS = ("softmax_dimensions", "num_classes")


def ednaml_model_builder(arch: type[nn.Module], base: str | None, normalization: str | None, kwargs: dict[str, Any]) -> nn.Module:
    """Pass MODEL_BASE and MODEL_NORMALIZATION to the architecture when it takes them."""
    params = inspect.signature(arch).parameters
    kwargs = dict(kwargs)
    if base is not None and "base" in params:
        kwargs["base"] = base
    if normalization is not None and "normalization" in params:
        kwargs["normalization"] = normalization
    return arch(**kwargs)


# The original EdnaML had one builder per model family; here they are one.
for _name in ("ednaml_model_builder", "classification_model_builder", "multiclassification_model_builder", "multibranch_model_builder"):
    register("model_builder", _name)(ednaml_model_builder)


def build_model(model_cfg: dict[str, Any], num_classes: int) -> nn.Module:
    """Build MODEL, filling blank output sizes with the number of classes of the target label."""
    arch = registry.get("model", model_cfg["MODEL_ARCH"])
    builder = registry.get("model_builder", model_cfg["BUILDER"])
    kwargs = dict(model_cfg["MODEL_KWARGS"])
    params = inspect.signature(arch).parameters
    for key in OUTPUT_SIZE_KWARGS:
        if key in params and kwargs.get(key) is None:
            kwargs[key] = num_classes
    return builder(arch, model_cfg["MODEL_BASE"], model_cfg["MODEL_NORMALIZATION"], kwargs)
