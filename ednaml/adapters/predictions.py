"""`ednaml predict`: one record per input, written once, in input order, however many processes predicted."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter

from ednaml.checkpoints import describe_checkpoint
from ednaml.deploy import manifest_path, output_format, write_records
from ednaml.errors import ConfigError
from ednaml.tracking.run_folder import RunFolder, write_atomic
from ednaml.tracking.secrets import scrub
from ednaml.version import __version__

if TYPE_CHECKING:
    from ednaml.config import sections


@dataclass
class PredictRequest:
    """What `ednaml predict` predicts on and where the records go; `records` receives them, in order, in the
    process that writes the run folder."""

    data: str | None = None  # new, unlabelled inputs (a file or folder); None: the test split
    output: str | None = None  # the predictions file; None: predictions.<format> in the run folder
    records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Before anything runs: the predictions file has a known format and would not overwrite a file."""
        if self.output is None:
            return
        try:
            output_format(self.output)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        target = Path(self.output).expanduser()
        if taken := [p for p in (target, manifest_path(target)) if p.exists()]:
            raise ConfigError(
                f"--output {self.output!r}: {taken[0]} exists; predictions never overwrite a file, name another one"
            )

    def target(self, run: RunFolder, deployment: sections.DeploymentSection) -> tuple[Path, str]:
        """The file the records are written to, and its format."""
        if self.output:
            return Path(self.output).expanduser().resolve(), output_format(self.output)
        kind = deployment.OUTPUT_ARGS.get("format", "csv")
        return run.path / f"predictions.{kind}", kind


def split_ids(samples: list[Any], split: str) -> list[str]:
    """Each sample's identity for its prediction record: its file where the sample is one, else its place in
    the split (`test[17]`: an in-memory image, a sentence)."""

    def identity(position: int, item: Any) -> str:
        try:
            if isinstance(item, (str, os.PathLike)) and Path(item).is_file():
                return str(item)
        except (OSError, ValueError):  # a sentence too long or odd to be a path
            pass
        return f"{split}[{position}]"

    return [identity(position, sample[0]) for position, sample in enumerate(samples)]


class PredictionWriter(BasePredictionWriter):
    """The records of DEPLOYMENT.DEPLOY, each with its input's position (`index`) and, for new data, its id
    (`input`, a path), in a CSV, JSON Lines or Parquet file with a manifest beside it naming the checkpoint,
    config and data that produced them. With several processes each writes its shard, then the first
    merges them: every input once, in input order."""

    def __init__(
        self,
        run: RunFolder,
        summary: Any,
        request: PredictRequest,
        deployment: sections.DeploymentSection,
        ckpt_path: str | None,
    ):
        super().__init__(write_interval="epoch")
        self.run, self.summary, self.request, self.deployment, self.ckpt_path = (
            run,
            summary,
            request,
            deployment,
            ckpt_path,
        )
        self.path, self.kind = request.target(run, deployment)
        self.dropped: dict[int, set[int]] = {}  # batch number -> positions skipped in it (BAD_SAMPLES: skip)
        self.writing = True  # off during the passes that only fit plugins

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dropped := trainer.datamodule.dropped:  # samples skipped have no prediction
            self.dropped[batch_idx] = set(dropped)
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def write_on_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        if not self.writing:
            self.dropped = {}
            return
        batch_indices = (
            batch_indices[0] if batch_indices else []
        )  # nested per dataloader (there is one); predictions are not
        mine: dict[int, dict[str, Any]] = {}
        for number, (records, indices) in enumerate(zip(predictions, batch_indices)):
            if number in self.dropped:
                indices = [index for position, index in enumerate(indices) if position not in self.dropped[number]]
            mine.update({int(index): record for index, record in zip(indices, records)})
        shards = self.run.path / ".predictions"
        shards.mkdir(exist_ok=True)
        write_atomic(shards / f"rank{trainer.global_rank}.json", json.dumps(mine))
        trainer.strategy.barrier()
        if trainer.global_rank != 0:
            return
        merged: dict[int, dict[str, Any]] = {}
        for shard in sorted(shards.glob("rank*.json")):
            merged.update({int(k): v for k, v in json.loads(shard.read_text(encoding="utf-8")).items()})
        ids = (
            trainer.datamodule.ids
            if trainer.datamodule.ids is not None
            else split_ids(trainer.datamodule.crawl.splits["test"], "test")
        )
        records = [{"index": index, "input": ids[index], **merged[index]} for index in sorted(merged)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        columns = write_records(self.path, records, self.kind)
        shutil.rmtree(shards, ignore_errors=True)
        inputs = len(ids) if ids is not None else len(trainer.datamodule.crawl.splits["test"])
        self._manifest(records, columns, inputs)
        self.request.records[:] = records
        self.summary.summary["predictions"] = str(self.path)

    def _manifest(self, records: list[dict[str, Any]], columns: list[str], inputs: int) -> None:
        deployment = self.deployment
        manifest = {
            "predictions": str(self.path),
            "format": self.kind,
            "records": len(records),
            "columns": columns,
            "checkpoint": describe_checkpoint(self.ckpt_path) if self.ckpt_path else None,
            "config": str(self.run.path / "config.yaml"),
            "run_dir": str(self.run.path),
            "data": {
                "path": str(Path(self.request.data).expanduser().resolve()) if self.request.data else None,
                "split": None if self.request.data else "test",
                "inputs": inputs,
                "skipped": inputs - len(records),
            },
            "deploy": {"DEPLOY": deployment.DEPLOY, "DEPLOYMENT_ARGS": dict(deployment.DEPLOYMENT_ARGS)},
            "ednaml_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_atomic(manifest_path(self.path), json.dumps(scrub(manifest), indent=2) + "\n")
