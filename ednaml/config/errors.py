"""Config problems for people: a key path, the bad value, what would be right."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

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


class ConfigError(Exception):
    """One or more config problems, reported together."""

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


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
