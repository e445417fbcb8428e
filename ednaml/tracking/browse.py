"""Find, list and compare runs: `ednaml runs` and `ednaml diff`."""

from __future__ import annotations

import fnmatch
import json
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ednaml.config.load import as_recorded_now
from ednaml.config.schema import PLACEMENT_KEYS
from ednaml.errors import ConfigError, did_you_mean, format_path
from ednaml.tracking.run_folder import held, load_yaml, read_run_text
from ednaml.utils import text_table

DEFAULT_ROOT = "runs"


@dataclass
class Run:
    """One run folder, read: its resolved config, summary and provenance (any may be missing)."""

    path: Path
    config: dict[str, Any] | None
    summary: dict[str, Any]
    provenance: dict[str, Any] | None

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def experiment(self) -> str:
        return self.path.parent.name


def _read_record(path: Path) -> dict[str, Any] | None:
    """A JSON record of the run, None where it is missing or damaged; one that cannot be read safely is refused."""
    if not os.path.lexists(path):
        return None
    try:
        record = json.loads(read_run_text(path))
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def read_run(path: Path) -> Run:
    config = load_yaml(path / "config.yaml") if os.path.lexists(path / "config.yaml") else None
    return Run(path, config, _read_record(path / "summary.json") or {}, _read_record(path / "provenance.json"))


def find_runs(root: str | Path = DEFAULT_ROOT) -> list[Run]:
    """Every run under <root>/<experiment>/<run_id>/, newest first."""
    runs = [read_run(p.parent) for p in Path(root).glob("*/*/summary.json")]
    return sorted(runs, key=lambda r: (r.summary.get("started", ""), r.run_id), reverse=True)


def resolve_run(ref: str, root: str | Path = DEFAULT_ROOT) -> Path:
    """A run folder from its path or its run id (looked up under `root`)."""
    path = Path(ref)
    if (path / "summary.json").exists() or (path / "config.yaml").exists():
        return path
    matches = list(Path(root).glob(f"*/{ref}"))
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(
            f"run id {ref!r} is in several experiments under {str(root)!r}: {[str(m) for m in matches]}; give the path"
        )
    known = [r.run_id for r in find_runs(root)]
    hint = did_you_mean(ref, known, f" (runs under {str(root)!r}: `ednaml runs {root}`)", cutoff=0.6)
    raise ConfigError(f"{ref!r} is neither a run folder nor a run id under {str(root)!r}{hint}")


