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

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.message}" if self.path else self.message


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
