"""What a user can get wrong, and how each ends on the command line: a message and an exit code, never a
traceback. A config problem names its key path, the bad value and what would be right."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

Path = tuple[Any, ...]


def format_path(path: Sequence[Any]) -> str:
    """('LOSS', 1, 'LOSSES', 0) -> 'LOSS[1].LOSSES[0]'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<config>"


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str
    origin: str | None = None  # the file or command-line flag the value came from

    def __str__(self) -> str:
        text = f"{format_path(self.path)}: {self.message}" if self.path else self.message
        if not self.origin:
            return text
        return text + (f" (set by {self.origin})" if self.origin.startswith(("-", "~")) else f" (set in {self.origin})")


class WrittenAs(str):
    """The origin (file or flag) of a key whose value was written at another key, its linked twin
    (`trainer.max_epochs` for EXECUTION.EPOCHS): a problem with the value is reported at the key written."""

    def __new__(cls, origin: str, path: Sequence[Any]) -> WrittenAs:
        made = super().__new__(cls, origin)
        made.path = tuple(path)
        return made

    def __reduce__(self) -> tuple:
        return WrittenAs, (str(self), self.path)


class OnlyOnTheCommandLine(str):
    """The origin (a flag) of a top-level section that no config file has: the command line named it alone."""


def locate(problems: Sequence[Problem], origins: dict[tuple, str]) -> list[Problem]:
    """Each problem with the file or flag its value came from, at the key that was written: a linked key's
    value written at its twin is reported at the twin (see WrittenAs); a TRAIN_/TEST_TRANSFORMATION value
    that was written in TRANSFORMATION is reported there, once."""

    def origin(path: Path) -> str | None:
        for end in range(len(path), 0, -1):
            if path[:end] in origins:
                return origins[path[:end]]
        return None

    located: dict[tuple, Problem] = {}
    for problem in problems:
        path = problem.path
        if path[:1] in (("TRAIN_TRANSFORMATION",), ("TEST_TRANSFORMATION",)) and path not in origins:
            shared = ("TRANSFORMATION",) + tuple(path[1:])
            if origin(shared) or not origin(path):
                path = shared
        where = problem.origin or origin(path)
        if isinstance(origins.get(path), WrittenAs):
            path = origins[path].path
        found = Problem(path, problem.message, str(where) if where is not None else None)
        located.setdefault((found.path, found.message), found)
    return list(located.values())


class UsageError(Exception):
    """A command line that does not parse (an unknown command, option or stray word)."""

    exit_code = 2


class ConfigError(Exception):
    """One or more config problems, reported together."""

    exit_code = 2

    def __init__(self, problems: Sequence[Problem] | str, source: str | None = None):
        if isinstance(problems, str):
            problems = [Problem((), problems)]
        self.problems = list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        where = f" in {self.source}" if self.source else ""
        if len(self.problems) == 1:
            return f"config error{where}: {self.problems[0]}"
        lines = [f"{len(self.problems)} config errors{where}:"]
        lines += [f"  {i}. {p}" for i, p in enumerate(self.problems, 1)]
        return "\n".join(lines)


def did_you_mean(
    name: Any, options: Iterable[str], otherwise: str = "", cutoff: float = 0.6, form: Callable[[str], str] = repr
) -> str:
    """ "; did you mean 'X'?" for the option closest to `name`, else `otherwise`."""
    close = difflib.get_close_matches(str(name), list(options), n=1, cutoff=cutoff)
    return f"; did you mean {form(close[0])}?" if close else otherwise


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class BuildError(Exception):
    """A config that validated but whose data or components could not be built (missing folder, ...)."""

    exit_code = 2


class DataError(ValueError):
    """Problems with the data a config points at (missing folder, unknown label, unreadable file, ...): the
    first at `key`, `message`; every one, in order, in `problems` as (key, message)."""

    exit_code = 2

    def __init__(self, key: str, message: str, *more: tuple[str, str]):
        self.key, self.message = key, message
        self.problems = [(key, message), *more]
        if not more:
            super().__init__(f"{key}: {message}")
        else:
            super().__init__(
                "\n".join(
                    [
                        f"{len(self.problems)} data errors:",
                        *(f"  {i}. {k}: {m}" for i, (k, m) in enumerate(self.problems, 1)),
                    ]
                )
            )


class DataProblems:
    """The data problems a reader finds, one check after another, raised together as one DataError: a user
    fixes them all in one go, not one per try."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, key: str, message: str) -> None:
        self.found.append((key, message))

    @contextlib.contextmanager
    def collected(self) -> Iterator[None]:
        """A check that raises DataError: its problems are added, and the reader goes on to the next check."""
        try:
            yield
        except DataError as err:
            self.found += err.problems

    def raise_any(self) -> None:
        if self.found:
            raise DataError(*self.found[0], *self.found[1:])


class RunFolderError(Exception):
    """A file of a run folder that is not read: too large, not a regular file (a link to a device, a pipe) or
    not UTF-8 text. A run folder may come from someone else."""

    exit_code = 2


class MissingExtra(ImportError):
    """An optional package that a component needs is not installed."""

    exit_code = 2


class RunStopped(Exception):
    """A run that stopped for a reason the user should read, not a traceback (the CLI prints the message)."""

    exit_code = 1


class Interrupted(RunStopped):
    """SIGTERM or Ctrl-C: the batch finished, last.ckpt was saved, the run can be resumed."""

    def __init__(self, signal_name: str, step: int, checkpoint: str, run_id: str):
        self.signal_name = signal_name
        self.exit_code = 143 if signal_name == "SIGTERM" else 130
        super().__init__(
            f"{signal_name} at step {step}: saved {checkpoint}; continue with `ednaml fit --resume {run_id}`"
        )


class NonFiniteLoss(RunStopped):
    """A NaN or infinite loss: the run stops before the bad step changes any weight."""


class RunFolderLink(RunFolderError):
    """A run folder holds a symbolic link that a write could follow out of it (or onto another of its files)."""

    def __init__(self, folder: Any, links: list[tuple[str, str]]):
        self.folder, self.links = folder, links
        said = "; ".join(f"{name} is a symbolic link to {target}" for name, target in links)
        super().__init__(
            f"run folder {folder}: {said}. EdnaML writes a run's files only inside its folder and never "
            f"through a link: replace {'it' if len(links) == 1 else 'each'} with the file or folder itself, "
            "or remove it"
        )


# Ended by the command line with their message and exit code; anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, BuildError, DataError, RunFolderError, MissingExtra, RunStopped)
