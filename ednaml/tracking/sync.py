"""What `ednaml sync` sends of a run folder, checked before anything is sent.

W&B's offline log names each artifact file by the absolute path it was staged at. A run folder that was
moved or copied to another machine still holds those files (EdnaML stages them inside the run folder),
so its log is pointed at them again. A run folder may also come from someone else: every file the log
would have `wandb sync` upload must lie inside the run folder, or nothing is sent (`--trust` sends a run
whose W&B staging was pointed outside it on purpose, with WANDB_DATA_DIR).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ednaml.errors import RunFolderError
from ednaml.tracking import wandb_log

STAGED = "/wandb/staging/"


@dataclass
class OfflineRun:
    """One process's offline W&B run in a run folder, and what syncing it sends."""

    directory: Path
    log: Path
    files: list[Path]  # what it sends of its own folder: the log and files/ (not the debug logs)
    artifacts: list[Path] = field(default_factory=list)  # the artifact files it uploads, where they are now
    moved: dict[str, str] = field(default_factory=dict)  # a recorded artifact path -> its file in this run folder
    problems: list[str] = field(default_factory=list)


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root)


def _artifact_file(recorded: str, root: Path, trust: bool, offline: OfflineRun) -> None:
    """Where one artifact file is now: this run folder's own staged copy (also when the log names the old
    place of a moved run folder), else the recorded path where it is inside the run folder or trusted."""
    where = recorded.rfind(STAGED)
    if where >= 0:
        here = root / "wandb" / "staging" / recorded[where + len(STAGED) :]
        if here.is_file() and _inside(here, root):
            offline.artifacts.append(here)
            if str(here) != recorded:
                offline.moved[recorded] = str(here)
            return
    path = Path(recorded)
    if not path.is_file():
        offline.problems.append(f"artifact file {recorded} is missing (and not staged in this run folder)")
    elif not trust and not _inside(path, root):
        offline.problems.append(f"artifact file {recorded} is outside the run folder: not sent (--trust sends it)")
    else:
        offline.artifacts.append(path)


def _offline_run(directory: Path, root: Path, trust: bool) -> OfflineRun:
    logs = sorted(p for p in directory.glob("*.wandb") if p.is_file() or p.is_symlink())
    files = sorted(p for p in (directory / "files").rglob("*") if p.is_file() or p.is_symlink())  # media, tables
    offline = OfflineRun(directory, logs[0] if logs else directory / "missing.wandb", logs + files)
    offline.problems += [f"{p} leads outside the run folder" for p in offline.files if not _inside(p, root)]
    if len(logs) != 1 or not _inside(logs[0], root):  # only the run folder's own log is read
        offline.problems += [] if len(logs) == 1 else [f"{directory} holds {len(logs)} .wandb logs, not one"]
        return offline
    try:
        items = wandb_log.payloads(offline.log)[1]
    except (ValueError, RunFolderError) as error:
        offline.problems.append(str(error))
        return offline
    for i, payload in enumerate(items):
        record = wandb_log.parse(payload)
        if record is None:
            if i < len(items) - 1:  # only the last record may be torn (a killed writer); nothing hides behind it
                offline.problems.append(f"record {i} of {offline.log.name} cannot be read")
            continue
        _check_record(record, directory, root, trust, offline)
    return offline


def _check_record(record: Any, directory: Path, root: Path, trust: bool, offline: OfflineRun) -> None:
    """The files a record makes `wandb sync` read: artifact entries (in an artifact record, or a request to
    log one), the offline run's files/, and anything else that names a local path, which is refused."""
    kind = record.WhichOneof("record_type")
    artifact = record.artifact if kind == "artifact" else None
    if kind == "request" and record.request.WhichOneof("request_type") == "log_artifact":
        artifact = record.request.log_artifact.artifact
    if artifact is not None:
        if artifact.manifest.manifest_file_path:
            offline.problems.append(
                f"an artifact manifest file {artifact.manifest.manifest_file_path} is named: not sent "
                "(EdnaML's runs hold their manifests in the log)"
            )
        for entry in artifact.manifest.contents:
            if entry.local_path:
                _artifact_file(entry.local_path, root, trust, offline)
    elif kind == "files":
        for item in record.files.files:
            if not _inside(directory / "files" / item.path, root):
                offline.problems.append(f"file {item.path!r} of the W&B log leads outside the run folder")
    elif kind == "tbrecord":
        offline.problems.append(
            f"a TensorBoard folder {record.tbrecord.log_dir} is named: not sent (EdnaML's runs have none)"
        )


def sync_plan(run: Path, trust: bool = False) -> list[OfflineRun]:
    """Each offline W&B run of a run folder (one per process that ran it: a resumed run has several), with
    the files syncing it sends (absolute paths, symbolic links resolved in the run folder's own path) and
    the problems that stop it."""
    root = Path(run).resolve()
    directories = sorted(p for p in root.glob("wandb/offline-run-*") if p.is_dir())
    plans = []
    for directory in directories:
        if not _inside(directory, root):
            plans.append(OfflineRun(directory, directory, [], problems=[f"{directory} leads outside the run folder"]))
        else:
            plans.append(_offline_run(directory, root, trust))
    return plans


def relocate(offline: OfflineRun) -> int:
    """Point the log's artifact entries at this run folder's copies (see OfflineRun.moved); the other
    records are kept byte for byte. Returns how many entries changed."""
    if not offline.moved:
        return 0
    header, items = wandb_log.payloads(offline.log)
    changed = 0
    for i, payload in enumerate(items):
        record = wandb_log.parse(payload)
        if record is None or record.WhichOneof("record_type") != "artifact":
            continue
        entries = [entry for entry in record.artifact.manifest.contents if entry.local_path in offline.moved]
        for entry in entries:
            entry.local_path = offline.moved[entry.local_path]
        if entries:
            items[i], changed = record.SerializeToString(), changed + len(entries)
    wandb_log.write_log(offline.log, header, items)
    return changed
