"""Small helpers shared by the pipeline steps."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from types import ModuleType

from ednaml.errors import MissingExtra

_EXTRA_HINT = {
    "vision": "pip install 'ednaml[vision]'",
    "text": "pip install 'ednaml[text]'",
    "video": "pip install 'ednaml[video]'",
    "hf": "pip install 'ednaml[hf]'",
    "parquet": "pip install 'ednaml[parquet]'",
    "onnx": "pip install 'ednaml[onnx]'",
    "sweep": "pip install 'ednaml[sweep]'",
    "timm": "pip install 'ednaml[timm]'",
    "datasets": "pip install 'ednaml[datasets]'",
}


def require(module: str, extra: str) -> ModuleType:
    """Import an optional package, or fail with a one-line install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        hint = _EXTRA_HINT.get(extra, f"pip install 'ednaml[{extra}]'")
        raise MissingExtra(f"{module.split('.')[0]} is needed here ({err}); install it with: {hint}") from None


def text_table(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Rows of cells as aligned columns, two spaces apart (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    return "\n".join(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def is_rank_zero() -> bool:
    """True in the process that writes the run folder: global rank 0, or the only process."""
    rank_vars = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "LOCAL_RANK", "NODE_RANK")
    return all(os.environ.get(var, "0") == "0" for var in rank_vars)
