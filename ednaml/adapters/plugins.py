"""Runs MODEL_PLUGIN in every stage: torch hooks on the model call each plugin around every forward pass;
warm-up epochs are fit's training epochs and predict's fitting passes."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

MODES = ("always", "warmup", "activated")


class PluginRunner(pl.Callback):
    """Calls the plugins of `module.plugins` (in MODEL_PLUGIN order) on every forward pass of the model:
    `pre_forward` on its input, `post_forward` on its outputs, whose results become `module.plugin_outputs`.
    `hooks` says which run: every plugin (always), those still warming up (warmup), or the activated ones.

    A plugin learns only in the epochs it warms up in, and only from training batches (fit) or predict's
    fitting passes, never from validation or test batches. After such an epoch the processes combine what
    they saw, and the plugin counts the epoch (activating after its warmup_epochs)."""

    def __init__(self, hooks: str):
        if hooks not in MODES:
            raise ValueError(f"PLUGIN.HOOKS: {hooks!r} is not one of {', '.join(MODES)}")
        self.hooks = hooks
        self.warming: set[str] = set()  # plugins learning in the current epoch
        self.fitting = False  # predict: a pass that fits plugins
        self._handles: list[Any] = []
        self._epoch: int | None = None  # the epoch begun and not yet ended

    def _runs(self, plugin: Any) -> bool:
        if self.hooks == "always":
            return True
        return plugin.activated if self.hooks == "activated" else not plugin.activated

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        self.teardown(trainer, pl_module, stage)
        model = pl_module.model

        def before(_: Any, args: tuple) -> tuple:
            x = args[0]
            for plugin in pl_module.plugins.values():
                if self._runs(plugin):
                    x = plugin.pre_forward(x)
            return (x, *args[1:])

        def after(_: Any, args: tuple, result: Any) -> None:
            outputs = pl_module.step_logic.outputs_of(result)
            learning = pl_module.training or self.fitting
            produced = {}
            for name, plugin in pl_module.plugins.items():
                if self._runs(plugin) and (
                    values := plugin.post_forward(args[0], outputs, learning and name in self.warming)
                ):
                    produced[name] = values
            pl_module.plugin_outputs = produced

        self._handles = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]

    def teardown(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def start_epoch(self, pl_module: Any, epoch: int, epochs: int) -> None:
        """An epoch whose batches warming plugins learn from begins."""
        self.warming = {name for name, plugin in pl_module.plugins.items() if plugin.warms_in(epoch, epochs)}
        self._epoch = epoch
        for plugin in pl_module.plugins.values():
            plugin.pre_epoch(pl_module.model, epoch)

    def end_epoch(self, pl_module: Any) -> None:
        """The epoch's learning is over: warming plugins sync (on the module's device) and count it."""
        if self._epoch is None:
            return
        for name, plugin in pl_module.plugins.items():
            if name in self.warming:
                plugin.end_warmup_epoch(pl_module.model)
            plugin.post_epoch(pl_module.model, self._epoch)
        self.warming, self._epoch = set(), None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.start_epoch(pl_module, trainer.current_epoch, trainer.max_epochs or 1)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # After the epoch's last training batch, before its validation: every checkpoint of the epoch (the
        # best one, saved when validation ends, as well) holds what the plugins learned in it.
        if batch_idx + 1 >= trainer.num_training_batches:
            self.end_epoch(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.end_epoch(pl_module)  # an epoch that stopped early

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.fitting:  # while the module is still on its device (Lightning moves it back after the pass)
            self.end_epoch(pl_module)