def flatten(value: Any, path: tuple = ()) -> dict[str, Any]:
    """{'OPTIMIZER[0].BASE_LR': 0.001, ...}: every leaf by its key path, in document order."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(sub, path + (key,)))
        return out
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, sub in enumerate(value):
            out.update(flatten(sub, path + (i,)))
        return out
    return {format_path(path): value}


def best_metric(run: Run) -> str:
    score = (run.summary.get("checkpoints") or {}).get("best_score") or {}
    if score:
        ((name, value),) = score.items()
        return f"{name}={value:.4f}" if isinstance(value, float) else f"{name}={value}"
    for name in ("val/accuracy", "val/loss"):
        if name in run.summary.get("best", {}):
            return f"{name}={run.summary['best'][name]['value']:.4f}"
    return ""


ABSENT = "(absent)"
COMPARE = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def run_value(run: Run, key: str, flat: dict[str, Any]) -> Any:
    """A metric's final value (test/accuracy), its best (best.val/accuracy), or a config key's value."""
    if key.startswith("best."):
        return ((run.summary.get("best") or {}).get(key[5:]) or {}).get("value")
    if "/" in key:
        return (run.summary.get("final") or {}).get(key)
    return flat.get(_key(key), ABSENT)


def matches(run: Run, experiment: str | None, status: str | None, where: list[tuple[str, str, Any]]) -> bool:
    """The run is of the experiment pattern and status, and meets every (key, operator, value) condition;
    an ordering compares numbers only."""
    if experiment and not fnmatch.fnmatchcase(run.experiment, experiment):
        return False
    if status and run_status(run) != status:
        return False
    flat = flatten(run.config or {})
    for key, op, wanted in where:
        value = run_value(run, key, flat)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, wanted))
        if op not in ("=", "!=") and not numbers:
            return False
        if not COMPARE[op](value, wanted):
            return False
    return True


def _key(dotted: str) -> str:
    """OPTIMIZER.0.BASE_LR -> OPTIMIZER[0].BASE_LR (the form flatten() uses)."""
    from ednaml.config.load import parse_key_path

    return format_path(parse_key_path(dotted))


def run_status(run: Run) -> str:
    """The summary's status, except that a `running` run whose folder lock is free has died (killed
    before it could say so)."""
    recorded = run.summary.get("status", "?")
    return "dead" if recorded == "running" and held(run.path) is False else recorded


def table_rows(runs: list[Run]) -> list[dict[str, Any]]:
    return [
        {
            "experiment": r.experiment,
            "run_id": r.run_id,
            "started": r.summary.get("started", ""),
            "status": run_status(r) + (" (debug)" if r.summary.get("debug") else ""),
            "stage": r.summary.get("stage", ""),
            "epochs": r.summary.get("epochs", ""),
            "best": best_metric(r),
            "final": final_metric(r),
            "wandb": wandb_place(r.summary.get("wandb") or {}),
            "path": str(r.path),
        }
        for r in runs
    ]


def final_metric(run: Run) -> str:
    """The final test accuracy (or the first test value), as `ednaml runs` shows it."""
    final = {
        k: v
        for k, v in (run.summary.get("final") or {}).items()
        if k.startswith("test/") and isinstance(v, (int, float))
    }
    name = "test/accuracy" if "test/accuracy" in final else next(iter(sorted(final)), None)
    return f"{name}={final[name]:.4f}" if name else ""


def wandb_place(wandb: dict[str, Any]) -> str:
    """project/group/name of the W&B run (its id where the run predates them)."""
    place = "/".join(str(wandb[k]) for k in ("project", "group", "name") if wandb.get(k))
    return place if wandb.get("group") else wandb.get("id", "")


def format_table(rows: list[dict[str, Any]]) -> str:
    columns = ["experiment", "run_id", "started", "status", "stage", "epochs", "best", "final", "wandb"]
    return text_table([columns] + [[str(row[c]) for c in columns] for row in rows])


# ---- diff ----


@dataclass
class Side:
    """One side of a diff: a run, or a config file (config only)."""

    label: str
    config: dict[str, Any]
    provenance: dict[str, Any] | None
    final: dict[str, Any]


def side(ref: str, root: str | Path = DEFAULT_ROOT) -> Side:
    path = Path(ref)
    if path.is_file():
        from ednaml.config import resolve

        return Side(str(path), resolve([path]), None, {})
    run = read_run(resolve_run(ref, root))
    if run.config is None:
        raise ConfigError(f"{str(run.path)!r} has no config.yaml; it is not a complete run folder")
    # an older run's config in this version's spellings, Lightning's defaults filled in
    return Side(run.run_id, as_recorded_now(run.config), run.provenance, run.summary.get("final", {}))


def changes(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for every key whose values differ; ABSENT where one side lacks it."""
    keys = list(a) + [k for k in b if k not in a]
    return [(k, a.get(k, ABSENT), b.get(k, ABSENT)) for k in keys if (k in a) != (k in b) or a.get(k) != b.get(k)]


# What of provenance.json's machine can change a run's numbers, most likely first: `diff` names each difference.
DECISIVE = ("processes", "torch_threads", "thread_settings", "accelerators", "cuda", "cpus", "platform")


