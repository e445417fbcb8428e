"""Small callbacks: checkpoints named by SAVE, and the run's summary kept current."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar

from ednaml.errors import Interrupted
from ednaml.tracking.run_folder import RunFolder, better, lower_is_better, plain_metrics

if TYPE_CHECKING:
    from ednaml.config import sections
    from ednaml.tracking.trial import TrialLink

log = logging.getLogger("ednaml")


class LastCheckpoint(ModelCheckpoint):
    """Rewrites last.ckpt (its own class, so that Lightning keeps its state apart from the numbered ones)."""


def checkpoint_callbacks(save: sections.SaveSection, run: RunFolder, has_val: bool) -> list[ModelCheckpoint]:
    """{CORE}-v{VER}_epoch{E}_step{S}.ckpt every SAVE_FREQUENCY epochs (and STEP_SAVE_FREQUENCY steps),
    last.ckpt every epoch, and {CORE}-v{VER}_best_epoch{E}_step{S}.ckpt by SAVE.MONITOR."""
    prefix = f"{save.MODEL_CORE_NAME}-v{save.MODEL_VERSION}"
    # The periodic checkpoints keep every file; last.ckpt is rewritten at every epoch's end and every
    # step save, so it is always the newest checkpoint: the one a resume continues from.
    common = {
        "dirpath": run.checkpoints,
        "auto_insert_metric_name": False,
        "enable_version_counter": False,
        "save_on_train_epoch_end": True,
    }
    numbered = {**common, "filename": f"{prefix}_epoch{{epoch}}_step{{step}}", "save_top_k": -1}
    last = {**common, "filename": "last", "save_top_k": 1}
    callbacks: list[ModelCheckpoint] = [LastCheckpoint(every_n_epochs=1, **last)]
    if save.SAVE_FREQUENCY:
        callbacks.append(ModelCheckpoint(every_n_epochs=save.SAVE_FREQUENCY, **numbered))
    if save.STEP_SAVE_FREQUENCY:
        callbacks += [
            ModelCheckpoint(every_n_train_steps=save.STEP_SAVE_FREQUENCY, **numbered),
            LastCheckpoint(every_n_train_steps=save.STEP_SAVE_FREQUENCY, **last),
        ]
    if save.MONITOR and has_val:
        mode = save.MONITOR_MODE if save.MONITOR_MODE != "auto" else ("min" if lower_is_better(save.MONITOR) else "max")
        callbacks.append(
            ModelCheckpoint(
                dirpath=run.checkpoints,
                filename=f"{prefix}_best_epoch{{epoch}}_step{{step}}",
                auto_insert_metric_name=False,
                monitor=save.MONITOR,
                mode=mode,
                save_top_k=1,
                save_on_train_epoch_end=False,
            )
        )
    return callbacks


class RunSummary(Callback):
    """Keeps summary.json current: status, final and best metrics, checkpoints, the W&B run."""

    def __init__(
        self,
        run: RunFolder,
        stage: str,
        wandb: dict[str, Any] | None = None,
        previous: dict[str, Any] | None = None,
        debug: list[str] | None = None,
        resumed_at: int | None = None,
    ):
        self.run, self.stage = run, stage
        self.started = time.time()
        self.summary: dict[str, Any] = {
            "run_id": run.run_id,
            "experiment": run.experiment,
            "stage": stage,
            "status": "running",
            "run_dir": str(run.path),
            "started": self.summary_time(),
            "epochs": 0,
            "global_step": 0,
            "final": {},
            "best": {},
            "checkpoints": {},
            "wandb": wandb or {},
            "elapsed_seconds": 0.0,
            "resumed": 0,
        }
        if debug:  # a few batches, not the experiment: `ednaml runs` and W&B say so
            self.summary["debug"] = debug
        self.earlier_seconds = 0.0
        if previous:  # a resumed run keeps its start, best metrics and time spent so far
            self.summary.update(
                {k: previous[k] for k in ("started", "final", "best", "epochs", "global_step") if k in previous}
            )
            self.summary["resumed"] = previous.get("resumed", 0) + 1
            self.summary["resumes"] = previous.get("resumes", []) + [{"step": resumed_at, "at": self.summary_time()}]
            self.earlier_seconds = previous.get("elapsed_seconds", 0.0)
        self.write()

    def summary_time(self) -> str:
        """When this process started the stage, as summary.json writes times."""
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started))

    def write(self) -> None:
        self.summary["elapsed_seconds"] = round(self.earlier_seconds + time.time() - self.started, 2)
        self.run.write_json("summary.json", self.summary)

    def _collect(self, trainer: pl.Trainer, prefixes: tuple[str, ...], epochs_done: int | None = None) -> None:
        logged = trainer.callback_metrics
        metrics = plain_metrics(
            {
                k: v
                for k, v in logged.items()
                if k.startswith(prefixes)
                and not k.endswith("_step")
                and not (k.endswith("_epoch") and k[:-6] in logged)
            }
        )
        self.summary["final"].update(metrics)
        self.summary["epochs"] = max(
            self.summary["epochs"], epochs_done if epochs_done is not None else trainer.current_epoch
        )
        self.summary["global_step"] = trainer.global_step
        for key, value in metrics.items():
            if value is None or not key.startswith("val/"):
                continue
            best = self.summary["best"].get(key)
            if best is None or better(key, value, best["value"]):
                self.summary["best"][key] = {
                    "value": value,
                    "epoch": trainer.current_epoch,
                    "step": trainer.global_step,
                }
        self.record_checkpoints(trainer)
        self.write()

    def record_checkpoints(self, trainer: pl.Trainer) -> None:
        if not self.run.checkpoints.is_dir():
            return
        saved = sorted(self.run.checkpoints.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
        last = self.run.checkpoints / "last.ckpt"
        self.summary["checkpoints"] = {
            "saved": [str(p) for p in saved if p.name != "last.ckpt" and "_best_" not in p.name],
            "last": str(last) if last.exists() else None,
        }
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.best_model_path:
                self.summary["checkpoints"]["best"] = callback.best_model_path
                self.summary["checkpoints"]["best_score"] = plain_metrics({callback.monitor: callback.best_model_score})
        model = self.run.checkpoints / "model.pt"
        if model.exists():
            self.summary["checkpoints"]["model"] = str(model)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._collect(trainer, ("val/",))

    # The module logs the epoch's training means in its own on_train_epoch_end, after callbacks' hooks:
    # they are collected when the next epoch starts, and when training ends.
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._collect(trainer, ("train/",), epochs_done=trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._collect(trainer, ("train/",), epochs_done=trainer.current_epoch)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._collect(trainer, ("test/",))

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.record_checkpoints(trainer)
        self.summary["global_step"] = trainer.global_step
        self.finish(ended_as(exception), error=str(exception))

    def finish(self, status: str, error: str | None = None) -> None:
        if self.summary["status"] in ("failed", "interrupted", "pruned"):
            return
        self.summary["status"] = status
        self.summary.pop("error", None)
        if error:
            self.summary["error"] = error
        self.write()


def ended_as(err: BaseException) -> str:
    """How an exception ends a run: interrupted (a signal; it can be resumed), pruned (a sweep's pruner
    stopped it: optuna's TrialPruned, from SweepPruning) or failed."""
    if isinstance(err, (KeyboardInterrupt, Interrupted)):
        return "interrupted"
    return "pruned" if type(err).__name__ == "TrialPruned" else "failed"


class StopOnSignal(Callback):
    """SIGTERM or Ctrl-C during training: finish the batch, save last.ckpt, stop. `--resume` continues.

    The handlers replace Lightning's own SIGTERM handling for the length of training, so the stop is
    always at a batch boundary with a checkpoint. A second Ctrl-C stops at once.
    """

    def __init__(self, run: RunFolder):
        self.run, self.requested, self.previous = run, None, {}

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._request) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _stop_requested(self, trainer: pl.Trainer) -> bool:
        # any process asked (a launcher may signal only one): every process stops at the same point
        return trainer.strategy.reduce_boolean_decision(self.requested is not None, all=False)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Several processes agree on a stop at the logging interval only: no collective on every step.
        if trainer.world_size > 1 and trainer.global_step % trainer.log_every_n_steps:
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            # the epoch's last batch: its end (the epoch's loss, validation, checkpoints) runs first, then the
            # stop at the next epoch's start resumes from that epoch's last.ckpt; a resume from here would skip it
            return
        if self._stop_requested(trainer):
            path = self.run.checkpoints / "last.ckpt"
            trainer.save_checkpoint(path, weights_only=False)  # the whole state: it resumes
            for logger in trainer.loggers:
                if hasattr(logger, "commit"):
                    logger.commit()
            self._stop(trainer, path)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stop_requested(trainer):  # asked during the last epoch's end: its checkpoint is the place to resume
            self._stop(trainer, self.run.checkpoints / "last.ckpt")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stop_requested(trainer):
            self._stop(trainer, self.run.checkpoints / "last.ckpt")

    def _stop(self, trainer: pl.Trainer, path: Any) -> None:
        self.restore()
        raise Interrupted(self.requested or "SIGTERM", trainer.global_step, str(path), self.run.run_id)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.restore()


