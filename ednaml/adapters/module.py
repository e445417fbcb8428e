"""EdnaModule: the model, the step logic, the losses, metrics, optimizers and schedulers of one config."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from ednaml import registry
from ednaml.adapters.given import Given
from ednaml.config import sections
from ednaml.deploy import Predicted
from ednaml.errors import NonFiniteLoss
from ednaml.losses import Criterion
from ednaml.metrics import classification_metrics, confusion_matrix
from ednaml.models import build_model
from ednaml.models.weights import load_weights
from ednaml.optim.optimizers import GroupRow, OptimizerSet, format_table, make_optimizer, norm_parameter_names
from ednaml.optim.schedulers import ScheduleRunner, build_schedules
from ednaml.steps import StepLogic
from ednaml.tracking.secrets import scrub
from ednaml.version import __version__

log = logging.getLogger("ednaml")


def default_label(losses: tuple[sections.LossEntry, ...], labels: dict[str, list[str]]) -> str:
    """The label a single-output model predicts: LOSS[0].LABEL, or the data's only label."""
    wanted = losses[0].LABEL
    if wanted is None:
        if len(labels) != 1:
            raise ValueError(f"LOSS[0].LABEL: blank, but the data has labels {list(labels)}; name one")
        return next(iter(labels))
    if wanted not in labels:
        raise ValueError(f"LOSS[0].LABEL: {wanted!r} is not a label of the data; its labels are {list(labels)}")
    return wanted


@dataclass
class Scored:
    logits: torch.Tensor
    target: torch.Tensor


def log_to_loggers(trainer: pl.Trainer, metrics: dict[str, Any]) -> None:
    """Straight to the loggers at the current step (not through Lightning's aggregation), so the row is
    written before any checkpoint of this step and resumes neither lose nor repeat it."""
    row = {**metrics, "epoch": trainer.current_epoch}
    for logger in trainer.loggers:
        logger.log_metrics(row, step=trainer.global_step)


@dataclass
class StepLosses:
    """One training step's loss and terms, still on the device, with where it happened."""

    step: int
    epoch: int
    batch: int
    size: int
    values: dict[str, torch.Tensor]


def _rows(pending: list[StepLosses]) -> torch.Tensor | None:
    """One row per step: the loss, then each term."""
    return torch.stack([torch.stack([v.float() for v in p.values.values()]) for p in pending]) if pending else None


class TrainingLosses:
    """The training loss and its terms: epoch means that travel in checkpoints (so a resumed epoch's mean
    covers all its batches), and the guard against non-finite losses.

    Steps are kept on the device and looked at together in `settle` (at the logging interval, the
    epoch's end and before every checkpoint): no host-device synchronisation on every step, and still
    no checkpoint ever holds weights that a non-finite loss has touched.

    Not torchmetrics' MeanMetric: its update looks for NaN on every step (a synchronisation) unless
    `nan_strategy="disable"`, and it gathers its state across processes on the state's own device. The
    sums here are float64 on the CPU (exact for these values, and MPS has no float64), reduced through
    Lightning's strategy on the device its collective needs.
    """

    MAX_PENDING = 256  # steps kept on the device before they are settled anyway

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.epoch = -1
        self.pending: list[StepLosses] = []
        self.last: dict[str, torch.Tensor] = {}

    def add(self, losses: StepLosses, strategy: Any) -> None:
        if losses.epoch != self.epoch:
            self.reset()
            self.epoch = losses.epoch
        self.pending.append(losses)
        self.last = losses.values
        if len(self.pending) >= self.MAX_PENDING:
            self.settle(strategy)

    def settle(self, strategy: Any) -> None:
        """Fold the pending steps into the sums; raise NonFiniteLoss if any process saw a non-finite loss."""
        pending, self.pending = self.pending, []
        values = _rows(pending)
        finite = values.isfinite() if values is not None else None
        bad = finite is not None and not bool(finite.all())  # the one synchronisation
        if strategy.reduce_boolean_decision(bad, all=False):  # every process stops at the same step
            raise NonFiniteLoss(self._describe(pending, finite) if bad else "a non-finite loss on another process")
        if values is None:
            return
        # Summed on the CPU in float64 (the check above has synchronised already): exact for these values, so
        # the epoch mean does not depend on where the steps were folded in (a resume folds at its checkpoint).
        values = values.detach().to("cpu", torch.float64)
        sizes = torch.tensor([p.size for p in pending], dtype=torch.float64)
        for key, column in zip(pending[0].values, (values * sizes[:, None]).sum(dim=0)):
            self.sums[key] = self.sums.get(key, 0) + column
        self.count += sum(p.size for p in pending)

    def non_finite(self) -> str | None:
        """The first pending non-finite step, described, or None: for a run that failed otherwise first
        (a later error is often a consequence of weights a non-finite step spoiled)."""
        values = _rows(self.pending)
        if values is None or bool(values.isfinite().all()):
            return None
        return self._describe(self.pending, values.isfinite())

    @staticmethod
    def _describe(pending: list[StepLosses], finite: torch.Tensor) -> str:
        row = int((~finite.all(dim=1)).nonzero()[0])
        first = pending[row]
        names = list(first.values)
        bad = [name for name, ok in zip(names[1:], finite[row, 1:].tolist()) if not ok] or ["loss"]
        return (
            f"the loss is {first.values['loss'].item()} at step {first.step} "
            f"(epoch {first.epoch}, batch {first.batch}); "
            f"non-finite terms: {', '.join(bad)}. The run stopped; its last checkpoint holds the last good weights."
        )

    def means(self, strategy: Any) -> dict[str, float]:
        self.settle(strategy)
        device = (
            strategy.root_device if strategy.world_size > 1 else torch.device("cpu")
        )  # a collective needs its device
        count = strategy.reduce(torch.tensor(float(self.count), dtype=torch.float64, device=device), reduce_op="sum")
        if count.item() == 0:
            return {}
        return {k: (strategy.reduce(v.to(device), reduce_op="sum") / count).item() for k, v in self.sums.items()}

    def reset(self) -> None:
        self.sums, self.count, self.pending = {}, 0, []

    def state_dict(self) -> dict[str, Any]:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "count": self.count, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.sums, self.count, self.epoch = dict(state["sums"]), state["count"], state["epoch"]


