"""Run one stage (fit / validate / test / predict) of a resolved config on a Lightning Trainer."""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from ednaml.adapters.callbacks import Backup, RunSummary, backup_problem, StepMetrics, StopOnSignal, checkpoint_callbacks
from ednaml.adapters.datamodule import EdnaDataModule
from ednaml.adapters.module import EdnaModule
from ednaml.adapters.trainer import build_trainer, debug_settings
from ednaml.api import BuildError
from ednaml.config import ConfigError
from ednaml.config.errors import Problem
from ednaml.data.base import DataError
from ednaml.faults import Interrupted, RunStopped, explain
from ednaml.tracking.metrics import CommitMetrics, RunLogger
from ednaml.tracking.provenance import build_provenance, parameter_counts
from ednaml.tracking.report import write_report
from ednaml.tracking.run_folder import RUN_ID_ENV, RunBusy, RunFolder
from ednaml.tracking.wandb import backfill, log_run_files, wandb_logger

log = logging.getLogger("ednaml")


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


def _quiet_lightning() -> None:
    """Drop Lightning's advertising tips and warnings that do not apply to EdnaML's run folders."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint need to be provided")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


class PredictionWriter(BasePredictionWriter):
    """predictions.csv: per test sample, by its position in the split, and per output: the predicted class,
    its probability and the target class. With several processes each writes its shard, then the first
    process merges them into one file holding every sample once."""

    def __init__(self, run: RunFolder):
        super().__init__(write_interval="epoch")
        self.run = run
        self.dropped: dict[int, set[int]] = {}  # batch number -> positions skipped in it
        self.path = run.path / "predictions.csv"

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: EdnaModule, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        if dropped := trainer.datamodule.dropped:  # samples skipped (BAD_SAMPLES: skip) have no prediction
            self.dropped[batch_idx] = set(dropped)
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: EdnaModule, predictions: Any, batch_indices: Any) -> None:
        if batch_indices and batch_indices[0] and isinstance(batch_indices[0][0], list):  # per dataloader: there is one
            predictions, batch_indices = predictions[0] if isinstance(predictions[0], list) else predictions, batch_indices[0]
        names = list(pl_module.outputs)
        rows: dict[int, list[str]] = {}
        for number, (batch, indices) in enumerate(zip(predictions, batch_indices)):
            if number in self.dropped:
                indices = [index for position, index in enumerate(indices) if position not in self.dropped[number]]
            columns = []
            for name in names:
                classes = pl_module.labels[pl_module.outputs[name].label]
                values = batch[name]
                columns += [[classes[i] for i in values["prediction"].tolist()], [f"{c:.6f}" for c in values["confidence"].tolist()],
                            [classes[i] for i in values["target"].tolist()]]
            for index, *row in zip(indices, *columns):
                rows[int(index)] = row
        shards = self.run.path / ".predictions"
        shards.mkdir(exist_ok=True)
        (shards / f"rank{trainer.global_rank}.json").write_text(json.dumps(rows), encoding="utf-8")
        trainer.strategy.barrier()
        if trainer.global_rank != 0:
            return
        merged: dict[int, list[str]] = {}
        for shard in sorted(shards.glob("rank*.json")):
            merged.update({int(k): v for k, v in json.loads(shard.read_text(encoding="utf-8")).items()})
        single = len(names) == 1
        header = ["index"] + [c if single else f"{n}_{c}" for n in names for c in ("prediction", "confidence", "target")]
        with self.path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows([index, *merged[index]] for index in sorted(merged))
        shutil.rmtree(shards, ignore_errors=True)


class RecordParameters(pl.Callback):
    """Once the optimizers exist: the parameter-group table and counts into provenance.json."""

    def __init__(self, run: RunFolder, provenance: dict[str, Any]):
        self.run, self.provenance = run, provenance

    def on_fit_start(self, trainer: pl.Trainer, pl_module: EdnaModule) -> None:
        table = [row.as_dict() for row in pl_module.parameter_table]
        self.provenance["parameter_groups"] = table
        self.provenance["parameters"] = parameter_counts(pl_module)
        self.run.write_json("provenance.json", self.provenance)
        self.run.write_json("parameter_groups.json", table)


def majority_baseline(datamodule: EdnaDataModule, module: EdnaModule) -> dict[str, float]:
    """The test accuracy of always predicting each output's most common test class: the bar to beat."""
    samples = datamodule.crawl.splits["test"]
    names = list(datamodule.labels)
    baseline = {}
    for name, info in module.outputs.items():
        column = names.index(info.label)
        counts: dict[int, int] = {}
        for _, labels in samples:
            counts[labels[column]] = counts.get(labels[column], 0) + 1
        baseline[f"{module._prefix('test', name)}accuracy"] = max(counts.values()) / len(samples)
    return baseline