def backup_problem(target: str) -> str | None:
    """Why SAVE.CHECKPOINT_DIRECTORY cannot take a backup (a probe file written and removed), or None."""
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(target)
        fs.makedirs(root, exist_ok=True)
        probe = f"{root.rstrip('/')}/.ednaml-probe-{os.getpid()}"
        fs.pipe_file(probe, b"ednaml")
        fs.rm_file(probe)
    except Exception as err:  # noqa: BLE001 - any failure (a missing fsspec backend, a refused write) is the answer
        return f"{target!r} cannot take backups ({type(err).__name__}: {err})"
    return None


class Backup(Callback):
    """Copies checkpoints (DRIVE_BACKUP) and run files (LOG_BACKUP) to CHECKPOINT_DIRECTORY through fsspec.

    The copy lands in <CHECKPOINT_DIRECTORY>/<experiment>/<run_id>/, mirroring the run folder. New or
    changed files are copied at the start of every epoch and once more when the run ends, each to a
    temporary name renamed over the old copy only once complete: a failed copy leaves the previous one.
    """

    RUN_FILES = (
        "config.yaml",
        "provenance.json",
        "summary.json",
        "metrics.csv",
        "log.txt",
        "parameter_groups.json",
        "confusion.json",
        "report.html",
    )

    def __init__(self, run: RunFolder, target: str, checkpoints: bool, logs: bool):
        self.run, self.checkpoints, self.logs = run, checkpoints, logs
        self.target = f"{target.rstrip('/')}/{run.experiment}/{run.run_id}"
        self.copied: dict[str, float] = {}
        self.error: str | None = None

    def sync(self) -> None:
        if not self.run.writer:
            return
        import fsspec

        files = [self.run.path / name for name in self.RUN_FILES] if self.logs else []
        if self.checkpoints:
            files += sorted(self.run.checkpoints.glob("*.ckpt")) + sorted(self.run.checkpoints.glob("*.pt"))
        fs = partial = None
        try:
            fs, root = fsspec.core.url_to_fs(self.target)
            for path in files:
                if not path.is_file() or self.copied.get(str(path)) == path.stat().st_mtime:
                    continue
                folder, name = f"{root}/{path.relative_to(self.run.path).as_posix()}".rsplit("/", 1)
                fs.makedirs(folder, exist_ok=True)
                partial = f"{folder}/.{name}.partial"
                fs.put_file(str(path), partial)
                fs.mv(partial, f"{folder}/{name}")
                partial = None
                self.copied[str(path)] = path.stat().st_mtime
        except (OSError, ValueError, ImportError) as err:  # the run goes on; its local files are all there
            if partial is not None:
                try:
                    fs.rm_file(partial)
                except (OSError, ValueError):
                    pass
            self.error = (
                f"SAVE.CHECKPOINT_DIRECTORY {self.target!r}: backup failed ({type(err).__name__}: {err}); "
                f"the local files in {self.run.path} are kept"
            )
            log.error(self.error)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sync()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.sync()


