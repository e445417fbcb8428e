"""One rule for relative paths in a config: a path is relative to the config file that set it, and to the
working directory when given on the command line (or by no file: a default, a checkpoint's config). Every
path-valued key goes through `anchor`, which writes the absolute path into the resolved config.

Path-valued keys are the schema keys below and every component argument annotated `Location` (a reader's
`data_folder`, `manifest`, `train_file`, a tokenizer file, ...): a user's component marks its own the same way.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

PATH_MARK = "a path: relative to the config file that sets it, else to the working directory"
Location = Annotated[str, PATH_MARK]  # the type of a component argument that names a file or folder

# Schema keys that hold paths (IMPORTS: its entries that are files, not module names).
SCHEMA_PATHS: tuple[tuple[str, ...], ...] = (
    ("EXECUTION", "IMPORTS"),
    ("MODEL", "WEIGHTS"),
    ("SAVE", "CHECKPOINT_DIRECTORY"),
    ("ckpt_path",),
)


def location_arguments(obj: Any) -> list[str]:
    """The arguments of a component (a class or function) annotated `Location`, alone or in a union."""
    target = obj.__init__ if isinstance(obj, type) else obj
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001 - a hint that does not evaluate marks nothing
        return []

    def marked(hint: Any) -> bool:
        if typing.get_origin(hint) is Annotated:
            return PATH_MARK in typing.get_args(hint)[1:]
        return any(marked(arg) for arg in typing.get_args(hint))

    return [name for name, hint in hints.items() if name != "return" and marked(hint)]


def _is_path(value: Any, key: tuple) -> bool:
    """A relative path to anchor: not absolute, not `~`, not a URL; in IMPORTS a file, not a module name."""
    if not isinstance(value, str) or not value or os.path.isabs(value) or value.startswith("~") or "://" in value:
        return False
    return key != ("EXECUTION", "IMPORTS") or value.endswith(".py") or "/" in value or os.sep in value


def _origin(path: tuple, origins: dict[tuple, str]) -> str | None:
    """The file or flag that set a key (a TRAIN_/TEST_TRANSFORMATION key may have been written in TRANSFORMATION)."""
    candidates = [path]
    if path[:1] in (("TRAIN_TRANSFORMATION",), ("TEST_TRANSFORMATION",)):
        candidates.append(("TRANSFORMATION",) + path[1:])
    for candidate in candidates:
        for end in range(len(candidate), 0, -1):
            if candidate[:end] in origins:
                return origins[candidate[:end]]
    return None


def anchor(
    config: dict[str, Any],
    keys: Iterable[tuple],
    origins: dict[tuple, str],
    files: Iterable[str | os.PathLike],
    warn: Callable[[str], None],
) -> None:
    """Each relative path at `keys` (a string, or a list of them) made absolute: against the folder of the
    config file in `files` that set it, else the working directory. Where a file's reading does not exist
    but the working directory's does (a config written when data paths were read from there), that one is
    kept, with a warning naming both."""
    from ednaml.config.values import get_path

    given = {str(f): Path(f).parent for f in files}
    cwd = Path.cwd()
    for key in keys:
        try:
            value = get_path(config, list(key))
        except (KeyError, IndexError, TypeError):
            continue
        values = value if isinstance(value, list) else [value]
        if not any(_is_path(v, key) for v in values):
            continue
        base = given.get(str(_origin(key, origins)), cwd)
        anchored = [_anchored(v, key, base, cwd, warn) if _is_path(v, key) else v for v in values]
        parent = get_path(config, list(key[:-1])) if len(key) > 1 else config
        parent[key[-1]] = anchored if isinstance(value, list) else anchored[0]


def _anchored(value: str, key: tuple, base: Path, cwd: Path, warn: Callable[[str], None]) -> str:
    read = Path(os.path.abspath(base / value))
    if base != cwd and not read.exists() and (cwd / value).exists():
        from ednaml.errors import format_path

        old = Path(os.path.abspath(cwd / value))
        warn(
            f"{format_path(key)}: {value!r} is read from the working directory ({old}): a relative path is "
            f"relative to the config file that sets it ({read}, which does not exist); move the data there or "
            "write the path from the file"
        )
        return str(old)
    return str(read)
