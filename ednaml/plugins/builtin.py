"""The built-in plugins: the no-op base, KMeansProxy and LogitConfidence."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ednaml.plugins import ModelPlugin, all_reduce_sum, broadcast
from ednaml.registry import register
from ednaml.steps import Output, OutputInfo


@register("plugin", "ModelPlugin")
class NoOpPlugin(ModelPlugin):
    """The base plugin under the original's name: watches nothing, gives nothing."""


@register("plugin", "KMeansProxy")
class KMeansProxy(ModelPlugin):
    """Mini-batch k-means over an output's features while warming up; then each input's nearest cluster,
    that cluster's proxy label and the distance to it.

    A cluster's proxy label is the class the model predicted most often for the inputs it took in during
    warm-up. `distance`: euclidean, or cosine (features and centers on the unit sphere). With several
    processes every process starts from the first one's centers (k-means++ on its first batch), and at each warm-up
    epoch's end the centers are averaged, weighted by how many inputs each process assigned to them.
    """

    def __init__(
        self,
        clusters: int = 10,
        distance: str = "euclidean",
        seed: int = 0,
        warmup_epochs: int = 1,
        start_epoch: int = 0,
        output: str | None = None,
    ):
        super().__init__(warmup_epochs, start_epoch, output)
        if not isinstance(clusters, int) or clusters < 1:
            raise ValueError(f"clusters: {clusters!r} is not a whole number of at least 1")
        if distance not in ("euclidean", "cosine"):
            raise ValueError(f"distance: {distance!r} is not euclidean or cosine")
        self.clusters, self.distance, self.seed = clusters, distance, seed

    def bind(self, outputs: dict[str, OutputInfo], labels: dict[str, list[str]]) -> None:
        super().bind(outputs, labels)
        if not self.info.features:
            raise ValueError(
                f"output: {self.output!r} gives no features (its model does not say their size), "
                "which KMeansProxy clusters"
            )
        self.register_buffer("centers", torch.zeros(self.clusters, self.info.features))
        self.register_buffer("counts", torch.zeros(self.clusters))  # inputs each center took in, over all processes
        self.register_buffer("votes", torch.zeros(self.clusters, len(self.classes)))  # predicted classes per cluster
        self.register_buffer("labels", torch.zeros(self.clusters, dtype=torch.long))  # each cluster's proxy label
        self.register_buffer("started", torch.tensor(False))
        self._epoch: dict[str, torch.Tensor] | None = None  # this process's part of the current warm-up epoch

    def _features(self, output: Output) -> torch.Tensor:
        if output.features is None:
            raise ValueError(f"output: {self.output!r} gave no features, which KMeansProxy clusters")
        features = output.features.detach().float().flatten(1)
        return F.normalize(features, dim=1) if self.distance == "cosine" else features

    def post_forward(self, x: Any, outputs: dict[str, Output], learning: bool) -> dict[str, Any]:
        output = outputs[self.output]
        features = self._features(output).to(self.centers.device)
        if learning:
            self._learn(features, output.logits.detach().argmax(dim=-1).to(self.centers.device))
            return {}
        if not self.activated:
            return {}
        distance, cluster = torch.cdist(features, self.centers).min(dim=1)
        return {
            "cluster": cluster,
            "label": [self.classes[i] for i in self.labels[cluster].tolist()],
            "distance": distance,
        }

    def _seed_centers(self, features: torch.Tensor) -> torch.Tensor:
        """Greedy k-means++: a few candidates for each next center, drawn with probability proportional to
        their squared distance from the centers so far; the one that leaves the inputs closest is kept."""
        generator = torch.Generator().manual_seed(self.seed)
        trials = 2 + int(math.log(self.clusters))
        picks = [int(torch.randint(len(features), (1,), generator=generator))]
        nearest = torch.cdist(features, features[picks]).pow(2).min(dim=1).values.cpu()
        for _ in range(1, self.clusters):
            weights = nearest if nearest.sum() > 0 else torch.ones(len(features))
            candidates = torch.multinomial(weights, trials, replacement=True, generator=generator)
            reach = torch.minimum(
                nearest[None], torch.cdist(features[candidates.to(features.device)], features).pow(2).cpu()
            )
            best = int(reach.sum(dim=1).argmin())
            picks.append(int(candidates[best]))
            nearest = reach[best]
        return features[picks].contiguous()

    def _part(self) -> dict[str, torch.Tensor]:
        if self._epoch is None:
            self._epoch = {
                "start": self.centers.clone(),
                "sums": torch.zeros_like(self.centers),
                "taken": torch.zeros_like(self.counts),
                "votes": torch.zeros_like(self.votes),
            }
        return self._epoch

    def _learn(self, features: torch.Tensor, predicted: torch.Tensor) -> None:
        if not bool(self.started):  # k-means++ on the first batch, drawn by seed (the first process's, everywhere)
            self.centers.copy_(broadcast(self._seed_centers(features)))
            self.started.fill_(True)
        part = self._part()
        cluster = torch.cdist(features, self.centers).argmin(dim=1)
        part["sums"].index_add_(0, cluster, features)
        part["taken"] += torch.bincount(cluster, minlength=self.clusters).to(part["taken"].dtype)
        part["votes"].index_put_((cluster, predicted), torch.ones(len(cluster), device=cluster.device), accumulate=True)
        self.centers.copy_(self._means(part["sums"], part["taken"], part["start"]))

    def _means(self, sums: torch.Tensor, taken: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Each center as the mean of every input it took in: before this epoch (counts at `start`) and in it."""
        total = self.counts + taken
        means = torch.where(
            total[:, None] > 0, (self.counts[:, None] * start + sums) / total.clamp(min=1)[:, None], start
        )
        return F.normalize(means, dim=1) if self.distance == "cosine" else means

    def sync(self) -> None:
        part = self._part()  # every process takes part, whether or not it saw a batch
        device = self.centers.device
        sums, taken, votes = (all_reduce_sum(part[k].to(device, copy=True)) for k in ("sums", "taken", "votes"))
        part["start"] = part["start"].to(device)
        self.centers.copy_(self._means(sums, taken, part["start"]))
        self.counts += taken
        self.votes += votes
        self._epoch = None

    def activate(self, model: nn.Module) -> None:
        self.labels.copy_(self.votes.argmax(dim=1))


@register("plugin", "LogitConfidence")
class LogitConfidence(ModelPlugin):
    """Per class, the model's mean softmax confidence on the inputs it assigned to that class while warming
    up; then each input's confidence, its predicted class's mean confidence (`threshold`) and whether it
    reaches it (`confident`): an input below the threshold is less sure than the model usually is."""

    def bind(self, outputs: dict[str, OutputInfo], labels: dict[str, list[str]]) -> None:
        super().bind(outputs, labels)
        self.register_buffer("sums", torch.zeros(len(self.classes)))
        self.register_buffer("counts", torch.zeros(len(self.classes)))
        self.register_buffer("thresholds", torch.zeros(len(self.classes)))
        self._epoch: tuple[torch.Tensor, torch.Tensor] | None = None

    def post_forward(self, x: Any, outputs: dict[str, Output], learning: bool) -> dict[str, Any]:
        confidence, predicted = outputs[self.output].logits.detach().float().softmax(dim=-1).max(dim=-1)
        confidence, predicted = confidence.to(self.sums.device), predicted.to(self.sums.device)
        if learning:
            sums, counts = self._epoch or (torch.zeros_like(self.sums), torch.zeros_like(self.counts))
            self._epoch = (
                sums.index_add_(0, predicted, confidence),
                counts.index_add_(0, predicted, torch.ones_like(confidence)),
            )
            return {}
        if not self.activated:
            return {}
        threshold = self.thresholds[predicted]
        return {"confidence": confidence, "threshold": threshold, "confident": (confidence >= threshold).tolist()}

    def sync(self) -> None:
        sums, counts = self._epoch or (torch.zeros_like(self.sums), torch.zeros_like(self.counts))
        self.sums += all_reduce_sum(sums.to(self.sums.device, copy=True))
        self.counts += all_reduce_sum(counts.to(self.counts.device, copy=True))
        self._epoch = None

    def activate(self, model: nn.Module) -> None:
        self.thresholds.copy_(
            torch.where(self.counts > 0, self.sums / self.counts.clamp(min=1), torch.ones_like(self.sums))
        )
