"""`ednaml sweep`: an Optuna study over config keys, each trial an `ednaml fit` run of its own.

The sweep process asks Optuna for a trial, checks the sampled config, and runs `ednaml fit` with the
sampled values as overrides (in a child process, so a trial gets the Trainer flags given, multi-device
included, and a trial that fails takes nothing else down). The run reports to the trial itself (see
tracking/trial.py and adapters.callbacks.SweepPruning). Several sweep processes, here (`--parallel K`) or on
other machines sharing a storage, ask the same study for trials; Optuna numbers them.

A sweep stopped by Ctrl-C or SIGTERM stops its runs the way a run stops (last.ckpt saved) and leaves
their trials running; the same command again continues each one from its checkpoint and goes on.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ednaml.errors import ConfigError, Problem, RunStopped, UsageError, did_you_mean
from ednaml.startup import ednaml_command
from ednaml.sweeps.space import Space, make_pruner
from ednaml.tracking.trial import TRIAL_ENV, TrialLink, open_storage, shown_storage

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SWEEPS = Path("sweeps")


STORAGE_ENV = "EDNAML_SWEEP_STORAGE"  # --storage's default: a database URL with a password stays out of argv


def storage_address(given: str | None, folder: Path) -> str:
    """--storage (else EDNAML_SWEEP_STORAGE) as an address: a URL as it is, a file path as a journal file;
    by default the sweep folder's study.journal."""
    given = given or os.environ.get(STORAGE_ENV) or None
    if given is None:
        return f"journal:{(folder / 'study.journal').resolve()}"
    if "://" in given or given.startswith("journal:"):
        return given
    return f"journal:{Path(given).resolve()}"


def run_of_trial(run: str | os.PathLike, study: str, number: int) -> Path | None:
    """`run` where it is a run folder whose provenance says it ran trial `number` of `study`: a path
    read from a study or a sweep folder is not trusted further than that."""
    from ednaml.tracking.browse import read_run

    provenance = read_run(Path(run)).provenance
    record = provenance.get("sweep") if isinstance(provenance, dict) else None
    return (
        Path(run)
        if isinstance(record, dict) and record.get("study") == study and record.get("trial") == number
        else None
    )


