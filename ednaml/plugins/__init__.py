"""Model plugins (MODEL_PLUGIN): components attached to a model that watch or change its forward pass.

A plugin warms up first: for `warmup_epochs` epochs it learns from what the model sees (training epochs
of `fit` from `start_epoch` on, or the fitting passes of `ednaml predict`, DEPLOYMENT.EPOCHS); then it is
activated and gives per-input outputs (a KMeansProxy's nearest cluster, a LogitConfidence's threshold),
which the step logic reads as `module.plugin_outputs` and predictions carry as `<PLUGIN_NAME>/<key>`
columns. Plugins never learn from validation or test data. Their state is the module's buffers, so it
travels in checkpoints; under several processes they combine what each process saw at every epoch's end.

Plugins are registered as kind "plugin"; the built-ins are in `ednaml.plugins.builtin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from ednaml.steps import Output, OutputInfo


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over every process (itself with one process), in place."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(tensor: torch.Tensor) -> torch.Tensor:
    """The first process's `tensor` in every process, in place."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(tensor, src=0)
    return tensor


class ModelPlugin(nn.Module):
    """The base of every plugin; on its own it does nothing.

    Hooks, each optional: `bind` (once the model's outputs and labels are known), `pre_forward` (may
    change the model's input), `post_forward` (sees the input and outputs; learns while `learning`,
    returns per-input outputs once activated), `pre_epoch` / `post_epoch` (around the training batches
    of every epoch, and every fitting pass of predict), `sync` (at the end of every epoch it warms up
    in: combine statistics across processes), `activate` (once, when warm-up ends). `save` / `load`
    give and take its state.
    """

    def __init__(self, warmup_epochs: int = 1, start_epoch: int = 0, output: str | None = None):
        super().__init__()
        if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs: {warmup_epochs!r} is not a whole number of at least 0")
        if not isinstance(start_epoch, int):
            raise ValueError(
                f"start_epoch: {start_epoch!r} is not a whole number (negative: counted from the last epoch)"
            )
        self.warmup_epochs, self.start_epoch, self.output = warmup_epochs, start_epoch, output
        self.register_buffer("warmed_epochs", torch.tensor(0))
        self.register_buffer("is_activated", torch.tensor(warmup_epochs == 0))

    @property
    def activated(self) -> bool:
        return bool(self.is_activated)

    def warms_in(self, epoch: int, epochs: int) -> bool:
        """Whether the plugin learns in `epoch` of `epochs` (a negative start_epoch counts from the end)."""
        start = self.start_epoch if self.start_epoch >= 0 else max(epochs + self.start_epoch, 0)
        return not self.activated and epoch >= start

    def bind(self, outputs: dict[str, OutputInfo], labels: dict[str, list[str]]) -> None:
        """Called once with the model's outputs (name, label, feature size) and the labels' class names."""
        if self.output is None:
            self.output = next(iter(outputs))
        elif self.output not in outputs:
            raise ValueError(f"output: {self.output!r} is not an output of the model; its outputs are {list(outputs)}")
        self.info, self.classes = outputs[self.output], labels[outputs[self.output].label]

    def pre_forward(self, x: Any) -> Any:
        return x

    def post_forward(self, x: Any, outputs: dict[str, Output], learning: bool) -> dict[str, Any]:
        """Per-input outputs ({key: tensor or list with one value per input}); learn from the batch when `learning`."""
        return {}

    def pre_epoch(self, model: nn.Module, epoch: int) -> None:
        pass

    def post_epoch(self, model: nn.Module, epoch: int) -> None:
        pass

    def sync(self) -> None:
        """Combine what each process learned this epoch (with `all_reduce_sum`); every process then holds the
        same state."""

    def activate(self, model: nn.Module) -> None:
        """Warm-up is over: prepare what post_forward needs to give outputs."""

    def end_warmup_epoch(self, model: nn.Module) -> None:
        """Called by EdnaML after every epoch the plugin warmed up in: sync, count, and activate when done."""
        self.sync()
        self.warmed_epochs += 1
        if int(self.warmed_epochs) >= self.warmup_epochs:
            self.activate(model)
            self.is_activated.fill_(True)

    def save(self) -> dict[str, Any]:
        return {k: v.clone() for k, v in self.state_dict().items()}

    def load(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state)
