"""EdnaModule: the model, the step logic, the losses, metrics, optimizers and schedulers of one config."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch

from ednaml import __version__, registry
from ednaml.losses import Criterion
from ednaml.metrics import classification_metrics
from ednaml.models import build_model
from ednaml.models.weights import load_weights
from ednaml.optim.optimizers import GroupRow, format_table
from ednaml.optim.schedulers import build_scheduler

log = logging.getLogger("ednaml")


def target_label(config: dict[str, Any], labels: dict[str, list[str]]) -> str:
    """The label a single-output model predicts: LOSS[0].LABEL, or the data's only label."""
    wanted = config["LOSS"][0]["LABEL"]
    if wanted is None:
        if len(labels) != 1:
            raise ValueError(f"LOSS[0].LABEL: blank, but the data has labels {list(labels)}; name one")
        return next(iter(labels))
    if wanted not in labels:
        raise ValueError(f"LOSS[0].LABEL: {wanted!r} is not a label of the data; its labels are {list(labels)}")
    return wanted


class EdnaModule(pl.LightningModule):
    """Reads like the pipeline: batch -> outputs -> losses (Lightning: backward, update) -> metrics."""

    def __init__(self, config: dict[str, Any], labels: dict[str, list[str]]):
        super().__init__()
        self.config, self.labels = config, labels
        self.target_label = target_label(config, labels)
        num_classes = len(labels[self.target_label])
        self.model = build_model(config["MODEL"], num_classes)
        if config["MODEL"]["WEIGHTS"]:
            report = load_weights(self.model, config["MODEL"]["WEIGHTS"])
            log.info("MODEL.WEIGHTS %s: %s", config["MODEL"]["WEIGHTS"],
                     ", ".join(f"{len(v)} {k}" for k, v in report.items()))
            for kind in ("skipped", "mismatched"):
                if report[kind]:
                    log.warning("MODEL.WEIGHTS %s keys: %s", kind, ", ".join(report[kind][:10]))
        input_size = config["LOGGING"]["INPUT_SIZE"]
        if input_size:  # lets Lightning's model summary show input and output shapes
            self.example_input_array = torch.zeros(*input_size)
        step_args = {k: v for k, v in config["EXECUTION"]["TRAINER_ARGS"].items() if k != "accumulation_steps"}
        self.step_logic = registry.get("trainer", config["EXECUTION"]["TRAINER"])(**step_args)
        self.step_logic.bind(list(labels), self.target_label)
        self.criterion = Criterion(config["LOSS"])
        metrics = classification_metrics(num_classes)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.parameter_table: list[GroupRow] = []

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def _losses(self, batch: Any, stage: str) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Outputs, the total loss and every term, all logged under {stage}/."""
        outputs, targets = self.step_logic(self.model, batch)
        loss, terms = self.criterion(outputs, targets)
        size = len(batch[0])
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log_dict({f"{stage}/{k}": v for k, v in terms.items()}, on_step=on_step, on_epoch=True, batch_size=size, sync_dist=True)
        return loss, outputs, targets

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._losses(batch, "train")
        return loss

    def _evaluate(self, batch: Any, stage: str, metrics: Any) -> None:
        _, outputs, targets = self._losses(batch, stage)
        metrics.update(outputs[self.target_label], targets[self.target_label])
        self.log_dict(metrics, on_step=False, on_epoch=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        outputs, targets = self.step_logic(self.model, batch)
        probs = outputs[self.target_label].float().softmax(dim=-1)
        confidence, prediction = probs.max(dim=-1)
        return {"prediction": prediction, "confidence": confidence, "target": targets[self.target_label]}

    def configure_optimizers(self) -> Any:
        builder = registry.get("optimizer_builder", self.config["EXECUTION"]["OPTIMIZER_BUILDER"])
        entries = self.config["OPTIMIZER"]
        optimizers, self.parameter_table = builder(self.model, self.config["MODEL"]["PARAMETER_GROUPS"], entries)
        log.info("parameter groups:\n%s", format_table(self.parameter_table))
        if len(optimizers) > 1:
            raise ValueError("OPTIMIZER: several optimizers are not supported yet; use one OPTIMIZER entry "
                             "(CUSTOM_KEYS give parts of the model their own lr and weight decay)")
        names = [e["OPTIMIZER_NAME"] for e in entries]
        schedulers = []
        for entry in self.config["SCHEDULER"]:
            name = entry["SCHEDULER_NAME"] or names[0]
            schedulers.append(build_scheduler(entry, optimizers[names.index(name)], name))
        return optimizers, schedulers

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ednaml"] = {"version": __version__, "config": self.config, "labels": self.labels}
