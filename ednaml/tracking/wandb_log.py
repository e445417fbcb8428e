"""Read a run-<id>.wandb transaction log (LevelDB-style record framing) with wandb's own protobuf classes.

A resumed run uses it to find which of its committed metric rows never reached W&B (a killed process
loses what W&B had not yet flushed) and sends them again; `ednaml sync` reads it for the files an upload
would send and writes it again with a moved run folder's artifact paths.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
RECORD_HEADER = 7  # crc32 (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
MAX_LOG_BYTES = 2_000_000_000  # the log holds every logged row: larger than the other files of a run folder


def payloads(path: Path) -> tuple[bytes, list[bytes]]:
    """The log's 7-byte header and each complete record's bytes, in order; a torn last record (a killed
    writer) ends the list."""
    from ednaml.tracking.run_folder import read_run_file

    data = read_run_file(path, MAX_LOG_BYTES)
    if len(data) < 7:
        return data, []
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B transaction log")
    pos, pending, complete = 7, b"", []
    while pos + RECORD_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + RECORD_HEADER])
        chunk = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
        if len(chunk) < length:
            break
        pos += RECORD_HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            complete.append(pending)
    return data[:7], complete


def parse(payload: bytes) -> Any:
    """One record's bytes as wandb's Record message; None for a torn record."""
    from wandb.proto import wandb_internal_pb2

    record = wandb_internal_pb2.Record()
    try:
        record.ParseFromString(payload)
    except Exception:  # noqa: BLE001 - a torn record
        return None
    return record


def records(path: Path) -> Iterator[Any]:
    """Every record of the log, in order; a torn last record (a killed writer) ends the iteration."""
    for payload in payloads(path)[1]:
        record = parse(payload)
        if record is None:
            return
        yield record


def write_log(path: Path, header: bytes, items: list[bytes]) -> None:
    """A transaction log of these records, in W&B's framing (32 KiB blocks; a record that does not fit
    is split; each fragment's CRC-32 covers its type byte and bytes), written beside `path` and renamed
    over it, so a reader sees the old log or the new one, never half of one."""
    out = bytearray(header)
    for payload in items:
        first = True
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < RECORD_HEADER:
                out += bytes(left)
                left = BLOCK
            fragment, payload = payload[: left - RECORD_HEADER], payload[left - RECORD_HEADER :]
            kind = (FULL if not payload else FIRST) if first else (LAST if not payload else MIDDLE)
            out += struct.pack(
                "<IHB", zlib.crc32(fragment, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF, len(fragment), kind
            )
            out += fragment
            first = False
            if not payload:
                break
    handle, staging = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}."
    )  # a new file: no link planted there is followed
    try:
        with os.fdopen(handle, "wb") as out_file:
            out_file.write(out)
            out_file.flush()
            os.fsync(out_file.fileno())
        os.replace(staging, path)
    except BaseException:
        os.unlink(staging)
        raise


def run_config(path: Path) -> dict[str, Any]:
    """The run's config as W&B stores it: {key: value}."""
    config: dict[str, Any] = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        updates = record.config.update if kind == "config" else record.run.config.update if kind == "run" else []
        for item in updates:
            config[item.key] = json.loads(item.value_json)
    return config


def run_info(path: Path) -> dict[str, Any]:
    """Where the run sits in W&B, as its run record says: project, group, job type, name, tags, notes."""
    info: dict[str, Any] = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            run = record.run
            info = {
                "project": run.project,
                "group": run.run_group,
                "job_type": run.job_type,
                "name": run.display_name,
                "tags": list(run.tags),
                "notes": run.notes,
                "id": run.run_id,
            }
    return info


REMOVED = object()  # a summary key's value once W&B was told to remove it


def _summary_changes(path: Path) -> Iterator[tuple[list[str], Any]]:
    """Each change of the run's summary in order: the key's path (one part for a flat key such as
    'test/loss', several for a nested value) and its new value, or REMOVED."""
    for record in records(path):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                yield [item.key] if item.key else list(item.nested_key), json.loads(item.value_json)
            for item in record.summary.remove:
                yield [item.key] if item.key else list(item.nested_key), REMOVED


def summary(path: Path) -> dict[str, Any]:
    """The run's summary as W&B holds it at the end: {key: value} (nested keys joined with '/')."""
    values: dict[str, Any] = {}
    for key, value in _summary_changes(path):
        if value is REMOVED:
            values.pop("/".join(key), None)
        else:
            values["/".join(key)] = value
    return values


def summary_tree(path: Path) -> dict[str, Any]:
    """The run's summary at the end as W&B writes it to wandb-summary.json: nested values as nested mappings."""
    tree: dict[str, Any] = {}
    for key, value in _summary_changes(path):
        *parents, last = key
        node = tree
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if value is REMOVED:
            node.pop(last, None)
        else:
            node[last] = value
    return tree


def history(path: Path) -> list[dict[str, Any]]:
    """The metric rows W&B holds, as {key: value} (with _step, _runtime, trainer/global_step, ...)."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    return rows


def missing_rows(metrics_rows: list[dict[str, Any]], logs: list[Path]) -> list[tuple[int, dict[str, Any]]]:
    """Rows of metrics.csv (step + values) that none of the W&B logs holds."""
    seen = set()
    for log in logs:
        for row in history(log):
            step = row.get("trainer/global_step")
            seen.add((step, frozenset(k for k in row if not k.startswith("_") and k != "trainer/global_step")))
    missing = []
    for row in metrics_rows:
        values = {k: float(v) for k, v in row.items() if k != "step" and v not in ("", None)}
        step = int(row["step"]) if row.get("step") not in ("", None) else None
        if values and (step, frozenset(values)) not in seen:
            missing.append((step, values))
    return missing
