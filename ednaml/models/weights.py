"""MODEL.WEIGHTS: load pretrained weights where key names and shapes match, and say what happened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


def load_weights(model: nn.Module, path: str) -> dict[str, Any]:
    """Load a state dict (or an EdnaML / Lightning checkpoint's) into `model`, partially.

    Returns {"loaded": [...], "skipped": [...] (not in the model), "mismatched": [...] (other shape),
    "missing": [...] (model keys not in the file)}.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"MODEL.WEIGHTS: {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same mistake: name the key
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"MODEL.WEIGHTS: {path!r} is not a readable weights file (a torch state dict or checkpoint): {first}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    if not isinstance(state, dict):
        raise ValueError(f"MODEL.WEIGHTS: {path!r} holds no state dict")
    own = model.state_dict()
    prefix = getattr(model, "weights_prefix", "")  # TorchvisionModel, TimmModel: a backbone's own state dict fits too
    if prefix and not any(key in own for key in state) and any(prefix + key in own for key in state):
        state = {prefix + key: value for key, value in state.items()}
    report: dict[str, list[str]] = {"loaded": [], "skipped": [], "mismatched": [], "missing": []}
    usable = {}
    for key, value in state.items():
        if key not in own:
            report["skipped"].append(key)
        elif not isinstance(value, torch.Tensor) or value.shape != own[key].shape:
            report["mismatched"].append(key)
        else:
            usable[key] = value
            report["loaded"].append(key)
    report["missing"] = [k for k in own if k not in usable]
    model.load_state_dict(usable, strict=False)
    return report