class StepMetrics(Callback):
    """Every STEP_VERBOSE optimizer steps: the step's loss, each loss term and every learning rate; and the
    learning rates at each epoch's end if its last step was not such a step, so that every epoch has them.

    Written before that step's checkpoint (checkpoint callbacks run last), so a resume from it
    neither loses nor repeats the row.
    """

    def __init__(self) -> None:
        self.seen = self.logged = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen = trainer.global_step  # the steps before (a resume's) are logged; the first micro-batches make none

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self.seen:  # mid-accumulation: no optimizer step yet
            return
        self.seen = step
        if step % trainer.log_every_n_steps and step != 1:
            return
        pl_module.train_losses.settle(trainer.strategy)
        self._log(trainer, {f"train/{k}_step": v.item() for k, v in pl_module.train_losses.last.items()})

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self.logged:  # the epoch's schedulers step after this: these are its rates
            self._log(trainer, {})

    def _log(self, trainer: pl.Trainer, row: dict[str, Any]) -> None:
        from ednaml.adapters.module import log_to_loggers

        groups = [g for optimizer in trainer.optimizers for g in optimizer.param_groups]
        row.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(groups)})
        log_to_loggers(trainer, row)
        self.logged = trainer.global_step


class LineProgress(ProgressBar):
    """Lightning's progress bar for output that is not a terminal (CI, `| tee`, a SLURM log): one line per
    logging interval and one per evaluation, where a bar's carriage-return frames would be thousands of lines."""

    def __init__(self, every: int, stream: Any = None) -> None:
        super().__init__()
        self.every, self.stream, self.enabled = max(1, every), stream or sys.stderr, True

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def _say(self, trainer: pl.Trainer, where: str, metrics: dict[str, Any], prefix: str) -> None:
        if self.enabled and trainer.is_global_zero:
            shown = [
                f"{k} {float(v):.4g}"
                for k, v in sorted(metrics.items())
                if k.startswith(prefix) and getattr(v, "numel", lambda: 1)() == 1
            ]
            print(" ".join([where, *shown]), file=self.stream, flush=True)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        done, total = batch_idx + 1, self.total_train_batches
        if done % self.every == 0 or done == total:
            shown_total = f"/{total}" if isinstance(total, int) else ""
            self._say(
                trainer,
                f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} batch {done}{shown_total}",
                self.get_metrics(trainer, pl_module),
                "train/",
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            where = f"epoch {trainer.current_epoch + 1} validation:" if trainer.state.fn == "fit" else "validation:"
            self._say(trainer, where, trainer.callback_metrics, "val/")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._say(trainer, "test:", trainer.callback_metrics, "test/")


