"""Run one stage (fit / validate / test / predict) of a resolved config on a Lightning Trainer."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from ednaml.adapters.callbacks import (
    Backup,
    RunSummary,
    StepMetrics,
    StopOnSignal,
    backup_problem,
    checkpoint_callbacks,
    ended_as,
    progress,
)
from ednaml.adapters.datamodule import EdnaDataModule, NewData
from ednaml.adapters.given import Given
from ednaml.adapters.loggers import CommitMetrics, RunLogger, wandb_logger
from ednaml.adapters.module import EdnaModule
from ednaml.adapters.plugins import PluginRunner
from ednaml.adapters.predictions import PredictionWriter, PredictRequest
from ednaml.adapters.preflight import preflight, problem_from, seed
from ednaml.adapters.trainer import add_run_parts, build_trainer, debug_settings, save_atomically
from ednaml.checkpoints import checkpoint_step, data_state, plugin_state, read_checkpoint, source_run
from ednaml.config import sections
from ednaml.errors import BuildError, ConfigError, DataError, Problem, RunStopped
from ednaml.faults import explain
from ednaml.registry import Trust
from ednaml.tracking.provenance import build_provenance, parameter_counts, record_given
from ednaml.tracking.report import write_report
from ednaml.tracking.run_folder import RUN_ID_ENV, RunBusy, RunFolder
from ednaml.tracking.trial import sweep_trial
from ednaml.tracking.wandb import (
    Table,
    backfill,
    complete_offline,
    continue_steps,
    define_summaries,
    log_run_record,
    log_tables,
    pipeline_table,
    record_devices,
    record_summary,
    wandb_directories,
)

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
    # EdnaML's epoch losses are added up across processes before they are logged (EvaluationLosses, TrainingLosses)
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(train|val|test)/.*sync_dist=True")


class RecordParameters(pl.Callback):
    """Once the optimizers exist: the parameter-group table and counts into provenance.json."""

    def __init__(self, run: RunFolder, provenance: dict[str, Any], tables: list[Table]):
        self.run, self.provenance, self.tables = run, provenance, tables

    def on_fit_start(self, trainer: pl.Trainer, pl_module: EdnaModule) -> None:
        table = [row.as_dict() for row in pl_module.parameter_table]
        self.provenance["parameter_groups"] = table
        self.provenance["parameters"] = parameter_counts(pl_module)
        self.run.write_json("provenance.json", self.provenance)
        self.run.write_json("parameter_groups.json", table)
        columns = ["group", "optimizer", "kind", "tensors", "parameters", "lr", "weight_decay"]
        self.tables.append(("parameter_groups", columns, [[row[c] for c in columns] for row in table]))


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


def _provenance(
    run: RunFolder,
    config: dict[str, Any],
    datamodule: EdnaDataModule,
    invocation: dict[str, Any],
    resuming: bool,
    given: dict[str, dict[str, Any]],
    checkpoint: str | None,
) -> dict[str, Any]:
    """A new run's provenance (with the components `given` from Python, and the run whose `checkpoint` it
    starts from); a resumed run keeps its own and adds this resume to it."""
    record, diff = build_provenance(config, datamodule.crawl, invocation.get("argv") or [], Path.cwd(), run.run_id)
    record_given(record["components"], given, config)
    record["overrides"] = invocation.get("overrides", [])
    record["config_notes"] = invocation.get("config_notes", [])  # the original's spellings read as this version's, ...
    if (trial := sweep_trial()) is not None:
        record["sweep"] = trial.describe()
    if checkpoint and not resuming and (source := source_run(checkpoint)) is not None:
        record["source"] = source  # the run whose checkpoint this one starts from
    if resuming and (run.path / "provenance.json").exists():
        original = run.read_json("provenance.json")
        original.setdefault("resumes", []).append(
            {k: record[k] for k in ("created", "command", "git", "machine")}
            | {"versions": {k: v for k, v in record["versions"].items() if k != "packages"}}
            | ({"continued": invocation["continued"]} if invocation.get("continued") else {})
        )
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
    log.warning(
        "%d sample(s) failed to load and were skipped %d time(s) in all (EXECUTION.DATAREADER.BAD_SAMPLES: skip); "
        "they are listed in summary.json under skipped_samples",
        len(skipped),
        times,
    )


class ExportWeights(pl.Callback):
    """When training ends: checkpoints/model.pt, the trained weights alone for deployment
    (`torch.load(path, weights_only=True)` gives the state dict), and the checkpoints in summary.json."""

    def __init__(self, run: RunFolder, summary: RunSummary):
        self.run, self.summary = run, summary

    def on_fit_end(self, trainer: pl.Trainer, pl_module: EdnaModule) -> None:
        if self.run.writer:
            save_atomically(pl_module.model.state_dict(), self.run.checkpoints / "model.pt")
            self.summary.record_checkpoints(trainer)


class TestRecords(pl.Callback):
    """When a test ends: the majority-class baseline in summary.json, and confusion.json."""

    def __init__(self, run: RunFolder, summary: RunSummary, datamodule: EdnaDataModule):
        self.run, self.summary, self.datamodule = run, summary, datamodule

    def on_test_end(self, trainer: pl.Trainer, pl_module: EdnaModule) -> None:
        self.summary.summary["majority_baseline"] = majority_baseline(self.datamodule, pl_module)
        if pl_module.confusion:
            self.run.write_json("confusion.json", pl_module.confusion)


# ---- the lifecycle: instantiate, check before anything is written, run the stage in a session ----


def instantiate(
    config: sections.Config | dict[str, Any],
    checkpoint: str | os.PathLike | None,
    new_data: str | None = None,
    given: Given | None = None,
) -> tuple[EdnaDataModule, EdnaModule]:
    """The data module and the LightningModule; with `checkpoint`, the data state it carries (a tokenizer);
    with `new_data`, unlabelled inputs to predict on, with the checkpoint's label names; with `given`,
    components handed in from Python."""
    config, given = sections.sections(config), given or Given()
    saved = data_state(checkpoint) if checkpoint else None
    record = read_checkpoint(checkpoint) if checkpoint else {}
    if replaced := given.check_against(record.get("given") or {}, config.LOSS, str(checkpoint)):
        log.warning(
            "ckpt_path: %s was trained with %s given from Python; the config's are used now",
            checkpoint,
            ", ".join(replaced),
        )
    try:
        if new_data is not None:
            if not checkpoint:
                raise ConfigError(
                    "--data: predicting on new data needs a trained model; give a run folder, run id or checkpoint"
                )
            datamodule = EdnaDataModule(config, saved, NewData(new_data, record["labels"]))
        else:
            datamodule = EdnaDataModule(config, saved, crawler=given.crawler)
        return datamodule, EdnaModule(config, datamodule.labels, datamodule.info, given)
    except DataError:
        raise
    except (ValueError, KeyError, TypeError, ImportError, OSError) as err:
        problem = problem_from(err, ())  # a message that names its key is the user's mistake: exit 2, as in check
        raise (ConfigError([problem]) if problem.path else BuildError(problem.message)) from err


def before_run(
    stage: str, save: sections.SaveSection, module: EdnaModule, datamodule: EdnaDataModule, resuming: bool
) -> None:
    """What `check` would refuse, refused before a run folder exists: the optimizers and a first batch
    (a new fit), and a backup target that cannot take a file."""
    problems = preflight(module, datamodule) if stage == "fit" and not resuming else []
    if (save.DRIVE_BACKUP or save.LOG_BACKUP) and (trouble := backup_problem(save.CHECKPOINT_DIRECTORY)):
        problems.append(Problem(("SAVE", "CHECKPOINT_DIRECTORY"), trouble))
    if problems:
        raise ConfigError(problems)


class RunSession:
    """One stage's life in its run folder. Entering creates (or reopens) and locks the folder, sends the
    log to log.txt, writes the config and provenance, starts W&B and summary.json. Leaving, however the
    stage ended: the status and reason in summary.json, the report, the last backup, W&B finished, the
    lock released."""

    def __init__(
        self,
        stage: str,
        config: sections.Config,
        module: EdnaModule,
        datamodule: EdnaDataModule,
        run: RunFolder,
        resuming: bool,
        invocation: dict[str, Any] | None,
        ckpt_path: str | None,
        request: PredictRequest | None = None,
    ):
        self.stage, self.config, self.module, self.datamodule = stage, config, module, datamodule
        self.request = request or PredictRequest()
        self.writer: PredictionWriter | None = None
        self.plugin_runner: PluginRunner | None = None
        self.run, self.resuming, self.invocation = run, resuming, invocation or {}
        self.ckpt_path = str(run.checkpoints / "last.ckpt") if resuming else ckpt_path
        self.trainer: pl.Trainer | None = None  # built before the session is entered, from trainer_callbacks()
        self.built_with: list[pl.Callback] = []
        self.summary: RunSummary | None = None
        self.backup: Backup | None = None
        self.tables: list[Table] = []  # for W&B as the run ends (see log_tables)

    def __enter__(self) -> RunSession:
        config, run = self.config, self.run
        if not self.resuming:
            run.make()
        with contextlib.ExitStack() as stack:  # undone in reverse if anything below fails, else when the session ends
            try:
                run.lock()
            except RunBusy as err:
                raise ConfigError(f"--resume: {err}") from None
            stack.callback(run.unlock)
            stack.callback(RunFolder.stop_log, run.start_log())
            stack.enter_context(_environment({RUN_ID_ENV: run.run_id}))
            stack.enter_context(_environment(wandb_directories(run), keep_set=True))
            plain = config.as_dict()  # what the run folder, provenance and W&B record
            if not self.resuming or self.invocation.get("continued"):  # a continuation's config holds its new horizon
                run.write_config(plain)
            if tokenizer := self.datamodule.state_dict().get("tokenizer"):
                run.write_data("tokenizer.json", tokenizer)
            log.info("%s: %s", "resuming the run folder" if self.resuming else "run folder", run.path)
            if (trial := sweep_trial()) is not None and run.writer:
                trial.record_run(run.path)
            self.provenance = self.module.provenance = _provenance(
                run, plain, self.datamodule, self.invocation, self.resuming, self.module.given_record, self.ckpt_path
            )
            self.wandb, wandb_info = wandb_logger(run, plain, self.provenance, self.stage)
            define_summaries(self.wandb, self.module.logged_names("val"))
            if self.wandb is not None:
                stack.callback(self._finish_wandb)
            if self.resuming:
                continue_steps(self.wandb, run, wandb_info.get("dir"))
                if sent := backfill(self.wandb, run, wandb_info.get("dir")):
                    log.info("W&B: %d committed metric rows the interrupted process had not flushed, sent again", sent)
            self.logger = RunLogger(run.path, run.run_id, self.wandb)
            self.summary = RunSummary(
                run,
                self.stage,
                wandb_info,
                previous=run.read_json("summary.json") if self.resuming else None,
                debug=debug_settings(config.trainer),
                resumed_at=checkpoint_step(self.ckpt_path) if self.resuming else None,
            )
            save = config.SAVE
            if save.DRIVE_BACKUP or save.LOG_BACKUP:
                self.backup = Backup(run, save.CHECKPOINT_DIRECTORY, save.DRIVE_BACKUP, save.LOG_BACKUP)
                stack.callback(self._last_backup)
            if run.writer:
                stack.callback(write_report, run.path)
            add_run_parts(self.trainer, config.trainer, self.built_with, self.callbacks(), [self.logger])
            self._cleanup = stack.pop_all()
        return self

    def record_processes(self, count: int) -> None:
        """How many processes the stage runs on, in provenance.json (`ednaml diff` names a change of it) and in
        W&B (the config's `devices`)."""
        self.provenance.setdefault("machine", {})["processes"] = count
        if self.run.writer:
            self.run.write_json("provenance.json", self.provenance)
        record_devices(self.wandb, count, self.provenance)

    def trainer_callbacks(self) -> list[pl.Callback]:
        """The stage's callbacks the Trainer is built with, which need no more than the run folder's path: the
        checkpoints (where a Trainer without them would add its own), the progress display, step metrics."""
        built: list[pl.Callback] = [*progress(self.config.trainer, self.config.LOGGING.STEP_VERBOSE)]
        if self.stage == "fit":
            built = [
                StepMetrics(),
                *built,
                *checkpoint_callbacks(self.config.SAVE, self.run, self.datamodule.has("val")),
            ]
        self.built_with = built
        return built

    def callbacks(self) -> list[pl.Callback]:
        """The stage's callbacks made with its folder: summary.json and metrics always; then what the stage
        writes."""
        run, summary = self.run, self.summary
        common: list[pl.Callback] = [summary, CommitMetrics(self.logger)]
        if self.stage == "fit":
            common += [
                RecordParameters(run, self.provenance, self.tables),
                StopOnSignal(run),
                ExportWeights(run, summary),
            ]
        if self.stage in ("fit", "test"):
            common.append(TestRecords(run, summary, self.datamodule))
        if self.stage == "predict":
            self.writer = PredictionWriter(run, summary, self.request, self.config.DEPLOYMENT, self.ckpt_path)
            common.append(self.writer)
        if len(self.module.plugins):
            section = self.config.DEPLOYMENT if self.stage == "predict" else self.config.EXECUTION
            self.plugin_runner = PluginRunner(section.PLUGIN.HOOKS)
            common.append(self.plugin_runner)
        if self.backup is not None:
            common.append(self.backup)
        if self.stage == "fit" and (trial := sweep_trial()) is not None:
            from ednaml.adapters.callbacks import SweepPruning

            common.append(SweepPruning(trial))
        return common

    def _finish_wandb(self) -> None:
        import wandb

        try:
            log_tables(self.wandb, self.tables)
        finally:
            wandb.finish()
        if self.summary is not None and self.summary.summary["wandb"].get("mode") == "offline":
            complete_offline(self.summary.summary["wandb"].get("dir"))

    def warn(self, message: str) -> None:
        """A warning for log.txt, summary.json and the console at the end of the run."""
        log.warning("%s", message)
        self.summary.summary.setdefault("warnings", []).append(message)

    def finished(self) -> dict[str, Any]:
        """The stage ended well: the last metrics committed, the summary final."""
        summary = self.summary
        self.logger.commit()
        if self.backup is not None and self.backup.error:
            summary.summary["backup_error"] = self.backup.error
        record_skipped(summary, self.datamodule.skipped_everywhere())
        summary.finish("finished")
        record_summary(self.wandb, summary.summary)
        log.info("run %s %s; final metrics: %s", self.run.run_id, summary.summary["status"], summary.summary["final"])
        return summary.summary

    def __exit__(self, kind: type | None, err: BaseException | None, traceback: Any) -> bool:
        with self._cleanup:
            if err is not None and self.summary is not None:
                self._failed(err)
        return False

    def _failed(self, err: BaseException) -> None:
        """The status, and a plain reason where there is one (then raised as RunStopped, not a traceback)."""
        summary = self.summary
        record_skipped(summary, self.datamodule.skipped)
        status = ended_as(err)
        summary.finish(status, error=str(err))
        device = str(self.trainer.strategy.root_device) if self.trainer is not None else ""
        reason = (
            str(err)
            if status == "pruned"
            else (None if isinstance(err, (RunStopped, KeyboardInterrupt)) else self.module.train_losses.non_finite())
            or explain(err, self.config.TRAIN_TRANSFORMATION.BATCH_SIZE, device)
        )
        if reason:
            summary.summary["error"] = reason
            summary.write()
        record_summary(self.wandb, summary.summary)
        if reason:
            raise RunStopped(reason) from err

    def _last_backup(self) -> None:
        self.backup.sync()
        if self.backup.error and self.summary.summary.get("backup_error") != self.backup.error:
            self.summary.summary["backup_error"] = self.backup.error
            self.summary.write()


@contextlib.contextmanager
def _environment(values: dict[str, str], keep_set: bool = False) -> Iterator[None]:
    """Environment variables for the length of the session (the run id for the processes Lightning starts,
    W&B's directories); with `keep_set`, a variable the user set keeps their value."""
    previous = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if not (keep_set and previous[name]):
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _fit(session: RunSession, trainer: pl.Trainer, module: EdnaModule, data: EdnaDataModule) -> None:
    """A validation pass first (unless SKIPEVAL or resuming), training, then the test split."""
    if not session.config.EXECUTION.SKIPEVAL and data.has("val") and not session.resuming:
        trainer.validate(module, datamodule=data, verbose=False)
    trainer.fit(module, datamodule=data, ckpt_path=session.ckpt_path)
    if data.has("test"):
        trainer.test(module, datamodule=data, verbose=False)


def _predict(session: RunSession, trainer: pl.Trainer, module: EdnaModule, data: EdnaDataModule) -> None:
    """Plugins still warming up first learn from the data, in up to DEPLOYMENT.EPOCHS passes that write
    nothing; then one pass writes the records."""
    ckpt_path, runner = session.ckpt_path, session.plugin_runner
    passes = session.config.DEPLOYMENT.EPOCHS
    if runner is not None and ckpt_path:  # which plugins the checkpoint holds activated already
        module.load_plugin_state(plugin_state(ckpt_path))
    warming = [name for name, plugin in module.plugins.items() if not plugin.activated]
    if warming and session.request.data is None:  # plugins never learn from the test split
        session.warn(
            f"MODEL_PLUGIN {', '.join(warming)}: still warming up in this checkpoint; they learn from training "
            "epochs or from new data (--data), not the test split, so their outputs are left out"
        )
    elif warming:
        session.writer.writing, runner.fitting = False, True
        for epoch in range(passes):
            runner.start_epoch(module, epoch, passes)  # ended by the runner when the pass ends
            trainer.predict(module, datamodule=data, ckpt_path=ckpt_path, return_predictions=False)
            ckpt_path = None  # loaded once: later passes keep what the plugins learned
            if all(plugin.activated for plugin in module.plugins.values()):
                break
        session.writer.writing, runner.fitting = True, False
        if still := [name for name, plugin in module.plugins.items() if not plugin.activated]:
            session.warn(
                f"MODEL_PLUGIN {', '.join(still)}: still warming up after {passes} pass(es) over the data "
                "(DEPLOYMENT.EPOCHS); their outputs are left out"
            )
    trainer.predict(module, datamodule=data, ckpt_path=ckpt_path, return_predictions=False)


STAGES: dict[str, Callable[[RunSession, pl.Trainer, EdnaModule, EdnaDataModule], None]] = {
    "fit": _fit,
    "validate": lambda s, trainer, module, data: trainer.validate(
        module, datamodule=data, ckpt_path=s.ckpt_path, verbose=False
    ),
    "test": lambda s, trainer, module, data: trainer.test(
        module, datamodule=data, ckpt_path=s.ckpt_path, verbose=False
    ),
    "predict": _predict,
}


def run_stage(
    stage: str,
    config: sections.Config | dict[str, Any],
    ckpt_path: str | None = None,
    resume: RunFolder | None = None,
    invocation: dict[str, Any] | None = None,
    request: PredictRequest | None = None,
    given: Given | None = None,
    trust: Trust = Trust(),
) -> dict[str, Any]:
    """Build everything from `config`, run `stage`, and return the run's summary.

    With `resume`, fit continues that run in its own folder from its last checkpoint. `request` says what
    predict predicts on and where its records go; `given` holds components handed in from Python.
    """
    config = sections.sections(config)
    with frozen_for_the_run():
        _quiet_lightning()
        seed(config)
        datamodule, module = instantiate(
            config,
            resume.checkpoints / "last.ckpt" if resume is not None else ckpt_path,
            request.data if request is not None else None,
            given,
        )
        before_run(stage, config.SAVE, module, datamodule, resume is not None)
        run = resume or RunFolder.new(config.trainer.get("default_root_dir") or "runs", config)
        session = RunSession(stage, config, module, datamodule, run, resume is not None, invocation, ckpt_path, request)
        # the one Trainer of the run, before its folder is made: what Lightning refuses leaves nothing behind
        session.trainer = trainer = build_trainer(config.trainer, str(run.path), session.trainer_callbacks(), trust)
        with session:
            session.record_processes(trainer.world_size)
            gc.freeze()  # the data, model and Trainer live as long as the run (see frozen_for_the_run)
            session.tables.append(pipeline_table(config.as_dict(), session.provenance))
            log_run_record(session.wandb, session.run)
            STAGES[stage](session, trainer, module, datamodule)
            return session.finished()