def _provenance(run: RunFolder, config: dict[str, Any], datamodule: EdnaDataModule, invocation: dict[str, Any], resuming: bool) -> dict[str, Any]:
    """A new run's provenance; a resumed run keeps its own and adds this resume to it."""
    record, diff = build_provenance(config, datamodule.crawl, invocation.get("argv") or [], Path.cwd(), run.run_id)
    record["overrides"] = invocation.get("overrides", [])
    if resuming and (run.path / "provenance.json").exists():
        original = run.read_json("provenance.json")
        original.setdefault("resumes", []).append({k: record[k] for k in ("created", "command", "git", "machine")}
                                                  | {"versions": {k: v for k, v in record["versions"].items() if k != "packages"}})
        record = original
    if diff and run.writer:
        name = "git.diff" if not resuming else f"git-resume{len(record.get('resumes', []))}.diff"
        run.write_text(name, diff)
        (record["git"] if not resuming else record["resumes"][-1]["git"])["diff_file"] = name
    run.write_json("provenance.json", record)
    return record


@contextlib.contextmanager
def frozen_for_the_run() -> Iterator[None]:
    """Objects that live as long as the run (imported libraries, then data, model and Trainer) are moved
    out of the garbage collector's sight: each full collection would walk all of them again (half a
    million objects after `import lightning`, 0.2 s a time). They are handed back when the run ends,
    so that a process running many fits can still free them."""
    frozen_before, collecting_before = gc.get_freeze_count(), gc.isenabled()
    gc.freeze()
    gc.enable()  # the command line starts with collection off (cli.main)
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()
        if not collecting_before:
            gc.disable()


def record_skipped(summary: RunSummary, skipped: dict[str, int]) -> None:
    """Samples dropped under BAD_SAMPLES: skip, in summary.json and said once more at the end."""
    if not skipped:
        return
    times = sum(skipped.values())
    summary.summary["skipped_samples"] = {"samples": len(skipped), "times": times, "first": sorted(skipped)[:50]}
    log.warning("%d sample(s) failed to load and were skipped %d time(s) in all (EXECUTION.DATAREADER.BAD_SAMPLES: skip); "
                "they are listed in summary.json under skipped_samples", len(skipped), times)


