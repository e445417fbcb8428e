"""(b) The same run written by hand: a LightningModule and a LightningDataModule started by LightningCLI,
with the same validation pass before training, metrics, checkpoints, CSV and offline W&B logging.

    python -m bench.handwritten --spec SPEC.json --trainer.default_root_dir DIR [--trainer.* ...]
"""

from __future__ import annotations

import json
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from bench import spec as tasks
from bench.callback import StepTimer


def _read(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class HandData(pl.LightningDataModule):
    def __init__(self, spec: str):
        super().__init__()
        self.spec = _read(spec)
        self.data = tasks.Data(self.spec)

    def train_dataloader(self) -> Any:
        return self.data.loader("train", self.spec)

    def val_dataloader(self) -> Any:
        return self.data.loader("val", self.spec)

    def test_dataloader(self) -> Any:
        return self.data.loader("test", self.spec)


class HandModule(pl.LightningModule):
    def __init__(self, spec: str):
        super().__init__()
        self.spec = _read(spec)
        self.model: torch.nn.Module | None = None

    def configure_model(self) -> None:
        if self.model is not None:
            return
        data = self.trainer.datamodule.data
        self.model = tasks.build_model(self.spec, data.classes, data.info)
        metrics = MetricCollection(
            {
                "accuracy": MulticlassAccuracy(data.classes, average="micro"),
                "f1_micro": MulticlassF1Score(data.classes, average="micro"),
                "f1_weighted": MulticlassF1Score(data.classes, average="weighted"),
            }
        )
        self.val_metrics, self.test_metrics = metrics.clone(prefix="val/"), metrics.clone(prefix="test/")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = tasks.loss(self.spec, tasks.logits_of(self.model(x)), y[:, 0])
        self.log("train/loss", loss, prog_bar=True, on_epoch=True)
        return loss

    def _evaluate(self, batch: Any, stage: str, metrics: MetricCollection) -> None:
        x, y = batch
        logits = tasks.logits_of(self.model(x))
        self.log(f"{stage}/loss", tasks.loss(self.spec, logits, y[:, 0]), on_epoch=True, prog_bar=True)
        metrics.update(logits, y[:, 0])
        self.log_dict(metrics, on_epoch=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def configure_optimizers(self) -> Any:
        optimizer, scheduler = tasks.build_optimizer(self.spec, self.model)
        return [optimizer], [scheduler] if scheduler else []


def main() -> None:
    cli = LightningCLI(
        HandModule,
        HandData,
        run=False,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"max_epochs": 1, "enable_model_summary": False},
    )
    trainer, spec = cli.trainer, cli.model.spec
    root = trainer.default_root_dir
    callbacks = [c for c in trainer.callbacks if not isinstance(c, ModelCheckpoint)]
    # The clock goes where `ednaml fit --trainer.callbacks` puts it: before the progress bar, whose update
    # after each batch then falls between batches in both runs.
    bar = next((i for i, c in enumerate(callbacks) if isinstance(c, ProgressBar)), len(callbacks))
    trainer.callbacks = (
        callbacks[:bar]
        + [StepTimer()]
        + callbacks[bar:]
        + [  # the same three checkpoints as EdnaML
            ModelCheckpoint(
                dirpath=f"{root}/checkpoints", filename="last", every_n_epochs=1, save_on_train_epoch_end=True
            ),
            ModelCheckpoint(
                dirpath=f"{root}/checkpoints",
                filename="epoch{epoch}_step{step}",
                save_top_k=-1,
                every_n_epochs=spec["save_every"] or 1,
                save_on_train_epoch_end=True,
            ),
            ModelCheckpoint(dirpath=f"{root}/checkpoints", filename="best", monitor="val/loss", mode="min"),
        ]
    )
    import wandb

    settings = wandb.Settings(
        console="off", disable_git=True, disable_code=True, x_disable_meta=True, x_disable_stats=True
    )
    trainer.loggers = [
        CSVLogger(root, name="csv"),
        WandbLogger(save_dir=root, offline=True, project="bench", settings=settings),
    ]
    trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    trainer.fit(cli.model, datamodule=cli.datamodule)
    trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)


if __name__ == "__main__":
    main()
