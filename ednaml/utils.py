"""Small helpers shared by the pipeline steps."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from ednaml.errors import MissingExtra

_EXTRA_HINT = {
    "vision": "pip install 'ednaml[vision]'",
    "text": "pip install 'ednaml[text]'",
    "video": "pip install 'ednaml[video]'",
    "hf": "pip install 'ednaml[hf]'",
}


def require(module: str, extra: str) -> ModuleType:
    """Import an optional package, or fail with a one-line install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        hint = _EXTRA_HINT.get(extra, f"pip install 'ednaml[{extra}]'")
        raise MissingExtra(f"{module.split('.')[0]} is needed here ({err}); install it with: {hint}") from None


def is_rank_zero() -> bool:
    """True in the process that writes the run folder: global rank 0, or the only process."""
    rank_vars = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "LOCAL_RANK", "NODE_RANK")
    return all(os.environ.get(var, "0") == "0" for var in rank_vars)