def run_stage(stage: str, config: dict[str, Any], ckpt_path: str | None = None, resume: RunFolder | None = None,
              invocation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build everything from `config`, run `stage`, and return the run's summary.

    With `resume`, fit continues that run in its own folder from its last checkpoint.
    """
    with frozen_for_the_run():
        return _run_stage(stage, config, ckpt_path, resume, invocation)


def _run_stage(stage: str, config: dict[str, Any], ckpt_path: str | None, resume: RunFolder | None,
               invocation: dict[str, Any] | None) -> dict[str, Any]:
    _quiet_lightning()
    seed = config["seed_everything"]
    if seed is not False:
        pl.seed_everything(int(seed), workers=True, verbose=False)
    saved = None
    if ckpt_path or resume is not None:  # the data state the checkpoint carries (a tokenizer)
        from ednaml.api import read_checkpoint

        saved = read_checkpoint(ckpt_path or resume.checkpoints / "last.ckpt").get("data")
    try:
        datamodule = EdnaDataModule(config, saved)
        module = EdnaModule(config, datamodule.labels, datamodule.info)
    except DataError:
        raise
    except (ValueError, KeyError, TypeError, ImportError, OSError) as err:
        from ednaml.check import problem_from

        problem = problem_from(err, ())  # a message that names its key is the user's mistake: exit 2, as in check
        raise (ConfigError([problem]) if problem.path else BuildError(problem.message)) from err
    if stage == "fit" and resume is None:
        from ednaml.check import preflight

        if problems := preflight(module, datamodule):
            raise ConfigError(problems)
    save = config["SAVE"]
    if (save["DRIVE_BACKUP"] or save["LOG_BACKUP"]) and (trouble := backup_problem(save["CHECKPOINT_DIRECTORY"])):
        raise ConfigError([Problem(("SAVE", "CHECKPOINT_DIRECTORY"), trouble)])

    run = resume or RunFolder.create(config["trainer"].get("default_root_dir") or "runs", config)
    if resume is not None:
        ckpt_path = str(run.checkpoints / "last.ckpt")
    try:
        run.lock()
    except RunBusy as err:
        raise ConfigError(f"--resume: {err}") from None
    handler = run.start_log()
    previous_id = os.environ.get(RUN_ID_ENV)
    os.environ[RUN_ID_ENV] = run.run_id
    wandb = backup = None
    try:
        if resume is None:
            run.write_config(config)
        tokenizer = datamodule.state_dict().get("tokenizer")
        if tokenizer:
            run.write_text("tokenizer.json", tokenizer)
        log.info("%s run folder: %s", "resuming" if resume else "run", run.path)
        provenance = _provenance(run, config, datamodule, invocation or {}, resume is not None)
        module.provenance = provenance
        wandb, wandb_info = wandb_logger(run, config, provenance)
        if resume is not None and (sent := backfill(wandb, run, wandb_info.get("dir"))):
            log.info("W&B: %d committed metric rows the interrupted process had not flushed, sent again", sent)
        logger = RunLogger(run.path, run.run_id, wandb)
        summary = RunSummary(run, stage, wandb_info, previous=run.read_json("summary.json") if resume else None,
                             debug=debug_settings(config["trainer"]))
        callbacks: list[Any] = [summary, CommitMetrics(logger)]
        if stage == "fit":
            callbacks = checkpoint_callbacks(config, run, datamodule.has("val")) + [
                StepMetrics(), summary, CommitMetrics(logger), RecordParameters(run, provenance), StopOnSignal(run)]
        if stage == "predict":
            callbacks.append(PredictionWriter(run))
        if save["DRIVE_BACKUP"] or save["LOG_BACKUP"]:
            backup = Backup(run, save["CHECKPOINT_DIRECTORY"], save["DRIVE_BACKUP"], save["LOG_BACKUP"])
            callbacks.append(backup)
        trainer = build_trainer(config, str(run.path), callbacks, [logger])
        gc.freeze()  # the data, model and Trainer live as long as the run (see frozen_for_the_run)
        log_run_files(wandb, run)
        try:
            if stage == "fit":
                if not config["EXECUTION"]["SKIPEVAL"] and datamodule.has("val") and resume is None:
                    trainer.validate(module, datamodule=datamodule, verbose=False)
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
                if run.writer:  # the trained weights alone, for deployment: torch.load(..., weights_only=True)
                    torch.save(module.model.state_dict(), run.checkpoints / "model.pt")
                    summary.record_checkpoints(trainer)
                if datamodule.has("test"):
                    trainer.test(module, datamodule=datamodule, verbose=False)
            elif stage == "validate":
                trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
            elif stage == "test":
                trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
            elif stage == "predict":
                trainer.predict(module, datamodule=datamodule, ckpt_path=ckpt_path, return_predictions=False)
                summary.summary["predictions"] = str(run.path / "predictions.csv")
            logger.commit()
            if stage in ("fit", "test") and datamodule.has("test"):
                summary.summary["majority_baseline"] = majority_baseline(datamodule, module)
            if module.confusion:
                run.write_json("confusion.json", module.confusion)
            if backup is not None and backup.error:
                summary.summary["backup_error"] = backup.error
            record_skipped(summary, datamodule.skipped_everywhere())
            summary.finish("finished")
        except BaseException as err:
            record_skipped(summary, datamodule.skipped)
            summary.finish("interrupted" if isinstance(err, (KeyboardInterrupt, Interrupted)) else "failed", error=str(err))
            reason = (None if isinstance(err, (RunStopped, KeyboardInterrupt)) else module.train_losses.non_finite()) \
                or explain(err, config["TRAIN_TRANSFORMATION"]["BATCH_SIZE"], str(trainer.strategy.root_device))
            if reason:
                summary.summary["error"] = reason
                summary.write()
                raise RunStopped(reason) from err
            raise
        log.info("run %s %s; final metrics: %s", run.run_id, summary.summary["status"], summary.summary["final"])
        return summary.summary
    finally:
        if run.writer:
            write_report(run.path)
        if backup is not None:
            backup.sync()
        if wandb is not None and run.writer:
            import wandb as wandb_lib

            wandb_lib.finish()
        run.unlock()
        if previous_id is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = previous_id
        RunFolder.stop_log(handler)
