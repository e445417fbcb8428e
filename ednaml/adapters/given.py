"""Components handed in from Python (`EdnaML.add_model`, `add_crawler`, `add_loss`), used instead of the
ones the config names, and recorded as such: provenance, the pipeline table and checkpoints say which."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ednaml.data.base import Crawler
from ednaml.errors import ConfigError, format_path


@dataclass
class Given:
    model: nn.Module | None = None
    crawler: Crawler | None = None
    losses: dict[str, nn.Module] = field(default_factory=dict)  # by LOSS entry NAME

    def __bool__(self) -> bool:
        return self.model is not None or self.crawler is not None or bool(self.losses)

    def described(self, losses: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """{config key path it stands in for: its class, file and source hash}; `losses`: the LOSS entries."""
        from ednaml.tracking.provenance import describe_component

        found: dict[str, Any] = {}
        if self.model is not None:
            found["MODEL.MODEL_ARCH"] = self.model
        if self.crawler is not None:
            found["EXECUTION.DATAREADER.CRAWLER_ARGS"] = self.crawler
        for i, entry in enumerate(losses):
            if entry["NAME"] in self.losses:
                found[format_path(("LOSS", i, "LOSSES"))] = self.losses[entry["NAME"]]
        return {
            key: {"given": True, **describe_component(type(obj)), "parameters": _parameters(obj)}
            for key, obj in found.items()
        }

    def check_against(
        self, held: dict[str, dict[str, Any]], losses: Sequence[Mapping[str, Any]], checkpoint: str
    ) -> list[str]:
        """A checkpoint trained with components given from Python (`held`, as it records them) loads only with
        the model and every loss with parameters given again (their weights are in it); returns the others
        it was trained with, which the config's replace now."""
        have = set(self.described(losses))
        missing = [key for key in sorted(set(held) - have) if key == "MODEL.MODEL_ARCH" or held[key].get("parameters")]
        if missing:
            shown = ", ".join(f"{key} ({held[key]['class']})" for key in missing)
            raise ConfigError(
                f"ckpt_path: {checkpoint!r} was trained with components given from Python, not built from its "
                f"config: {shown}; load it from Python with the same EdnaML.add_model / add_loss"
            )
        return sorted(set(held) - have)


def _parameters(obj: Any) -> int:
    return sum(p.numel() for p in obj.parameters()) if isinstance(obj, nn.Module) else 0
