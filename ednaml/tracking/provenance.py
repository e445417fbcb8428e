"""provenance.json: everything about a run besides its config — code, versions, machine, data, components."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ednaml import kinds, registry
from ednaml.config.schema import component_paths
from ednaml.errors import format_path
from ednaml.version import __version__

HASH_CONTENT_UP_TO = 256 * 1024 * 1024  # bytes of data files hashed by content; larger sets by size and mtime
LISTED_FILES = 1000


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def versions() -> dict[str, Any]:
    """ednaml, torch, lightning and Python, and every installed distribution (a list and its hash)."""
    packages = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]})
    found = {}
    for name in ("torch", "lightning", "torchvision", "torchmetrics", "wandb"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {
        "ednaml": __version__,
        "python": platform.python_version(),
        **found,
        "packages_sha256": sha256("\n".join(packages).encode()),
        "packages": packages,
    }


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(cwd: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(commit, branch, dirty) of the working tree the run was started from, and its diff when dirty."""
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return None, None
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd) or ""
    diff = _git(["diff", "HEAD"], cwd) if status else None
    state = {
        "commit": commit,
        "branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd),
        "dirty": bool(status),
        "root": _git(["rev-parse", "--show-toplevel"], cwd),
    }
    return state, diff


# The environment variables that set how many threads the math libraries use: they change a run's numbers.
THREAD_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def machine() -> dict[str, Any]:
    import torch

    from ednaml import allocator

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "thread_settings": {k: v for k in THREAD_SETTINGS if (v := os.environ.get(k)) is not None},
        "cuda": torch.version.cuda,
        "accelerators": [],
        "allocator": allocator.describe(),
    }
    if torch.cuda.is_available():
        info["accelerators"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _identity(item: Any, position: int, stored: type) -> Any:
    """What names a sample in the data's hash: its path or text, its row in a file left on disk, else its position."""
    if isinstance(item, (str, Path)):
        return str(item)
    return f"row {item.index}" if isinstance(item, stored) else position


def data_fingerprint(crawl: Any) -> dict[str, Any]:
    """What the crawler found: samples per split, label classes, the files with sizes, and a hash."""
    from ednaml.data.base import Stored

    files = sorted(set(crawl.files))
    sizes = {f: Path(f).stat().st_size for f in files if Path(f).is_file()}
    total = sum(sizes.values())
    digest = hashlib.sha256()
    by_content = total <= HASH_CONTENT_UP_TO
    for f in files:
        digest.update(f.encode())
        if f in sizes:
            if by_content:
                digest.update(Path(f).read_bytes())
            else:
                digest.update(f"{sizes[f]}:{Path(f).stat().st_mtime_ns}".encode())
    for split, samples in sorted(crawl.splits.items()):  # which sample is in which split, and its labels
        digest.update(split.encode())
        digest.update(repr([(_identity(x, i, Stored), y) for i, (x, y) in enumerate(samples)]).encode())
    return {
        "samples": {split: len(samples) for split, samples in crawl.splits.items()},
        "labels": {name: len(classes) for name, classes in crawl.labels.items()},
        "files": len(files),
        "bytes": total,
        "sha256": digest.hexdigest(),
        "hashed": "content" if by_content else "size and mtime",
        "file_list": [{"path": f, "bytes": sizes.get(f)} for f in files[:LISTED_FILES]],
    }


def describe_component(obj: Any) -> dict[str, Any]:
    """The class a name resolved to, its module file and a hash of its source."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        source = None
    try:
        file = inspect.getsourcefile(obj)
    except TypeError:
        file = None
    if (
        obj.__module__.startswith(registry.USER_MODULE) and file
    ):  # a user's file: named by the file, whatever its module
        return {
            "class": f"{Path(file).name}:{obj.__qualname__}",
            "file": file,
            "source_sha256": sha256(source.encode()) if source else None,
            "file_sha256": sha256(Path(file).read_bytes()),
        }
    return {
        "class": f"{obj.__module__}.{obj.__qualname__}",
        "file": file,
        "source_sha256": sha256(source.encode()) if source else None,
    }


def component_map(config: dict[str, Any]) -> dict[str, Any]:
    """Each component name in the config -> what it resolved to. Data readers include their parts."""
    found = {}
    for path, kind, name in component_paths(config):
        obj = registry.get(kind, name)
        entry = {"name": name, **describe_component(obj)}
        if kind == "datareader":
            entry["parts"] = {
                part: describe_component(getattr(obj, part)) for part in ("crawler", "dataset", "transforms")
            }
        found[format_path(path)] = entry
    return found


def record_given(components: dict[str, Any], given: dict[str, dict[str, Any]], config: dict[str, Any]) -> None:
    """Components handed in from Python stand in the map for the ones the config names (marked `given`)."""
    for key, described in given.items():
        if key == "MODEL.MODEL_ARCH":
            components[key] = {"name": config["MODEL"]["MODEL_ARCH"], **described}
        elif key == "EXECUTION.DATAREADER.CRAWLER_ARGS":
            reader = components.get("EXECUTION.DATAREADER.DATAREADER") or {}
            reader.setdefault("parts", {})["crawler"] = described
        else:  # LOSS[i].LOSSES: every loss of that entry
            for path in [p for p in components if p.startswith(key + "[")]:
                components[path] = {"name": described["class"].rsplit(".", 1)[-1], **described}


def imported_files(sources: list[str]) -> dict[str, str | None]:
    """Each of EXECUTION.IMPORTS (as imported: files by absolute path, modules by name) -> its file's SHA-256
    (None for a module): whoever runs the run again may `--import` a file with exactly that content."""
    return {source: sha256(Path(source).read_bytes()) if Path(source).is_file() else None for source in sources}


def build_provenance(
    config: dict[str, Any], crawl: Any, argv: list[str], cwd: Path, run_id: str
) -> tuple[dict[str, Any], str | None]:
    """provenance.json's content (without the parameter table, added once optimizers exist), and the git diff."""
    git, diff = git_state(cwd)
    record = {
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [Path(sys.argv[0]).name, *argv] if argv else None,
        "working_directory": str(cwd),
        "seed": config["seed_everything"],
        "versions": versions(),
        "git": git,
        "machine": machine(),
        "data": data_fingerprint(crawl),
        "components": component_map(config),
        "imports": imported_files(config["EXECUTION"]["IMPORTS"]),
        "parameters": None,
        "parameter_groups": None,
    }
    return record, diff


def parameter_counts(module: Any) -> dict[str, int]:
    params = list(module.model.parameters())
    loss_params = list(module.criterion.parameters())
    return {
        "model": sum(p.numel() for p in params),
        "model_trainable": sum(p.numel() for p in params if p.requires_grad),
        "losses": sum(p.numel() for p in loss_params),
    }


PIPELINE_COLUMNS = ["step", "config key", "name", "class", "source sha256", "arguments"]
# The fundamental steps in the order a run takes them (each kind of component declares its own: kinds.Kind.step).
PIPELINE_ORDER = (
    "load data",
    "preprocess",
    "model",
    "weights",
    "losses",
    "optimizers",
    "schedulers",
    "step logic",
    "evaluate",
    "plugins",
    "deploy",
    "save",
)


def _step_of(kind: str) -> str:
    """The pipeline step of a kind (a run folder an earlier version wrote may name a kind the original's way)."""
    declared = kinds.KINDS.get(kinds.RENAMED_KINDS.get(kind, kind))
    return declared.step if declared is not None and declared.step else kind


def _arguments(config: dict[str, Any], path: tuple, kind: str) -> Any:
    """The config's arguments of the component at `path`."""

    def get(*keys: Any) -> Any:
        value: Any = config
        for key in keys:
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and isinstance(key, int) and key < len(value):
                value = value[key]
            else:
                return None
        return value

    section = path[:-1]
    if kind == "datareader":  # EXECUTION.DATAREADER, or DEPLOYMENT.DATAREADER
        return get(*section, "CRAWLER_ARGS")
    if kind == "dataset":
        return get(*section, "GENERATOR_ARGS")
    if kind == "deployment":
        return get("DEPLOYMENT", "DEPLOYMENT_ARGS")
    if kind == "model":
        return get("MODEL", "MODEL_KWARGS")
    if kind == "loss":  # (LOSS, i, LOSSES, j)
        return get("LOSS", path[1], "KWARGS", path[3])
    if kind == "optimizer":
        return {
            "lr": get(*section, "BASE_LR"),
            "weight_decay": get(*section, "WEIGHT_DECAY"),
            **(get(*section, "OPTIMIZER_KWARGS") or {}),
        }
    if kind == "scheduler":
        return get(*section, "LR_KWARGS")
    if kind == "step_logic":
        return get("EXECUTION", "STEP_LOGIC_ARGS")
    if kind == "plugin":
        return get(*section, "PLUGIN_KWARGS")
    return None


def pipeline_rows(config: dict[str, Any], components: dict[str, Any]) -> list[list[str]]:
    """The run's pipeline, step by step: each component's config key, name, the class it resolved to, a hash
    of its source and its arguments (JSON), with the preprocessing, weights and checkpoints among them.
    The same table heads report.html and is logged to W&B, so two runs' pipelines compare side by side."""

    def row(step: str, key: str, name: Any, entry: dict[str, Any] | None, arguments: Any) -> list[str]:
        entry = entry or {}
        shown = json.dumps(arguments, sort_keys=True, default=str) if arguments not in (None, {}) else ""
        return [step, key, str(name), entry.get("class", ""), (entry.get("source_sha256") or "")[:12], shown]

    rows = []
    for path, kind, name in component_paths(config):
        key = format_path(path)
        entry = components.get(key) or {}
        shown = f"{entry['class'].rsplit('.', 1)[-1]} (given from Python)" if entry.get("given") else name
        step = "deploy" if path[0] == "DEPLOYMENT" else _step_of(kind)
        rows.append(row(step, key, shown, entry, _arguments(config, path, kind)))
        if (
            kind == "datareader"
            and path[0] != "DEPLOYMENT"
            and (transforms := ((components.get(key) or {}).get("parts") or {}).get("transforms"))
        ):
            rows.append(
                row(
                    "preprocess",
                    "TRAIN_TRANSFORMATION.ARGS",
                    transforms["class"].rsplit(".", 1)[-1],
                    transforms,
                    (config.get("TRAIN_TRANSFORMATION") or {}).get("ARGS"),
                )
            )
    weights = (config.get("MODEL") or {}).get("WEIGHTS")
    rows.append(["weights", "MODEL.WEIGHTS", weights or "(random initialisation)", "", "", ""])
    save = config.get("SAVE") or {}
    rows.append(
        [
            "save",
            "SAVE",
            f"{save.get('MODEL_CORE_NAME')}-v{save.get('MODEL_VERSION')}",
            "lightning.pytorch.callbacks.ModelCheckpoint",
            "",
            json.dumps({k: save.get(k) for k in ("SAVE_FREQUENCY", "STEP_SAVE_FREQUENCY", "MONITOR")}, default=str),
        ]
    )
    return sorted(rows, key=lambda r: PIPELINE_ORDER.index(r[0]) if r[0] in PIPELINE_ORDER else len(PIPELINE_ORDER))