class EvaluationLosses:
    """An evaluation's loss and each loss term as a sum over its samples and their count, added up across
    processes once, at the epoch's end: the mean over exactly the evaluated samples on any number of
    processes (Lightning's `sync_dist` averages each process's own mean, which differs when the shards do).
    Sums stay on the device (float64 where it has it) until then: no synchronisation per batch."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.sums: torch.Tensor | None = None
        self.count = 0

    def add(self, values: dict[str, torch.Tensor], size: int) -> None:
        row = torch.stack([values[key].detach().reshape(()) for key in self.keys])
        row = row.to(torch.float32 if row.device.type == "mps" else torch.float64) * size
        self.sums = row if self.sums is None else self.sums + row
        self.count += size

    def means(self, strategy: Any) -> dict[str, float]:
        """{key: mean} over every process's samples (every process calls this: it is a collective)."""
        device = (
            strategy.root_device if strategy.world_size > 1 else torch.device("cpu")
        )  # a collective needs its device
        dtype = torch.float32 if device.type == "mps" else torch.float64
        local = torch.zeros(len(self.keys) + 1, dtype=dtype, device=device)  # a process with no batch adds zeros
        if self.sums is not None:
            local[:-1] = self.sums.to(device, dtype)
        local[-1] = self.count
        total = strategy.reduce(local, reduce_op="sum") if strategy.world_size > 1 else local
        self.reset()
        if total[-1].item() == 0:
            return {}
        return {key: value for key, value in zip(self.keys, (total[:-1] / total[-1]).tolist())}

    def reset(self) -> None:
        self.sums, self.count = None, 0


