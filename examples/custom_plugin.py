"""A custom model plugin, registered by name: `ednaml fit --config configs/digits.yml --config examples/plugins.yml`.

FeatureNorm learns the typical length of an output's feature vectors while warming up, then gives each
input's feature norm and whether it is unusually far from the typical one (an input unlike the data the
model was trained on, perhaps)."""

from typing import Any

import torch

import ednaml
from ednaml.plugins import ModelPlugin, all_reduce_sum


@ednaml.register.plugin("FeatureNorm")
class FeatureNorm(ModelPlugin):
    """Each input's feature norm, and whether it is more than `tolerance` standard deviations from the mean."""

    def __init__(self, tolerance: float = 3.0, warmup_epochs: int = 1, start_epoch: int = 0, output: str | None = None):
        super().__init__(warmup_epochs, start_epoch, output)
        self.tolerance = tolerance
        self.register_buffer("moments", torch.zeros(3))  # count, sum, sum of squares, over every process
        self.epoch_moments = torch.zeros(3)

    def post_forward(self, x: Any, outputs: dict, learning: bool) -> dict[str, Any]:
        norms = outputs[self.output].features.detach().float().flatten(1).norm(dim=1).cpu()
        if learning:
            self.epoch_moments += torch.stack([torch.tensor(float(len(norms))), norms.sum(), (norms**2).sum()])
            return {}
        if not self.activated:
            return {}
        count, total, squares = self.moments.tolist()
        mean = total / count
        std = max(squares / count - mean**2, 0.0) ** 0.5
        return {"norm": norms, "unusual": ((norms - mean).abs() > self.tolerance * std).tolist()}

    def sync(self) -> None:  # what every process saw this epoch, added up
        self.moments += all_reduce_sum(self.epoch_moments.to(self.moments.device)).to(self.moments.device)
        self.epoch_moments = torch.zeros(3)