def _sampler(space: Space, seed: int) -> Any:
    import optuna

    if space.sampler == "grid":

        class Grid(optuna.samplers.GridSampler):
            """Optuna's grid sampler, without its `study.stop()` when the grid is done: that is for
            `study.optimize`; a sweep asks and tells, and stops at the grid's size itself (Space.limit)."""

            def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                return None

        return Grid({p.key: p.grid() for p in space.params}, seed=seed)
    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _yaml(value: Any) -> str:
    """A value as the command line reads it (YAML 1.2)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Sweep:
    """One sweep process: its study, its base config and how it starts runs."""

    name: str
    space: Space
    files: list[str]
    overrides: list[tuple[str, Any]]
    imports: list[str]
    storage: str
    parallel: int = 1
    folder: Path = field(init=False)
    stopping: str | None = field(default=None, init=False)
    children: dict[int, subprocess.Popen] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.folder = SWEEPS / self.name
        self.lock = threading.Lock()
        self.devices: list[str] = []

    # ---- the study ----

    def open(self) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            storage = open_storage(self.storage)
            joining = self.name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
            # processes that join a study sample with seeds of their own, or they would propose the same values
            seed = self.space.seed if not joining else self.space.seed + os.getpid()
            self.study = optuna.create_study(
                study_name=self.name,
                storage=storage,
                load_if_exists=True,
                direction=self.space.direction,
                sampler=_sampler(self.space, seed),
                pruner=make_pruner(self.space.pruner, self.space.pruner_args),
            )
        except Exception as err:  # noqa: BLE001 - a bad URL, a missing driver, a database that does not answer
            from ednaml.tracking.secrets import scrub_text

            raise UsageError(
                f"--storage {shown_storage(self.storage)}: cannot open the study there: "
                f"{scrub_text(str(err)).splitlines()[0] if str(err) else type(err).__name__}"
            ) from None
        described = self.space.describe()
        recorded = self.study.user_attrs.get("space")
        if recorded is None:
            self.study.set_user_attr("space", described)
            self.study.set_user_attr("configs", [str(Path(f).resolve()) for f in self.files])
        elif recorded != described:
            raise ConfigError(
                [
                    Problem(
                        ("SWEEP",),
                        f"study {self.name!r} was made with another search space or METRIC, DIRECTION, "
                        "SAMPLER, PRUNER or SEED: give this one a new name with --study NAME",
                    )
                ],
                self.space.source,
            )
        if self.study.direction.name.lower() != self.space.direction:
            raise ConfigError(
                [Problem(("DIRECTION",), f"study {self.name!r} {self.study.direction.name.lower()}s")],
                self.space.source,
            )

    def counted(self) -> int:
        from optuna.trial import TrialState

        return len(
            self.study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
            )
        )

    # ---- checking sampled configs ----

    def config_for(self, values: dict[str, Any]) -> dict[str, Any]:
        """The resolved, validated config of a trial (a ConfigError where the sampled values make it invalid)."""
        from ednaml.api import prepare

        return prepare(self.files, [*self.overrides, *values.items()], self.imports)

    def check_space(self) -> None:
        """Every choice and both ends of every range, one key at a time, must give a valid config: a space
        that can produce an invalid config is reported before any trial runs."""
        problems = []
        for param in self.space.params:
            for value in param.probes():
                try:
                    self.config_for({param.key: value})
                except ConfigError as err:
                    problems += [
                        Problem(("SWEEP", param.key), f"{value!r} gives an invalid config: {p}") for p in err.problems
                    ]
        if problems:
            raise ConfigError(problems, self.space.source)

    # ---- running trials ----

    def command(self, values: dict[str, Any], tags: list[str], resume: str | None = None) -> list[str]:
        """`ednaml fit` with the sweep's configs and overrides and the sampled values; continuing a stopped
        trial's run, the same with --resume (they equal its saved config, and give back any masked secret)."""
        args = [a for f in self.files for a in ("--config", str(f))] + [
            a for i in self.imports for a in ("--import", i)
        ]
        args += [
            a for key, value in self.overrides for a in (f"--{key}", value if isinstance(value, str) else _yaml(value))
        ]
        args += [a for key, value in values.items() for a in (f"--{key}", _yaml(value))]
        args += ["--LOGGING.WANDB_GROUP", self.name, "--LOGGING.WANDB_TAGS", _yaml(tags)]
        return ednaml_command(
            "fit", "--trainer.enable_progress_bar", "false", *(["--resume", resume] if resume else []), *args
        )

    def trial_run(self, number: int) -> Path | None:
        """The run folder trial `number` recorded, where its provenance says it is that trial's run."""
        run = self._frozen(number).user_attrs.get("run")
        return run_of_trial(run, self.name, number) if run else None

    def run_trial(
        self, number: int, values: dict[str, Any], slot: int, claim: int, resume: str | None = None
    ) -> dict[str, Any]:
        """One trial's run in a child process; what it ended as: state, value, run folder, error. The child
        holds the trial's claim too, so the trial is not taken over while its run lives."""
        from optuna.trial import TrialState

        config = self.config_for(values)
        tags = [*map(str, config["LOGGING"]["WANDB_TAGS"]), f"sweep:{self.name}", f"trial:{number}"]
        link = TrialLink(
            self.storage, self.name, number, self.space.metric, values, (self.space.pruner, self.space.pruner_args)
        )
        env = {**os.environ, TRIAL_ENV: link.to_env()}
        if self.parallel > 1 and self.devices:  # one GPU each
            env["CUDA_VISIBLE_DEVICES"] = self.devices[slot]
        logs = self.folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"trial-{number}.txt", "a", encoding="utf-8") as out:
            with self.lock:
                if self.stopping:
                    return {"state": TrialState.RUNNING}
                child = subprocess.Popen(
                    self.command(values, tags, resume),
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(claim,),
                )  # signals reach it from this process only, once
                self.children[number] = child
            self.study._storage.set_trial_user_attr(self._trial_id(number), "child", child.pid)
            code = child.wait()
            with self.lock:
                self.children.pop(number, None)
        run = self.trial_run(number)
        summary = _read_summary(run)
        status = summary.get("status")
        if status == "pruned":
            return {"state": TrialState.PRUNED, "run": run}
        value = _result(summary, self.space.metric)
        if status == "finished" and value is not None:
            return {"state": TrialState.COMPLETE, "value": value, "run": run}
        if self.stopping:  # stopped at any point: the same command continues it
            return {"state": TrialState.RUNNING, "run": run}
        if status == "finished":
            logged = sorted((summary.get("best") or {}) | (summary.get("final") or {}))
            raise ConfigError(
                [
                    Problem(
                        ("METRIC",),
                        f"{self.space.metric!r} is not a value the runs log"
                        + did_you_mean(self.space.metric, logged, f"; they log {', '.join(logged)}"),
                    )
                ],
                self.space.source,
            )
        error = (
            (summary.get("error") if status != "interrupted" else None)
            or _tail(logs / f"trial-{number}.txt")
            or f"exit code {code}"
        )
        return {"state": TrialState.FAIL, "run": run, "error": error}

    def finish(self, number: int, ended: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        if ended["state"] == TrialState.RUNNING:
            return
        if ended.get("error"):
            from ednaml.tracking.secrets import scrub_text

            self.study._storage.set_trial_user_attr(
                self._trial_id(number), "error", scrub_text(str(ended["error"]))[-2000:]
            )
        self.study.tell(
            number, ended.get("value"), state=ended["state"] if ended["state"] != TrialState.COMPLETE else None
        )

    def _trial_id(self, number: int) -> int:
        return self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)

    def _frozen(self, number: int) -> Any:
        return self.study._storage.get_trial(self._trial_id(number))

    def claim(self, number: int, wait: bool = False) -> int | None:
        """An exclusive lock on trial `number` (a file in the sweep folder's claims/), held by this process and
        the trial's run for as long as either lives: a killed sweep's runs keep it. None where another
        process holds it."""
        import fcntl

        claims = self.folder / "claims"
        claims.mkdir(parents=True, exist_ok=True)
        handle = os.open(claims / f"trial-{number}", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(handle)
            return None
        trial_id = self._trial_id(number)
        self.study._storage.set_trial_user_attr(trial_id, "host", socket.gethostname())
        self.study._storage.set_trial_user_attr(trial_id, "pid", os.getpid())
        return handle

    def take_over(self) -> tuple[Any, int] | None:
        """A running trial of this machine that no live process holds (its sweep was stopped or killed, and
        its run ended), claimed by this process."""
        from optuna.trial import TrialState

        host = socket.gethostname()
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get("host") != host or any(_alive(trial.user_attrs.get(k)) for k in ("pid", "child")):
                continue  # another machine's, or its sweep or its run still lives (a sweep in another folder, too)
            if (handle := self.claim(trial.number)) is not None:
                return trial, handle
        return None

    def worker(self, slot: int, announce: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        while not self.stopping:
            with self.lock:
                taken = self.take_over()
                if taken is None and self.counted() >= self.space.limit:
                    return
                if taken is None:
                    trial = self.study.ask()
                    handle, resume, again = self.claim(trial.number, wait=True), None, None
                else:
                    trial, handle = optuna.trial.Trial(self.study, taken[0]._trial_id), taken[1]
                    run = self.trial_run(trial.number)
                    resume = str(run) if run and (run / "checkpoints" / "last.ckpt").is_file() else None
                    again = "continued" if resume else "started again"
            try:
                number = trial.number
                # a taken-over trial gives back the values it was given (or, asked and never given any, new ones)
                values = {p.key: p.suggest(trial) for p in self.space.params}
                if resume is None:  # a new run: the trial's old run folder, if any, is not its result
                    self.study._storage.set_trial_user_attr(self._trial_id(number), "run", None)
                announce(number, values, again)
                try:
                    ended = self.run_trial(number, values, slot, handle, resume)
                except ConfigError as err:
                    if err.problems and err.problems[0].path == ("METRIC",):
                        self.study.tell(number, state=TrialState.FAIL)
                        raise
                    ended = {"state": TrialState.FAIL, "error": f"invalid config: {err}"}
                self.finish(number, ended)
            finally:
                os.close(handle)
            announce(number, values, ended)

    def run(self, announce: Any) -> None:
        """Trials until the study has TRIALS (complete, pruned, failed or running), in `parallel` workers."""
        errors: list[BaseException] = []

        def work(slot: int) -> None:
            try:
                self.worker(slot, announce)
            except BaseException as err:  # noqa: BLE001 - handed to the main thread
                errors.append(err)
                self.stop("error")

        threads = [threading.Thread(target=work, args=(slot,), daemon=True) for slot in range(self.parallel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
        if errors:
            raise errors[0]

    def stop(self, reason: str) -> None:
        """Stop asking for trials; the runs in progress get the signal once, save last.ckpt and stop."""
        with self.lock:
            if self.stopping:
                return
            self.stopping = reason
            for child in self.children.values():
                child.send_signal(signal.SIGINT if reason == "SIGINT" else signal.SIGTERM)


def _read_summary(run: Path | None) -> dict[str, Any]:
    from ednaml.tracking.browse import read_run

    summary = read_run(run).summary if run is not None else {}
    return summary if isinstance(summary, dict) else {}


def _result(summary: dict[str, Any], metric: str) -> float | None:
    """A run's result for the study: the best value of a validation METRIC over its epochs (the value its
    best checkpoint holds), else the final value (a test metric)."""
    best = (summary.get("best") or {}).get(metric)
    if best is not None:
        return float(best["value"])
    final = (summary.get("final") or {}).get(metric)
    return float(final) if final is not None else None


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def parallel_devices(parallel: int, config: dict[str, Any]) -> list[str]:
    """The GPU each of `parallel` trial slots sees (none on a machine without CUDA): one each, so K needs K."""
    import torch

    if parallel == 1 or not torch.cuda.is_available():
        return []
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()] or [
        str(i) for i in range(torch.cuda.device_count())
    ]
    if parallel > len(visible):
        raise UsageError(f"--parallel {parallel}: one GPU per trial, and {len(visible)} are visible")
    if str(config["trainer"].get("devices", "auto")) not in ("1", "auto", "-1"):
        raise UsageError(
            f"--parallel gives each trial one GPU; trainer.devices {config['trainer']['devices']!r} asks for more"
        )
    return visible[:parallel]


def check_name(name: str, flag: str = "--study") -> str:
    """A study name, which names its folder under sweeps/: nothing that leads out of it."""
    if not NAME.fullmatch(name) or ".." in name:
        raise UsageError(
            f"{flag} {name!r}: a study name of letters, digits, '.', '_' and '-' (it names the folder sweeps/NAME)"
        )
    return name


def default_name(files: list[str], sweep_file: str) -> str:
    """The config files' and sweep file's names (digits.yml + digits-sweep.yml: digits-sweep): the same
    command again continues the same study."""
    stems = [Path(f).stem for f in files]
    sweep_stem = Path(sweep_file).stem
    stems = [stem for stem in stems if not sweep_stem.startswith(stem)] + [sweep_stem]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(dict.fromkeys(stems))).strip("-.")
    return name or "sweep"


def run_sweep(
    files: list[str],
    sweep_file: str,
    overrides: list[tuple[str, Any]],
    imports: list[str],
    trials: int | None,
    storage: str | None,
    name: str | None,
    parallel: int,
) -> Sweep:
    """Check the space, open (or continue) the study, run trials until it has enough; write the results."""
    from ednaml.sweeps.results import write_results
    from ednaml.sweeps.space import read_space
    from ednaml.utils import require

    require("optuna", "sweep")
    space = read_space(sweep_file, trials)
    name = check_name(name) if name else default_name(files, sweep_file)
    sweep = Sweep(name, space, files, overrides, imports, "", parallel)
    sweep.storage = storage_address(storage, sweep.folder)
    config = sweep.config_for({})
    sweep.devices = parallel_devices(parallel, config)
    sweep.check_space()
    sweep.folder.mkdir(parents=True, exist_ok=True)
    sweep.open()

    def announce(number: int, values: dict[str, Any], ended: Any) -> None:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={_yaml(v)}" for k, v in values.items())
        if ended is None or isinstance(ended, str):
            print(f"trial {number} {ended or 'started'}: {shown}", flush=True)
            return
        state = ended["state"].name.lower()
        value = f" {space.metric} {ended['value']:.4f}" if ended.get("value") is not None else ""
        print(
            f"trial {number} {state if state != 'running' else 'stopped (continues when the sweep does)'}:{value}"
            f" {ended.get('run') or ''}".rstrip(),
            flush=True,
        )
        with sweep.lock:
            write_results(sweep)

    previous = {
        s: signal.signal(s, lambda signum, frame: sweep.stop(signal.Signals(signum).name))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        sweep.run(announce)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        write_results(sweep)
    if sweep.stopping in ("SIGINT", "SIGTERM"):
        stopped = RunStopped(
            f"{sweep.stopping}: sweep {name} stopped; its unfinished trials continue from their last checkpoint "
            f"when the same command runs again"
        )
        stopped.exit_code = 130 if sweep.stopping == "SIGINT" else 143
        raise stopped
    return sweep