def progress(trainer: Any, every: int, stream: Any = None) -> list[Callback]:
    """The progress display where the `trainer:` section leaves it to EdnaML: Lightning's bar on a terminal,
    LineProgress on anything else."""
    stream = stream or sys.stderr
    if trainer.get("enable_progress_bar") is not None or any(
        isinstance(c, dict) and "ProgressBar" in str(c.get("class_path")) for c in trainer.get("callbacks") or []
    ):
        return []
    return [] if stream.isatty() else [LineProgress(every, stream)]


class SweepPruning(pl.Callback):
    """Optuna's Lightning pruning contract (report METRIC at each epoch's end, stop when the pruner says so),
    for every strategy and storage: the first process reports and decides, and the decision is broadcast,
    so all processes of a multi-device trial stop together. Passes outside fitting (the validation pass
    before training) are not reported."""

    def __init__(self, link: TrialLink):
        self.link = link
        self._trial: Any = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.link.metric)
        prune = False
        if trainer.is_global_zero and value is not None:
            if self._trial is None:
                self._trial = self.link.trial()
            self._trial.report(float(value), step=trainer.current_epoch)
            prune = self._trial.should_prune()
        if trainer.strategy.broadcast(prune):
            import optuna

            raise optuna.TrialPruned(
                f"pruned by the sweep's pruner after epoch {trainer.current_epoch} "
                f"({self.link.metric} {float(value):.4g})"
                if value is not None
                else "pruned by the sweep"
            )
