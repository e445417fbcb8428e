"""Models from torchvision and timm by name, with EdnaML's head: [embedding] -> normalization -> logits.

    MODEL: {MODEL_ARCH: TorchvisionModel, MODEL_BASE: resnet18}          # any torchvision classification builder
    MODEL: {MODEL_ARCH: TimmModel, MODEL_BASE: convnext_atto}             # any timm model

Weights never download: `weights` (a local file holding the backbone's state dict, as torchvision and
timm save them) or, for timm, `pretrained: true` from the Hugging Face cache already on the machine.
MODEL.WEIGHTS loads either file too. With `outputs: [{name, label, dimensions}]` the backbone's
features feed one head per output (multi-output step logic); without, the model gives (logits, features).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ednaml.models.classification import ClassificationHead
from ednaml.registry import register
from ednaml.utils import require


def _first_conv(module: nn.Module) -> tuple[nn.Module, str, nn.Conv2d] | None:
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d):
            parent = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            return parent, name.rsplit(".", 1)[-1], child
    return None


def adapt_input_channels(backbone: nn.Module, channels: int) -> None:
    """The first convolution made to take `channels` input channels (a grey image: 1), where it takes 3."""
    found = _first_conv(backbone)
    if channels == 3 or found is None:
        return
    parent, name, conv = found
    setattr(
        parent,
        name,
        nn.Conv2d(
            channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
        ),
    )


def load_backbone_weights(backbone: nn.Module, path: str, key: str = "MODEL.MODEL_KWARGS.weights") -> None:
    """A state dict from a local file (`weights_only`), loaded where names and shapes match; the classifier
    the file may hold is left out. Nothing that matches is an error: the file is for another model."""
    if not os.path.isfile(path):
        raise ValueError(f"{key}: {path!r} does not exist (weights are read from local files only, never downloaded)")
    if path.endswith(".safetensors"):
        state = require("safetensors.torch", "timm").load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and hasattr(v, "shape") and v.shape == own[k].shape}
    if len(usable) < len(own) // 2:  # a first convolution adapted to other channels, a classifier: a few may differ
        raise ValueError(
            f"{key}: only {len(usable)} of this backbone's {len(own)} weights are in {path!r} with their names "
            "and shapes: is it for another model?"
        )
    backbone.load_state_dict(usable, strict=False)


class BackboneClassifier(nn.Module):
    """A feature extractor (a batch -> pooled features) with EdnaML's classification head, or one head per
    output."""

    weights_prefix = "backbone."  # MODEL.WEIGHTS: a plain backbone state dict is loaded into the backbone

    def __init__(
        self,
        backbone: nn.Module,
        feature_size: int,
        softmax_dimensions: int | None,
        outputs: Sequence[dict[str, Any]],
        embedding_dimensions: int | None,
        normalization: str | None,
        name: str,
    ):
        super().__init__()
        self.backbone = backbone
        if outputs:
            from ednaml.models.multi import _check_outputs

            if problems := _check_outputs(list(outputs), "outputs"):
                raise ValueError("; ".join(f"MODEL.MODEL_KWARGS.{k}: {m}" for k, m in problems))
            self.outputs = [{"name": o["name"], "label": o["label"]} for o in outputs]
            self.heads = nn.ModuleList(
                ClassificationHead(feature_size, o["dimensions"], embedding_dimensions, normalization) for o in outputs
            )
            self.feature_dimensions: Any = {o["name"]: h.feature_dimensions for o, h in zip(self.outputs, self.heads)}
        else:
            if not softmax_dimensions:
                raise ValueError(f"{name} needs softmax_dimensions (left blank, it is taken from the data's label)")
            self.outputs = []
            self.heads = nn.ModuleList(
                [ClassificationHead(feature_size, softmax_dimensions, embedding_dimensions, normalization)]
            )
            self.feature_dimensions = self.heads[0].feature_dimensions

    def forward(self, x: torch.Tensor) -> Any:
        """(logits, features); with outputs, {output name: (logits, features)}."""
        features = self.backbone(x)
        if not self.outputs:
            return self.heads[0](features)
        return {o["name"]: head(features) for o, head in zip(self.outputs, self.heads)}


def _torchvision_classifier(net: nn.Module) -> tuple[str, int]:
    """The attribute holding a torchvision classification model's classifier, and its input size."""
    for attribute in ("fc", "classifier", "head", "heads"):
        layer = getattr(net, attribute, None)
        if layer is None:
            continue
        linears = [m for m in layer.modules() if isinstance(m, nn.Linear)]
        if linears:  # a classifier Sequential's last Linear is replaced (its hidden layers stay); a head's first
            return attribute, linears[-1].in_features if attribute == "classifier" else linears[0].in_features
    raise ValueError(
        f"{type(net).__name__}: no classifier layer (fc, classifier, head or heads) to take features before"
    )