def diff(a: Side, b: Side) -> dict[str, Any]:
    """Differences in config, components, machine (processes, threads), versions, data and final metrics — in
    that order."""
    config = changes(flatten(a.config), flatten(b.config))
    result: dict[str, Any] = {"a": a.label, "b": b.label, "config": config}
    if a.provenance and b.provenance:
        result["config"] = [change for change in config if change[0] not in PLACEMENT_KEYS]  # shown with the machine
        ca, cb = a.provenance.get("components", {}), b.provenance.get("components", {})
        result["components"] = [
            (k, ca.get(k), cb.get(k))
            for k in list(ca) + [k for k in cb if k not in ca]
            if (ca.get(k) or {}).get("class") != (cb.get(k) or {}).get("class")
            or (ca.get(k) or {}).get("source_sha256") != (cb.get(k) or {}).get("source_sha256")
        ]
        ma, mb = a.provenance.get("machine") or {}, b.provenance.get("machine") or {}
        result["machine"] = [(k, ma.get(k), mb.get(k)) for k in DECISIVE if ma.get(k) != mb.get(k)]
        result["placement"] = [change for change in config if change[0] in PLACEMENT_KEYS]
        va = {k: v for k, v in a.provenance.get("versions", {}).items() if k != "packages"}
        vb = {k: v for k, v in b.provenance.get("versions", {}).items() if k != "packages"}
        result["versions"] = changes(va, vb)
        pa, pb = set(a.provenance["versions"].get("packages", [])), set(b.provenance["versions"].get("packages", []))
        result["packages"] = {"only_a": sorted(pa - pb), "only_b": sorted(pb - pa)}
        da, db = a.provenance.get("data", {}), b.provenance.get("data", {})
        result["data"] = changes(
            {k: v for k, v in da.items() if k != "file_list"}, {k: v for k, v in db.items() if k != "file_list"}
        )
    metrics = sorted(set(a.final) | set(b.final))
    result["metrics"] = [
        (k, a.final.get(k), b.final.get(k)) for k in metrics if not _same_number(a.final.get(k), b.final.get(k))
    ]
    return result


def _same_number(a: Any, b: Any) -> bool:
    """Equal, or numbers within 1e-6 of each other relative to their size: the float32 sums of one quantity
    taken in another order (over another number of processes) differ by about 1e-8, which is not a change."""
    if (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    return a == b


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def format_diff(result: dict[str, Any]) -> str:
    lines = [f"a: {result['a']}", f"b: {result['b']}", ""]
    config = result["config"]
    lines.append(f"config: {len(config)} difference{'s' * (len(config) != 1)}" if config else "config: same")
    lines += [f"  {k}: {_show(va)} -> {_show(vb)}" for k, va, vb in config]
    if "components" in result:
        comps = result["components"]
        lines.append(f"components: {len(comps)} changed" if comps else "components: same")
        for key, ca, cb in comps:
            what = "source changed" if ca and cb and ca.get("class") == cb.get("class") else "class changed"
            lines.append(f"  {key}: {(ca or {}).get('class')} -> {(cb or {}).get('class')} ({what})")
        machine, placement = result["machine"], result["placement"]
        lines.append("machine: differs" if machine or placement else "machine: same")
        lines += [f"  {k}: {_show(va)} -> {_show(vb)}" for k, va, vb in machine]
        if placement:  # the config keys that chose the processes: said with them, not as a change of what ran
            lines.append(
                "  as the trainer section placed it: "
                + ", ".join(f"{k} {_show(va)} -> {_show(vb)}" for k, va, vb in placement)
            )
        versions, packages = result["versions"], result["packages"]
        changed = bool(versions or packages["only_a"] or packages["only_b"])
        lines.append("versions: differ" if changed else "versions: same")
        lines += [f"  {k}: {_show(va)} -> {_show(vb)}" for k, va, vb in versions if k != "packages_sha256"]
        lines += [f"  - {p}" for p in packages["only_a"][:20]] + [f"  + {p}" for p in packages["only_b"][:20]]
        data = result["data"]
        lines.append("data: differs" if data else "data: same")
        lines += [f"  {k}: {_show(va)} -> {_show(vb)}" for k, va, vb in data]
    metrics = result["metrics"]
    lines.append("final metrics: differ" if metrics else "final metrics: same")
    for k, va, vb in metrics:
        delta = f"  ({vb - va:+.4g})" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else ""
        lines.append(f"  {k}: {_show(va)} -> {_show(vb)}{delta}")
    return "\n".join(lines)
