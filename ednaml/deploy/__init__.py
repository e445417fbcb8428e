"""Deployment: a trained model's outputs as one record per input (DEPLOYMENT.DEPLOY), written to CSV,
JSON Lines or Parquet with a manifest naming the checkpoint, config and data that produced them.

A deployment is registered as kind "deployment"; the built-in is in `ednaml.deploy.classification`."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ednaml.config.schema import OUTPUT_FORMATS

if TYPE_CHECKING:
    import torch

FORMATS = {f".{name}": name for name in OUTPUT_FORMATS}


@dataclass
class Predicted:
    """One output of one batch: class probabilities, and the targets where the data has labels."""

    probabilities: torch.Tensor  # (batch, classes)
    target: torch.Tensor | None
    classes: Sequence[str]


class Deploy:
    """The base of DEPLOYMENT.DEPLOY components. `records` turns one batch's scored outputs into one plain
    record (a dict of strings, numbers and lists) per input; DEPLOYMENT.DEPLOYMENT_ARGS are its kwargs."""

    def records(self, outputs: dict[str, Predicted]) -> list[dict[str, Any]]:
        raise NotImplementedError


def output_format(path: str | Path, default: str = "csv") -> str:
    """The format a predictions file is written in, by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix and suffix not in FORMATS:
        raise ValueError(f"--output {str(path)!r}: write predictions to a .csv, .jsonl or .parquet file, not {suffix}")
    return FORMATS.get(suffix, default)


def write_records(path: Path, records: list[dict[str, Any]], kind: str) -> list[str]:
    """Write `records` (in order) to `path` as `kind`; returns the columns. Lists and mappings (top_k) are
    JSON in a CSV cell."""
    columns = list(dict.fromkeys(key for record in records for key in record))
    if kind == "jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    elif kind == "parquet":
        from ednaml.utils import require

        pyarrow = require("pyarrow", "parquet")
        table = pyarrow.Table.from_pylist(records) if records else pyarrow.table({c: [] for c in columns})
        require("pyarrow.parquet", "parquet").write_table(table, path)
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for record in records:
                writer.writerow(
                    [
                        json.dumps(v) if isinstance(v, (list, dict)) else "" if v is None else v
                        for v in (record.get(c) for c in columns)
                    ]
                )
    return columns


def manifest_path(output: Path) -> Path:
    """predictions.csv -> predictions.manifest.json, beside it."""
    return output.with_name(f"{output.stem}.manifest.json")
