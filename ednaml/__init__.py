"""EdnaML: one config describes a whole experiment; Lightning runs it; every choice is recorded."""

import sys

if sys.argv[:1] == ["-m"]:  # `python -m ednaml`: before anything else is imported, not from the working directory
    from ednaml.startup import drop_working_directory, started_as_module

    if started_as_module():
        drop_working_directory()

from ednaml.registry import registrar as register
from ednaml.version import __version__

__all__ = ["EdnaML", "register", "__version__"]


def __getattr__(name: str):
    if name == "EdnaML":  # lazy: importing ednaml must not import torch or lightning
        from ednaml.api import EdnaML

        return EdnaML
    raise AttributeError(f"module 'ednaml' has no attribute {name!r}")
