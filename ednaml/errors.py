"""What a user can get wrong, and how each ends on the command line: a message and an exit code, never a
traceback. A config problem names its key path, the bad value and what would be right."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

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


def locate(problems: Sequence[Problem], origins: dict[tuple, str]) -> list[Problem]:
    """Each problem with the file or flag its value came from; a TRAIN_/TEST_TRANSFORMATION value that was
    written in TRANSFORMATION is reported there, once."""
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
        found = Problem(path, problem.message, problem.origin or origin(path))
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


def did_you_mean(name: Any, options: Iterable[str], otherwise: str = "", cutoff: float = 0.6,
                 form: Callable[[str], str] = repr) -> str:
    """"; did you mean 'X'?" for the option closest to `name`, else `otherwise`."""
    close = difflib.get_close_matches(str(name), list(options), n=1, cutoff=cutoff)
    return f"; did you mean {form(close[0])}?" if close else otherwise


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class BuildError(Exception):
    """A config that validated but whose data or components could not be built (missing folder, ...)."""

    exit_code = 2


class DataError(ValueError):
    """A problem with the data a config points at (missing folder, unknown label, unreadable file, ...)."""

    exit_code = 2

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


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
        super().__init__(f"{signal_name} at step {step}: saved {checkpoint}; continue with `ednaml fit --resume {run_id}`")


class NonFiniteLoss(RunStopped):
    """A NaN or infinite loss: the run stops before the bad step changes any weight."""


class RunFolderLink(RunFolderError):
    """A run folder holds a symbolic link that a write could follow out of it (or onto another of its files)."""

    def __init__(self, folder: Any, links: list[tuple[str, str]]):
        self.folder, self.links = folder, links
        said = "; ".join(f"{name} is a symbolic link to {target}" for name, target in links)
        super().__init__(f"run folder {folder}: {said}. EdnaML writes a run's files only inside its folder and never "
                         f"through a link: replace {'it' if len(links) == 1 else 'each'} with the file or folder itself, or remove it")


# Ended by the command line with their message and exit code; anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, BuildError, DataError, RunFolderError, MissingExtra, RunStopped)