@register("model", "TorchvisionModel")
class TorchvisionModel(BackboneClassifier):
    """Any torchvision classification model by name (MODEL_BASE: resnet18, mobilenet_v3_small, efficientnet_b0,
    vit_b_16, ...), random init or weights from a local file, with EdnaML's head."""

    def __init__(
        self,
        base: str = "resnet18",
        softmax_dimensions: int | None = None,
        outputs: Sequence[dict[str, Any]] = (),
        initial_channels: int = 3,
        embedding_dimensions: int | None = None,
        normalization: str | None = "bn",
        weights: str | None = None,
        builder_kwargs: dict[str, Any] | None = None,
    ):
        models = require("torchvision.models", "vision")
        if base not in models.list_models(module=models):
            from ednaml.errors import did_you_mean

            raise ValueError(
                f"MODEL.MODEL_BASE: {base!r} is not a torchvision classification model"
                + did_you_mean(base, models.list_models(module=models), " (torchvision.models.list_models())")
            )
        builder_kwargs = dict(builder_kwargs or {})
        if base in ("googlenet", "inception_v3"):  # their auxiliary classifiers are for their own training recipe
            builder_kwargs.setdefault("aux_logits", False)
            builder_kwargs.setdefault("init_weights", True)
        net = models.get_model(base, weights=None, **builder_kwargs)
        if weights:
            load_backbone_weights(net, weights)
        if base.startswith("squeezenet"):  # its classifier is a convolution: its features are the last block's, pooled
            size = net.classifier[1].in_channels
            net.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            attribute, classifier = "classifier", None
        else:
            attribute, size = _torchvision_classifier(net)
            classifier = getattr(net, attribute)
        if classifier is None:
            pass
        elif attribute == "classifier" and isinstance(
            classifier, nn.Sequential
        ):  # keep dropout / hidden layers before the last Linear
            last = max(i for i, m in enumerate(classifier) if isinstance(m, nn.Linear))
            size = classifier[last].in_features
            classifier[last] = nn.Identity()
        else:
            setattr(net, attribute, nn.Identity())
        adapt_input_channels(net, initial_channels)
        super().__init__(
            net, size, softmax_dimensions, outputs, embedding_dimensions, normalization, "TorchvisionModel"
        )


@register("model", "TimmModel")
class TimmModel(BackboneClassifier):
    """Any timm model by name (MODEL_BASE: resnet18, convnext_atto, efficientnet_b0, vit_tiny_patch16_224, ...):
    random init, `weights` from a local file, or `pretrained: true` from the Hugging Face cache (never downloaded)."""

    def __init__(
        self,
        base: str = "resnet18",
        softmax_dimensions: int | None = None,
        outputs: Sequence[dict[str, Any]] = (),
        initial_channels: int = 3,
        embedding_dimensions: int | None = None,
        normalization: str | None = "bn",
        weights: str | None = None,
        pretrained: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ):
        timm = require("timm", "timm")
        if not timm.is_model(base):
            from ednaml.errors import did_you_mean

            raise ValueError(
                f"MODEL.MODEL_BASE: {base!r} is not a timm model"
                + did_you_mean(base, timm.list_models(), " (timm.list_models())")
            )
        refused = sorted(
            {"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path"} & set(model_kwargs or {})
        )
        if refused:  # timm would load (or fetch) weights by itself, not as a run reads files
            raise ValueError(
                f"MODEL.MODEL_KWARGS.model_kwargs: {', '.join(refused)} not taken here: "
                "`weights: FILE` or `pretrained: true`"
            )
        kwargs = {"num_classes": 0, "in_chans": initial_channels, **(model_kwargs or {})}
        if pretrained and not weights:
            weights = cached_timm_weights(timm, base)
        net = timm.create_model(base, pretrained=False, **kwargs)
        if weights:
            load_backbone_weights(
                net, weights, "MODEL.MODEL_KWARGS.pretrained" if pretrained else "MODEL.MODEL_KWARGS.weights"
            )
        size = getattr(net, "head_hidden_size", None) or net.num_features  # with a head block (MobileNetV3), its width
        super().__init__(net, size, softmax_dimensions, outputs, embedding_dimensions, normalization, "TimmModel")


def cached_timm_weights(timm: Any, base: str) -> str:
    """The file of a timm model's pretrained weights in the Hugging Face cache on this machine (where
    `timm.create_model(base, pretrained=True)` left them); looked up without the network."""
    hub = require("huggingface_hub", "timm")
    config = timm.models.get_pretrained_cfg(base)
    repo = getattr(config, "hf_hub_id", None) if config is not None else None
    if repo:
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = hub.try_to_load_from_cache(repo, filename)
            if isinstance(found, str):
                return found
    raise ValueError(
        f"MODEL.MODEL_KWARGS.pretrained: {base}'s weights ({repo or 'no Hugging Face repository'}) are not in the "
        f"Hugging Face cache here ({hub.constants.HF_HUB_CACHE}); a run never downloads: fetch them once with "
        f"timm.create_model({base!r}, pretrained=True) where there is a network, or give `weights: FILE`"
    )
