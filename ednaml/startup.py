"""How an `ednaml` process starts: with the code it was told to import, never a file that happens to lie in
the working directory. Imports nothing Python has not loaded before any script (only sys and os)."""

from __future__ import annotations

import os
import sys


def started_as_module() -> bool:
    """Whether this is `python -m ednaml` (or `-m ednaml.X`) starting: while Python imports the package to
    find its __main__, sys.argv[0] is "-m", and the word before the arguments names the module."""
    given = getattr(sys, "orig_argv", [])
    if sys.argv[:1] != ["-m"] or len(given) <= len(sys.argv):
        return False
    word = given[-len(sys.argv)]  # `ednaml`, or `-mednaml` / `-Bmednaml` written as one word
    name = word.partition("m")[2] if word.startswith("-") else word
    return name == "ednaml" or name.startswith("ednaml.")


def drop_working_directory() -> None:
    """Take out the entry `python -m` puts first on sys.path, the working directory, so that a planted
    `optuna.py`, `yaml.py` or `inspect.py` there is not imported in place of the real one. The working
    directory stays where it was asked for: PYTHONPATH naming it adds an entry of its own."""
    if sys.flags.safe_path or not sys.path:  # python -P / PYTHONSAFEPATH: nothing was put there
        return
    try:
        here = os.getcwd()
    except OSError:  # the working directory is gone: nothing can be imported from it
        here = None
    if sys.path[0] in ("", here):
        del sys.path[0]


def ednaml_command(*args: str) -> list[str]:
    """`python -m ednaml ARGS` for a child process (a sweep's trial) that imports the same EdnaML as this
    one: with -P (Python 3.11+) the child does not look in the working directory even for `ednaml`, unless
    this process's EdnaML was found there."""
    found_in = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder holding this ednaml package
    try:
        from_here = os.path.samefile(found_in, os.getcwd())
    except OSError:
        from_here = False
    safe = ["-P"] if sys.version_info >= (3, 11) and not from_here else []
    return [sys.executable, *safe, "-m", "ednaml", *args]
