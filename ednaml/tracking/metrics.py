"""metrics.csv: one row per logged step, the header the union of every metric seen (adapters/loggers.py
writes it, with W&B's history, up to the last checkpoint)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ednaml.tracking.run_folder import open_no_link, read_run_csv, write_atomic


class MetricsCSV:
    """metrics.csv: one row per logged (step, metrics); the header is the union of every metric seen."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.keys: list[str] = ["step"]
        if path.exists():  # a resumed run continues its own file
            reader = read_run_csv(path)
            self.keys = list(reader.fieldnames or ["step"])
            self.rows = [dict(row) for row in reader]

    def add(self, rows: list[dict[str, Any]]) -> None:
        new_keys = sorted({k for row in rows for k in row} - set(self.keys))
        self.rows += rows
        if new_keys or not self.path.exists():
            self.keys += new_keys
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=self.keys, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)
            write_atomic(self.path, buffer.getvalue())
            return
        with open_no_link(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.keys, lineterminator="\n").writerows(rows)
