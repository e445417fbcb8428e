"""Multi-output models: one backbone with several heads, or several branches with an optional fused head."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ednaml.models.attention import check_attention
from ednaml.models.classification import ClassificationHead, resnet_stages
from ednaml.registry import register


def _check_outputs(outputs: Any, key: str) -> list[tuple[str, str]]:
    if not isinstance(outputs, list) or not outputs:
        return [(key, "must be a list of {name, label, dimensions}")]
    problems = []
    for i, output in enumerate(outputs):
        if not isinstance(output, dict) or not output.get("name") or not output.get("label"):
            problems.append((key, f"entry {i} needs a name and a label (dimensions may be blank)"))
    names = [o.get("name") for o in outputs if isinstance(o, dict)]
    if len(set(names)) != len(names):
        problems.append((key, f"output names must be unique, got {names}"))
    return problems


@register("model", "MultiClassificationResnet")
class MultiClassificationResnet(nn.Module):
    """One ResNet backbone, one classification head per output: outputs [{name, label, dimensions}]."""

    def __init__(
        self,
        base: str = "resnet18",
        outputs: Sequence[dict[str, Any]] = (),
        number_outputs: int | None = None,
        initial_channels: int = 3,
        embedding_dimensions: int | None = None,
        normalization: str | None = "bn",
        attention: str | None = None,
    ):
        super().__init__()
        problems = self.check_kwargs(
            {"outputs": list(outputs), "number_outputs": number_outputs, "attention": attention}
        )
        if problems:
            raise ValueError("; ".join(f"MODEL.MODEL_KWARGS.{k}: {m}" for k, m in problems))
        self.stages, channels = resnet_stages(base, initial_channels, attention)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.outputs = [{"name": o["name"], "label": o["label"]} for o in outputs]
        # a list, not a ModuleDict: output names such as "type" would clash with nn.Module's attributes
        self.heads = nn.ModuleList(
            ClassificationHead(channels[-1], o["dimensions"], embedding_dimensions, normalization) for o in outputs
        )
        self.feature_dimensions = {o["name"]: head.feature_dimensions for o, head in zip(self.outputs, self.heads)}

    @staticmethod
    def check_kwargs(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
        problems = _check_outputs(kwargs.get("outputs"), "outputs") + check_attention(kwargs)
        count = kwargs.get("number_outputs")
        if count is not None and isinstance(kwargs.get("outputs"), list) and count != len(kwargs["outputs"]):
            problems.append(("number_outputs", f"is {count} but outputs lists {len(kwargs['outputs'])}"))
        return problems

    def forward(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{output name: (logits, features)}."""
        for stage in self.stages:
            x = stage(x)
        features = self.pool(x)
        return {o["name"]: head(features) for o, head in zip(self.outputs, self.heads)}


@register("model", "MultiBranchResnet")
class MultiBranchResnet(nn.Module):
    """A shared ResNet trunk that splits into branches, each with its own outputs, and an optional fused head.

    shared_block: how many of layer1..layer4 the branches share (the stem is always shared).
    fuse: concatenate the features of the `fuse_outputs` branches into one more head
    (fuse_name, fuse_label, fuse_dimensions).
    """

    def __init__(
        self,
        base: str = "resnet18",
        branches: Sequence[dict[str, Any]] = (),
        number_branches: int | None = None,
        shared_block: int = 0,
        fuse: bool = False,
        fuse_outputs: Sequence[str] = (),
        fuse_dimensions: int | None = None,
        fuse_label: str | None = None,
        fuse_name: str = "fuse",
        initial_channels: int = 3,
        embedding_dimensions: int | None = None,
        normalization: str | None = "bn",
        attention: str | None = None,
        soft_targets: bool = False,
        soft_target_branch: Sequence[str] = (),
        soft_target_output_source: str | None = None,
    ):
        super().__init__()
        given = dict(
            branches=list(branches),
            number_branches=number_branches,
            shared_block=shared_block,
            fuse=fuse,
            fuse_outputs=list(fuse_outputs),
            fuse_label=fuse_label,
            attention=attention,
            soft_targets=soft_targets,
        )
        problems = self.check_kwargs(given)
        if problems:
            raise ValueError("; ".join(f"MODEL.MODEL_KWARGS.{k}: {m}" for k, m in problems))
        stages, channels = resnet_stages(base, initial_channels, attention)
        split = 1 + shared_block
        self.trunk = nn.Sequential(*stages[:split])
        # lists, not ModuleDicts: branch and output names such as "type" would clash with nn.Module's attributes
        self.branch_names = [b["name"] for b in branches]
        self.branches = nn.ModuleList(copy.deepcopy(nn.Sequential(*stages[split:])) for _ in branches)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        width = channels[-1]
        heads, self.routes, self.outputs = [], [], []  # routes: the branch each output reads
        for branch in branches:
            for output in branch["outputs"]:
                heads.append(ClassificationHead(width, output["dimensions"], embedding_dimensions, normalization))
                self.routes.append(branch["name"])
                self.outputs.append({"name": output["name"], "label": output["label"]})
        self.fuse_outputs = list(fuse_outputs) if fuse else []
        if fuse:
            heads.append(
                ClassificationHead(width * len(self.fuse_outputs), fuse_dimensions, embedding_dimensions, normalization)
            )
            self.routes.append(None)
            self.outputs.append({"name": fuse_name, "label": fuse_label})
        self.heads = nn.ModuleList(heads)
        self.feature_dimensions = {o["name"]: head.feature_dimensions for o, head in zip(self.outputs, self.heads)}

    @staticmethod
    def check_kwargs(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
        problems = check_attention(kwargs)
        branches = kwargs.get("branches")
        if not isinstance(branches, list) or not branches:
            return problems + [("branches", "must be a list of {name, outputs: [{name, label, dimensions}]}")]
        names = []
        for i, branch in enumerate(branches):
            if not isinstance(branch, dict) or not branch.get("name"):
                problems.append(("branches", f"entry {i} needs a name and outputs"))
                continue
            names.append(branch["name"])
            problems += _check_outputs(branch.get("outputs"), "branches")
        count = kwargs.get("number_branches")
        if count is not None and count != len(branches):
            problems.append(("number_branches", f"is {count} but branches lists {len(branches)}"))
        if not 0 <= int(kwargs.get("shared_block") or 0) <= 4:
            problems.append(
                (
                    "shared_block",
                    f"{kwargs.get('shared_block')!r} must be between 0 and 4 (layers of the ResNet shared)",
                )
            )
        if kwargs.get("fuse"):
            unknown = [b for b in kwargs.get("fuse_outputs") or [] if b not in names]
            if unknown or not kwargs.get("fuse_outputs"):
                problems.append(("fuse_outputs", f"must name branches to fuse, from {names}; unknown: {unknown}"))
            if not kwargs.get("fuse_label"):
                problems.append(("fuse_label", "the fused head needs the label it predicts"))
        if kwargs.get("soft_targets"):
            problems.append(
                ("soft_targets", "soft targets between branches are not supported in this version; set it to false")
            )
        return problems

    def forward(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{output name: (logits, features)}, the fused head's included."""
        shared = self.trunk(x)
        features = {name: self.pool(branch(shared)) for name, branch in zip(self.branch_names, self.branches)}
        if self.fuse_outputs:
            features[None] = torch.cat([features[b] for b in self.fuse_outputs], dim=-1)
        return {o["name"]: head(features[route]) for o, head, route in zip(self.outputs, self.heads, self.routes)}
