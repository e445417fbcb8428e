"""SCHEDULER entries -> Lightning lr-scheduler configs (any torch.optim.lr_scheduler class by name)."""

from __future__ import annotations

from typing import Any

import torch

from ednaml import registry


def build_scheduler(entry: dict[str, Any], optimizer: torch.optim.Optimizer, optimizer_name: str) -> dict[str, Any]:
    """A Lightning lr_scheduler config: the scheduler, its interval, and the metric it monitors."""
    cls = registry.get("scheduler", entry["LR_SCHEDULER"])
    config: dict[str, Any] = {
        "scheduler": cls(optimizer, **entry["LR_KWARGS"]),
        "interval": entry["INTERVAL"],
        "frequency": 1,
        "name": f"lr-{optimizer_name}",
    }
    if entry.get("MONITOR"):
        config["monitor"] = entry["MONITOR"]
    elif entry["LR_SCHEDULER"] == "ReduceLROnPlateau":
        config["monitor"] = "val/loss"
    return config