def rng_state() -> dict[str, Any]:
    """The CPU random number generators' states (torch, numpy, python), as checkpoint-safe lists."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached],
        "python": list(random.getstate()[1]) + [random.getstate()[2]],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    *internal, gauss = state["python"]
    random.setstate((3, tuple(internal), gauss))


def build_plugins(
    entries: tuple[sections.ModelPluginEntry, ...], outputs: dict[str, Any], labels: dict[str, list[str]]
) -> nn.ModuleDict:
    """MODEL_PLUGIN's plugins by PLUGIN_NAME, each bound to the model's outputs; a bad argument names its key."""
    plugins = nn.ModuleDict()
    for i, entry in enumerate(entries):
        try:
            plugin = registry.build(
                "plugin", entry.PLUGIN, entry.PLUGIN_KWARGS, at=("MODEL_PLUGIN", i, "PLUGIN_KWARGS")
            )
            plugin.bind(outputs, labels)
        except ValueError as err:
            raise ValueError(f"MODEL_PLUGIN[{i}].PLUGIN_KWARGS.{err}") from err
        plugins[entry.PLUGIN_NAME] = plugin
    return plugins


class EdnaModule(pl.LightningModule):
    """Reads like the pipeline: batch -> outputs -> losses (Lightning: backward, update) -> metrics."""

    def __init__(
        self,
        config: sections.Config | dict[str, Any],
        labels: dict[str, list[str]],
        data_info: dict[str, Any] | None = None,
        given: Given | None = None,
    ):
        """`config`: the resolved config or its sections. `given`: a model or losses handed in from Python,
        used instead of the ones the config names."""
        super().__init__()
        self.config = config = sections.sections(config)
        self.labels = labels
        self.given = given or Given()
        self.given_record = self.given.described(config.LOSS)  # provenance and every checkpoint record it
        classes = {name: len(values) for name, values in labels.items()}
        execution = config.EXECUTION
        step_cls = registry.get("step_logic", execution.STEP_LOGIC)
        if getattr(step_cls, "multi_output", False):  # each output names its own label
            target = config.LOSS[0].LABEL if config.LOSS[0].LABEL in labels else None
        else:
            target = default_label(config.LOSS, labels)

        self.model = (
            self.given.model
            if self.given.model is not None
            else build_model(config.MODEL, classes, target, data_info or {})
        )
        if config.MODEL.WEIGHTS:
            self._load_weights(config.MODEL.WEIGHTS)
        if config.LOGGING.INPUT_SIZE:  # lets Lightning's model summary show input and output shapes
            self.example_input_array = torch.zeros(*config.LOGGING.INPUT_SIZE)

        step_args = {k: v for k, v in execution.STEP_LOGIC_ARGS.items() if k != "accumulation_steps"}
        self.step_logic = registry.build("step_logic", step_cls, step_args, at=("EXECUTION", "STEP_LOGIC_ARGS"))
        self.outputs = self.step_logic.bind(self.model, list(labels), target)
        self.criterion = Criterion(config.LOSS, self.outputs, classes, self.given.losses)
        deployment = config.DEPLOYMENT
        self.deploy = registry.build(
            "deployment", deployment.DEPLOY, deployment.DEPLOYMENT_ARGS, at=("DEPLOYMENT", "DEPLOYMENT_ARGS")
        )
        self.plugins = build_plugins(config.MODEL_PLUGIN, self.outputs, labels)
        if len(self.plugins) and type(self.step_logic).outputs_of is StepLogic.outputs_of:
            raise ValueError(
                f"MODEL_PLUGIN: plugins see the model's outputs through the step logic's `outputs_of`, which "
                f"EXECUTION.STEP_LOGIC {type(self.step_logic).__name__} does not define"
            )
        self.plugin_outputs: dict[
            str, dict[str, Any]
        ] = {}  # the latest forward pass's, by PLUGIN_NAME (see PluginRunner)
        metrics = {
            name: classification_metrics(classes[info.label], execution.METRICS) for name, info in self.outputs.items()
        }
        self.val_metrics = nn.ModuleList(m.clone(prefix=self._prefix("val", name)) for name, m in metrics.items())
        self.test_metrics = nn.ModuleList(m.clone(prefix=self._prefix("test", name)) for name, m in metrics.items())
        self.test_confusion = nn.ModuleList(confusion_matrix(classes[info.label]) for info in self.outputs.values())
        self.confusion: dict[str, Any] = {}  # after a test: {output: {matrix, classes}}
        self.parameter_table: list[GroupRow] = []
        self.schedules = ScheduleRunner([])
        self._pending_schedule_state: list[dict[str, Any]] | None = None
        self._built: Any = None  # the OptimizerSet build_optimizers made, until Lightning takes it
        self.provenance: dict[str, Any] | None = None  # set by the runner; every checkpoint carries it
        self.train_losses = TrainingLosses()
        self.eval_losses = EvaluationLosses(
            ["loss"] + [term for entry in self.criterion.entries for term in entry.term_names]
        )
        self._stepped_at = -1

    def logged_names(self, stage: str) -> list[str]:
        """The epoch values a stage logs: the loss, each loss term, and (evaluating) each output's metrics."""
        names = [f"{stage}/loss"] + [f"{stage}/{term}" for entry in self.criterion.entries for term in entry.term_names]
        if stage != "train":
            names += [
                key.replace("val/", f"{stage}/", 1)
                for collection in self.val_metrics
                for key in collection.keys(keep_base=False)
            ]
        return names

    def _prefix(self, stage: str, output: str) -> str:
        """val/accuracy for a single-output model, val/<output>/accuracy for several outputs."""
        return f"{stage}/" if len(self.outputs) == 1 else f"{stage}/{output}/"

    def _load_weights(self, path: str) -> None:
        report = load_weights(self.model, path)
        log.info("MODEL.WEIGHTS %s: %s", path, ", ".join(f"{len(v)} {k}" for k, v in report.items()))
        for kind in ("skipped", "mismatched"):
            if report[kind]:
                log.warning("MODEL.WEIGHTS %s keys: %s", kind, ", ".join(report[kind][:10]))

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    # ---- the steps ----

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        outputs, targets = self.step_logic(self.model, batch)
        loss, terms = self.criterion(outputs, targets)
        # Checked for non-finite values at the logging interval and before every checkpoint, not here:
        # a check on every step would stall a GPU (see TrainingLosses).
        self.train_losses.add(
            StepLosses(
                self.global_step, self.current_epoch, batch_idx, len(batch[1]), {"loss": loss.detach(), **terms}
            ),
            self.trainer.strategy,
        )
        self.log("train/loss_step", loss, prog_bar=True, logger=False)
        return loss

    def _evaluate(self, batch: Any, stage: str, metrics: nn.ModuleList) -> dict[str, Any]:
        """Losses and metrics of one evaluation batch; returns {output: (logits, target)} for more."""
        outputs, targets = self.step_logic(self.model, batch)
        loss, terms = self.criterion(outputs, targets)
        self.eval_losses.add({"loss": loss, **terms}, len(batch[1]))
        for name, collection in zip(self.outputs, metrics):
            collection.update(outputs[name].logits, targets[outputs[name].label])
            self.log_dict(collection, on_step=False, on_epoch=True)
        return {name: Scored(outputs[name].logits, targets[outputs[name].label]) for name in self.outputs}

    def _log_eval_losses(self, stage: str) -> None:
        """The evaluation's loss and terms over exactly its samples, the same on every process (no sync_dist)."""
        for key, value in self.eval_losses.means(self.trainer.strategy).items():
            self.log(f"{stage}/{key}", value, prog_bar=key == "loss", sync_dist=False)

    def on_validation_epoch_start(self) -> None:
        self.eval_losses.reset()  # nothing left of an evaluation that stopped part way

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_eval_losses("val")

    def on_test_epoch_start(self) -> None:
        self.eval_losses.reset()

    def test_step(self, batch: Any, batch_idx: int) -> None:
        outputs = self._evaluate(batch, "test", self.test_metrics)
        for output, confusion in zip(outputs.values(), self.test_confusion):
            confusion.update(output.logits, output.target)

    def on_test_epoch_end(self) -> None:
        self._log_eval_losses("test")
        self.confusion = {
            name: {"matrix": confusion.compute().tolist(), "classes": self.labels[info.label]}
            for (name, info), confusion in zip(self.outputs.items(), self.test_confusion)
        }
        for confusion in self.test_confusion:
            confusion.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, Any]]:
        """One record per input, from DEPLOYMENT.DEPLOY (targets only where the data has labels)."""
        outputs, targets = self.step_logic(self.model, batch)
        scored = {
            name: Predicted(output.logits.float().softmax(dim=-1), targets.get(output.label), self.labels[output.label])
            for name, output in outputs.items()
        }
        records = self.deploy.records(scored)
        for plugin, values in self.plugin_outputs.items():  # the activated plugins' outputs, as <PLUGIN_NAME>/<key>
            for key, column in values.items():
                for record, value in zip(records, column.tolist() if isinstance(column, torch.Tensor) else column):
                    record[f"{plugin}/{key}"] = value
        return records

    # ---- optimizers and schedulers ----

    def build_optimizers(self) -> Any:
        """One optimizer per OPTIMIZER and LOSS_OPTIMIZER entry, stepped together as one OptimizerSet, and their
        schedules: built here once, before the run (preflight), and handed to Lightning by configure_optimizers."""
        config = self.config
        builder = registry.get("optimizer_builder", config.EXECUTION.OPTIMIZER_BUILDER)
        optimizers, self.parameter_table = builder(self.model, config.MODEL.PARAMETER_GROUPS, config.OPTIMIZER)
        loss_optimizers = {}
        for i, entry in enumerate(config.LOSS_OPTIMIZER):
            loss_entry = self.criterion.entry(entry.OPTIMIZER_NAME)
            named = [(n, p) for n, p in loss_entry.named_parameters() if p.requires_grad]
            loss_optimizers[entry.OPTIMIZER_NAME], rows = make_optimizer(
                named, entry, norm_parameter_names(loss_entry), ("LOSS_OPTIMIZER", i)
            )
            self.parameter_table += rows
        untrained = [
            e.name
            for e in self.criterion.entries
            if e.name not in loss_optimizers and any(p.requires_grad for p in e.parameters())
        ]
        if untrained:
            raise ValueError(
                f"LOSS entries {untrained} learn parameters: add a LOSS_OPTIMIZER entry with OPTIMIZER_NAME "
                f"{untrained[0]!r} for each"
            )
        self.schedules = ScheduleRunner(
            build_schedules(config.SCHEDULER, optimizers)
            + build_schedules(config.LOSS_SCHEDULER, loss_optimizers, "LOSS_SCHEDULER")
        )
        self._built = OptimizerSet({**optimizers, **{f"loss:{k}": v for k, v in loss_optimizers.items()}})
        return self._built

    def configure_optimizers(self) -> Any:
        """The optimizers build_optimizers made, where they hold exactly the parameters this module trains now;
        built anew where the strategy replaced them (FSDP and DeepSpeed wrap the model before this call)."""
        built, self._built = self._built, None  # handed over once: a later fit builds its own
        if built is None or not self._holds_current_parameters(built):
            built = self.build_optimizers()
            self._built = None
        log.info("parameter groups:\n%s", format_table(self.parameter_table))
        if self._pending_schedule_state is not None:
            self.schedules.load_state_dict(self._pending_schedule_state)
            self._pending_schedule_state = None
        return built

    def _holds_current_parameters(self, built: Any) -> bool:
        current = {id(p) for p in self.parameters()}
        return all(id(p) in current for group in built.param_groups for p in group["params"])

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.schedules.warm(self.trainer.global_step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.trainer.global_step != self._stepped_at:  # an optimizer step happened (not mid-accumulation)
            self._stepped_at = self.trainer.global_step
            # Lightning assembles callback_metrics on each read: only when a scheduler needs them
            self.schedules.after_step(self.trainer.callback_metrics if self.schedules.monitors("step") else {})

    def on_train_epoch_end(self) -> None:
        """The epoch's mean loss and terms, over every process, then the epoch schedulers."""
        means = self.train_losses.means(self.trainer.strategy)
        log_to_loggers(self.trainer, {f"train/{k}": v for k, v in means.items()})
        for key, value in means.items():  # for summary.json, monitors and ReduceLROnPlateau
            self.log(f"train/{key}", value, logger=False, sync_dist=False)
        self.train_losses.reset()
        self.schedules.after_epoch(self.trainer.callback_metrics)

    # ---- checkpoints ----

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.trainer.state.fn == "fit":
            self.train_losses.settle(self.trainer.strategy)  # raises before a non-finite step's weights are saved
        checkpoint["ednaml"] = {
            "version": __version__,
            "config": scrub(self.config.as_dict()),
            "labels": self.labels,
            "provenance": scrub(self.provenance),
            "schedules": self.schedules.state_dict(),
            "given": self.given_record,
            "train_losses": self.train_losses.state_dict(),
            "rng": rng_state(),
        }

    def plugin_entries(self, saved: dict[str, Any]) -> dict[str, Any]:
        """State-dict entries for this module's plugins: a checkpoint's where they fit, fresh ones elsewhere.
        Plugins may be attached to a trained model or left out; one whose saved state does not fit its
        kwargs (another number of clusters) starts fresh, with a warning."""
        own = {f"plugins.{k}": v for k, v in self.plugins.state_dict().items()}
        entries = {}
        for name in self.plugins:
            keys = [k for k in own if k.startswith(f"plugins.{name}.")]
            if all(k in saved and tuple(saved[k].shape) == tuple(own[k].shape) for k in keys):
                entries.update({k: saved[k] for k in keys})
                continue
            if any(k in saved for k in keys):
                log.warning(
                    "MODEL_PLUGIN %s: the checkpoint's state does not fit its PLUGIN_KWARGS; it starts fresh", name
                )
            entries.update({k: own[k] for k in keys})
        return entries

    def load_plugin_state(self, saved: dict[str, Any]) -> None:
        self.plugins.load_state_dict({k.removeprefix("plugins."): v for k, v in self.plugin_entries(saved).items()})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]  # the model's own weights must still match exactly
        entries = self.plugin_entries(state)
        for key in [k for k in state if k.startswith("plugins.")]:
            del state[key]
        state.update(entries)
        saved = checkpoint.get("ednaml", {})
        # Schedulers are built with the optimizers, after this hook: their state waits until then.
        self._pending_schedule_state = saved.get("schedules")
        if saved.get("rng") and self.trainer.state.fn == "fit":  # a resumed run draws the same random numbers
            restore_rng_state(saved["rng"])
            self.train_losses.load_state_dict(saved.get("train_losses"))
