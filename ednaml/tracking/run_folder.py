"""The run folder: <root>/<experiment>/<run_id>/ with config.yaml, summary.json, metrics.csv, checkpoints/, log.txt."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ednaml.errors import RunFolderError, RunFolderLink
from ednaml.tracking.secrets import ScrubFilter, scrub, scrub_text
from ednaml.utils import is_rank_zero

try:
    import fcntl
except ImportError:  # not on Windows: no lock, and `ednaml runs` cannot tell a dead run from a running one
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
RUN_ID_ENV = "EDNAML_RUN_ID"  # handed to the processes a DDP launcher starts, so all ranks agree
MAX_RUN_FILE_BYTES = 100_000_000  # summary, provenance and config are kilobytes, metrics.csv of a long run megabytes
log = logging.getLogger("ednaml")


def experiment_name(config: Mapping[str, Any]) -> str:
    """{MODEL_CORE_NAME}-v{MODEL_VERSION}-{MODEL_BACKBONE}-{MODEL_QUALIFIER}."""
    save = config["SAVE"]
    return f"{save['MODEL_CORE_NAME']}-v{save['MODEL_VERSION']}-{save['MODEL_BACKBONE']}-{save['MODEL_QUALIFIER']}"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


# W&B makes links of its own in wandb/: latest-run, debug.log and debug-internal.log to its files in the same
# folder, and in each process's folder logs/debug-core.log to that process's log in wandb/cache (which stays
# where the run was made when the folder is moved; no later process writes it). Those are left alone;
# everywhere else, and for the folders W&B is told to write in, a link is refused.
WANDB_WRITES_IN = ("wandb/cache", "wandb/staging", "wandb/artifacts")
WANDB_CORE_LOG = "debug-core.log"


def links_out(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """The symbolic links in a run folder that a write could follow, as (path in the folder, where it points):
    any link outside wandb/, and any in it that leads out of the folder. Empty: the folder is safe to write in."""
    folder = Path(folder)
    inside = Path(os.path.realpath(folder))
    found = []
    for parent, folders, files in os.walk(folder):  # a link to a folder is listed, never entered
        for name in sorted(folders + files):
            path = Path(parent) / name
            if not path.is_symlink():
                continue
            relative = path.relative_to(folder).as_posix()
            if relative.startswith("wandb/") and (
                name == WANDB_CORE_LOG
                or relative not in WANDB_WRITES_IN
                and Path(os.path.realpath(path)).is_relative_to(inside)
            ):
                continue
            found.append((relative, os.readlink(path)))
    return found


def refuse_links(folder: str | os.PathLike) -> None:
    """Raise RunFolderLink naming every link of `links_out`, before anything is written in the folder."""
    if found := links_out(folder):
        raise RunFolderLink(Path(folder), found)


_FLAGS = {"r": os.O_RDONLY, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND}


def open_no_link(path: Path, mode: str = "r", **kwargs: Any) -> IO[Any]:
    """open(path, mode, ...) for a file of a run folder, refusing (RunFolderLink) where `path` is a symbolic link."""
    try:
        descriptor = os.open(path, _FLAGS[mode[0]] | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0), 0o666)
    except OSError:
        if os.path.islink(path):
            raise RunFolderLink(path.parent, [(path.name, os.readlink(path))]) from None
        raise
    try:
        return os.fdopen(descriptor, mode, **kwargs)
    except BaseException:
        os.close(descriptor)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader (or a crash) never sees half of it."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open_no_link(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)  # a link at `path` is replaced, never written through


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars -> floats, NaN -> None: JSON-safe."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class RunFolder:
    """One run's folder. Only the rank-0 process writes; other ranks know the path and nothing else."""

    path: Path
    run_id: str
    experiment: str
    writer: bool

    @classmethod
    def create(cls, root: str | os.PathLike, config: Mapping[str, Any]) -> RunFolder:
        """A new, empty run folder; an existing run is never reused or overwritten."""
        run = cls.new(root, config)
        run.make()
        return run

    @classmethod
    def new(cls, root: str | os.PathLike, config: Mapping[str, Any]) -> RunFolder:
        """The folder a new run will have, nothing made yet (make() makes it): the path is known to what is
        built before it (the Trainer), and a run that fails before it starts leaves no folder."""
        experiment = experiment_name(config)
        inherited = os.environ.get(RUN_ID_ENV)
        writer = is_rank_zero()
        root = Path(root).absolute()
        run_id = inherited if inherited and not writer else new_run_id()
        while writer and (root / experiment / run_id).exists():
            run_id = new_run_id()
        path = root / experiment / run_id
        if path.resolve().parent.parent != root.resolve():  # validation allows only safe names; this is the backstop
            raise ValueError(f"SAVE: the run folder {str(path)!r} would not be a folder of the runs root {str(root)!r}")
        return cls(path=path, run_id=run_id, experiment=experiment, writer=writer)

    def make(self) -> None:
        """The folder of a new run, and its checkpoints/ (by the writing process); a folder of that name made
        since new() chose it is another run's, never written into."""
        if self.writer:
            try:
                self.path.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                raise RunFolderError(f"the run folder {self.path} was made by another process meanwhile") from None
            (self.path / "checkpoints").mkdir()

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunFolder:
        """An existing run folder, to resume the run it holds; refused (RunFolderLink) where it holds a link
        that a write could follow (see links_out)."""
        path = Path(path).absolute()
        refuse_links(path)
        return cls(path=path, run_id=path.name, experiment=path.parent.name, writer=is_rank_zero())

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def write_config(self, config: dict[str, Any]) -> None:
        if self.writer:
            from ednaml.config import dump

            write_atomic(self.path / "config.yaml", dump(scrub(config)))

    def write_json(self, name: str, data: Any) -> None:
        if self.writer:
            write_atomic(self.path / name, json.dumps(scrub(data), indent=2, default=_plain) + "\n")

    def write_text(self, name: str, text: str) -> None:
        if self.writer:
            write_atomic(self.path / name, scrub_text(text))

    def write_data(self, name: str, text: str) -> None:
        """A file the run reads back byte for byte (a tokenizer's vocabulary), as the checkpoint holds it: data,
        not a record, so not masked (a vocabulary's `"key":5` is no secret)."""
        if self.writer:
            write_atomic(self.path / name, text)

    def read_json(self, name: str) -> Any:
        return read_run_json(self.path / name)

    def lock(self) -> None:
        """Held while a stage runs in this folder: a second fit or resume of the run is refused, and a run
        that says `running` with its lock free has died (`ednaml runs` shows it as `dead`)."""
        if not self.writer:
            return
        refuse_links(self.path)  # again as the stage starts: nothing of it, W&B's files included, is written yet
        if fcntl is None:
            return
        handle = open_no_link(self.path / LOCK_FILE, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RunBusy(f"run {self.run_id} is running in another process; wait for it, or stop it first") from None
        self._lock_handle = handle

    def unlock(self) -> None:
        handle = getattr(self, "_lock_handle", None)
        if handle is not None:
            handle.close()  # closing the file releases the lock
            self._lock_handle = None

    def start_log(self) -> logging.Handler | None:
        """Send EdnaML's and Lightning's log records to log.txt."""
        if not self.writer:
            return None
        handler = _LogFile(self.path / "log.txt", encoding="utf-8")
        handler.addFilter(ScrubFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for name in ("ednaml", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)
        return handler

    @staticmethod
    def stop_log(handler: logging.Handler | None) -> None:
        if handler is None:
            return
        for name in ("ednaml", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).removeHandler(handler)
        handler.close()


class _LogFile(logging.FileHandler):
    """log.txt, appended to and never through a link."""

    def _open(self) -> IO[str]:
        return open_no_link(Path(self.baseFilename), self.mode, encoding=self.encoding, errors=self.errors)


class RunBusy(Exception):
    """The run folder is locked by another process running the same run."""


def held(path: Path) -> bool | None:
    """Whether a process holds the run folder's lock (None where that cannot be told)."""
    lock = path / LOCK_FILE
    if fcntl is None or lock.is_symlink():  # a lock file EdnaML made is never a link: nobody holds it
        return None if fcntl is None else False
    try:
        handle = open_no_link(lock, "r")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
    return False


def lower_is_better(metric: str) -> bool:
    """Losses and errors are better lower; everything else (accuracy, F1, ...) higher."""
    return any(word in metric.lower() for word in ("loss", "error", "mse", "mae"))


def better(metric: str, new: float, old: float) -> bool:
    return new < old if lower_is_better(metric) else new > old


def plain_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in sorted(metrics.items())}


def read_run_file(path: Path, limit: int = MAX_RUN_FILE_BYTES) -> bytes:
    """The bytes of a file of a run folder. Every read of a run folder goes through here: a run folder may come
    from someone else, so a file that is not a regular file (a link to /dev/zero, a pipe, a folder) or is
    over `limit` bytes is refused, naming it, before it is read."""
    irregular = RunFolderError(f"{str(path)!r} is not a regular file; a run folder holds only the files EdnaML writes")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a device or a pipe is never opened
            raise irregular
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # replaced since
                raise irregular
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise RunFolderError(f"{str(path)!r} does not exist") from None
    except OSError as err:
        raise RunFolderError(f"{str(path)!r} cannot be read: {err.strerror or err}") from None
    if len(data) > limit:
        raise RunFolderError(f"{str(path)!r} is over {limit:,} bytes; EdnaML reads no larger file of a run folder")
    return data


def read_run_text(path: Path, limit: int = MAX_RUN_FILE_BYTES) -> str:
    """A text file of a run folder (read_run_file), as UTF-8."""
    try:
        return read_run_file(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise RunFolderError(
            f"{str(path)!r} is not UTF-8 text; EdnaML writes every text file of a run folder as UTF-8"
        ) from None


def read_run_csv(path: Path) -> csv.DictReader:
    """A CSV file of a run folder (read_run_file), its rows as dicts (`fieldnames` its header)."""
    return csv.DictReader(io.StringIO(read_run_text(path), newline=""))


def read_run_json(path: Path) -> Any:
    """A JSON file of a run folder (read_run_file); one that is not JSON is refused, naming it."""
    try:
        return json.loads(read_run_text(path))
    except (ValueError, RecursionError) as err:  # RecursionError: JSON nested deeper than Python's stack
        raise RunFolderError(f"{str(path)!r} is not the JSON EdnaML writes: {err}") from None


def load_yaml(path: Path) -> dict[str, Any]:
    """A run folder's config.yaml, read as a config file is: at most MAX_CONFIG_BYTES, aliases and nesting
    capped, errors naming it."""
    from ednaml.config.load import MAX_CONFIG_BYTES, parse_config

    return parse_config(read_run_file(path, MAX_CONFIG_BYTES), str(path))
