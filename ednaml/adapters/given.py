"""Components handed in from Python (`EdnaML.add_model`, `add_crawler`, `add_loss`), used instead of the
ones the config names, and recorded as such: provenance, the pipeline table and checkpoints say which."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ednaml.data.base import Crawler
from ednaml.errors import format_path


@dataclass
class Given:
    model: nn.Module | None = None
    crawler: Crawler | None = None
    losses: dict[str, nn.Module] = field(default_factory=dict)  # by LOSS entry NAME

    def __bool__(self) -> bool:
        return self.model is not None or self.crawler is not None or bool(self.losses)

    def described(self, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """{config key path it stands in for: its class, file and source hash}."""
        from ednaml.tracking.provenance import describe_component

        found: dict[str, Any] = {}
        if self.model is not None:
            found["MODEL.MODEL_ARCH"] = self.model
        if self.crawler is not None:
            found["EXECUTION.DATAREADER.CRAWLER_ARGS"] = self.crawler
        for i, entry in enumerate(config["LOSS"]):
            if entry["NAME"] in self.losses:
                found[format_path(("LOSS", i, "LOSSES"))] = self.losses[entry["NAME"]]
        return {key: {"given": True, **describe_component(type(obj))} for key, obj in found.items()}
