"""EdnaML: one config describes a whole experiment; Lightning runs it; every choice is recorded."""

from ednaml.registry import registrar as register
from ednaml.version import __version__

__all__ = ["EdnaML", "register", "__version__"]


def __getattr__(name: str):
    if name == "EdnaML":  # lazy: importing ednaml must not import torch or lightning
        from ednaml.api import EdnaML

        return EdnaML
    raise AttributeError(f"module 'ednaml' has no attribute {name!r}")
