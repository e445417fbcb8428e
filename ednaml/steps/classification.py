"""The built-in step logic: single-output, multi-output and multi-branch classification."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ednaml.registry import register
from ednaml.steps import Output, OutputInfo, StepLogic, split_result


@register("step_logic", "ClassificationTrainer")
class ClassificationTrainer(StepLogic):
    """Single-output classification: the model's logits (and features), scored against one label."""

    def bind(self, model: nn.Module, labels: Sequence[str], target_label: str | None) -> dict[str, OutputInfo]:
        """Called once the data and model are known; returns the outputs the model gives, by name."""
        self.labels = list(labels)
        self.outputs = {
            target_label: OutputInfo(target_label, target_label, getattr(model, "feature_dimensions", None))
        }
        return self.outputs

    def outputs_of(self, result: Any) -> dict[str, Output]:
        logits, features = split_result(result)
        (info,) = self.outputs.values()
        return {info.name: Output(logits, features, info.label)}

    def __call__(self, model: nn.Module, batch: Any) -> tuple[dict[str, Output], dict[str, torch.Tensor]]:
        x, y = batch
        return self.outputs_of(model(x)), self.targets(y)


@register("step_logic", "MultiClassificationTrainer")
class MultiClassificationTrainer(ClassificationTrainer):
    """Several outputs, each scored against its own label: the model returns {name: (logits, features)}
    and lists its outputs as `model.outputs = [{name, label}, ...]`."""

    multi_output = True

    def bind(self, model: nn.Module, labels: Sequence[str], target_label: str | None) -> dict[str, OutputInfo]:
        self.labels = list(labels)
        declared = getattr(model, "outputs", None)
        if not declared:
            raise ValueError(
                f"EXECUTION.STEP_LOGIC: {type(self).__name__} needs a multi-output model (with `outputs`), "
                f"not {type(model).__name__}"
            )
        features = getattr(model, "feature_dimensions", {}) or {}
        self.outputs = {}
        for output in declared:
            if output["label"] not in self.labels:
                raise ValueError(
                    f"MODEL.MODEL_KWARGS: output {output['name']!r} tracks label {output['label']!r}, "
                    f"which the data does not have; its labels are {self.labels}"
                )
            size = features.get(output["name"]) if isinstance(features, dict) else features
            self.outputs[output["name"]] = OutputInfo(output["name"], output["label"], size)
        return self.outputs

    def outputs_of(self, result: Any) -> dict[str, Output]:
        outputs = {}
        for name, info in self.outputs.items():
            logits, features = split_result(result[name])
            outputs[name] = Output(logits, features, info.label)
        return outputs


@register("step_logic", "MultiBranchTrainer")
class MultiBranchTrainer(MultiClassificationTrainer):
    """Branches with their own outputs and an optional fused head (MultiBranchResnet): every output scored
    against its own label."""
