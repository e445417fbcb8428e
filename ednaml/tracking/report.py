"""report.html: one self-contained page per run — config, provenance, curves, parameter groups, results.

No scripts, no network: inline CSS and SVG, so the file opens in any browser, anywhere.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ednaml.tracking.run_folder import read_run_csv, read_run_json, read_run_text, write_atomic

WIDTH, HEIGHT = 540, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 150, 24, 36  # the plot area's margins; the legend sits in the right one
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]


def _read_json(path: Path) -> Any:
    return read_run_json(path) if path.exists() else None


def _series(rows: list[dict[str, str]]) -> dict[str, list[tuple[float, float]]]:
    """metric -> [(step, value)] from metrics.csv."""
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if not row.get("step"):
            continue
        for key, value in row.items():
            if key in ("step", "epoch") or value in ("", None):
                continue
            try:
                series.setdefault(key, []).append((float(row["step"]), float(value)))
            except ValueError:
                continue
    return series


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    return [low + (high - low) * i / count for i in range(count + 1)]


def svg_chart(
    title: str,
    lines: dict[str, list[tuple[float, float]]],
    baseline: float | None = None,
    marks: list[float] = (),
    y_label: str = "",
) -> str:
    """A line chart of several series over optimizer steps, as inline SVG: labelled axes with gridlines,
    the legend beside the plot, a validation value from before training (step 0) drawn as a hollow point
    apart from its line, an optional dashed baseline, and dotted vertical marks (where a run resumed)."""
    points = [p for values in lines.values() for p in values]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points] + ([baseline] if baseline is not None else [])
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (right - LEFT)

    def py(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - TOP)

    parts = [
        f'<svg class="chart" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f'<text x="{LEFT}" y="15" class="title">{html.escape(title)}</text>',
    ]
    for y in _ticks(y0, y1):
        parts += [
            f'<line x1="{LEFT}" y1="{py(y):.1f}" x2="{right}" y2="{py(y):.1f}" class="grid"/>',
            f'<text x="{LEFT - 4}" y="{py(y) + 3:.1f}" class="tick" text-anchor="end">{y:.3g}</text>',
        ]
    for x in _ticks(x0, x1):
        parts += [
            f'<line x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" y2="{bottom}" class="grid"/>',
            f'<text x="{px(x):.1f}" y="{bottom + 12}" class="tick" text-anchor="middle">{x:.0f}</text>',
        ]
    parts += [
        f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" class="axis"/>',
        f'<text x="{(LEFT + right) / 2:.0f}" y="{HEIGHT - 4}" class="label" text-anchor="middle">optimizer step</text>',
        f'<text x="12" y="{(TOP + bottom) / 2:.0f}" class="label" text-anchor="middle" '
        f'transform="rotate(-90 12 {(TOP + bottom) / 2:.0f})">'
        f"{html.escape(y_label or title)}</text>",
    ]
    for step in marks:
        if x0 <= step <= x1:
            parts += [
                f'<line x1="{px(step):.1f}" y1="{TOP}" x2="{px(step):.1f}" y2="{bottom}" class="resume"/>',
                f'<text x="{px(step) + 2:.1f}" y="{TOP + 9}" class="tick resume-label">resumed</text>',
            ]
    legend = []
    for i, (name, values) in enumerate(lines.items()):
        color = COLORS[i % len(COLORS)]
        before = [(x, y) for x, y in values if x == 0 and name.startswith("val/")]  # the pass before training
        during = [(x, y) for x, y in values if (x, y) not in before]
        coords = [f"{px(x):.1f},{py(y):.1f}" for x, y in during]
        if len(coords) > 1:
            parts.append(f'<polyline points="{" ".join(coords)}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        parts += [
            f'<circle cx="{c.split(",")[0]}" cy="{c.split(",")[1]}" r="2.2" fill="{color}"/>' for c in coords[-60:]
        ]
        parts += [
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="#fff" stroke="{color}" '
            'stroke-width="1.5" class="before"/>'
            for x, y in before
        ]
        legend.append(
            f'<text x="{right + 10}" y="{TOP + 10 + 13 * i}" class="legend" fill="{color}">{html.escape(name)}</text>'
        )
    if baseline is not None:
        parts += [f'<line x1="{LEFT}" y1="{py(baseline):.1f}" x2="{right}" y2="{py(baseline):.1f}" class="baseline"/>']
        legend.append(
            f'<text x="{right + 10}" y="{TOP + 10 + 13 * len(lines)}" class="legend baseline-label">'
            f"majority baseline {baseline:.3g}</text>"
        )
    if any(x == 0 and n.startswith("val/") for n, v in lines.items() for x, _ in v):
        legend.append(
            f'<text x="{right + 10}" y="{TOP + 10 + 13 * (len(legend) + 1)}" class="legend note">'
            "○ before training</text>"
        )
    parts += legend + ["</svg>"]
    return "".join(parts)


def _charts(series: dict[str, list[tuple[float, float]]], baselines: dict[str, float], marks: list[float]) -> list[str]:
    """Loss curves, each metric's curves (val and test, with the majority baseline on accuracy), learning rates."""
    groups: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for key, values in series.items():
        stage, _, name = key.partition("/")
        if stage == "lr":
            groups.setdefault("learning rate", {})[name] = values
        elif name in ("loss", "loss_step"):
            groups.setdefault("loss", {})[key] = values
        elif stage in ("val", "test") and name.rsplit("/", 1)[-1].islower():
            groups.setdefault(name, {})[key] = values
        elif "/" in name and stage in ("train", "val") and not name.endswith("_step"):
            groups.setdefault(f"loss term {name}", {})[key] = values
    order = (
        ["loss"]
        + sorted(k for k in groups if k not in ("loss", "learning rate") and not k.startswith("loss term"))
        + sorted(k for k in groups if k.startswith("loss term"))
        + ["learning rate"]
    )
    return [svg_chart(name, groups[name], baselines.get(f"test/{name}"), marks) for name in order if name in groups]


def _table(rows: list[list[Any]], header: list[str], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<table{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _confusion(name: str, matrix: list[list[int]], classes: list[str]) -> str:
    peak = max((max(row) for row in matrix), default=1) or 1
    head = "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    rows = []
    for label, row in zip(classes, matrix):
        cells = "".join(f'<td style="background: rgba(31,119,180,{0.08 + 0.9 * v / peak:.2f})">{v}</td>' for v in row)
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return (
        f"<h3>{html.escape(name)}: true class (rows) × predicted class (columns)</h3>"
        f'<table class="confusion"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1120px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; } \
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f5f5f5; } td:first-child { text-align: left; } .confusion td { min-width: 28px; text-align: center; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } .chart { border: 1px solid #eee; background: #fff; }
.chart .axis { stroke: #888; } .chart .title { font-weight: 600; font-size: 13px; } \
.chart .tick { font-size: 10px; fill: #666; }
.chart .grid { stroke: #eee; } .chart .label { font-size: 10px; fill: #444; } .chart .legend { font-size: 10px; }
.chart .baseline { stroke: #555; stroke-dasharray: 5 4; } .chart .baseline-label { fill: #555; } \
.chart .note { fill: #666; }
.chart .resume { stroke: #d62728; stroke-dasharray: 2 3; } .chart .resume-label { fill: #d62728; }
details summary { cursor: pointer; color: #555; }
table.pipeline td, table.pipeline th { text-align: left; } \
table.pipeline td:nth-child(4), table.pipeline td:nth-child(6) {
  font: 11px/1.35 ui-monospace, monospace; } \
table.pipeline td:last-child { max-width: 360px; overflow-wrap: anywhere; } \
pre { background: #f7f7f7; padding: 10px; overflow: auto; font-size: 12px; }
.status-finished { color: #2ca02c; } .status-failed, .status-interrupted { color: #d62728; }
"""


def _pipeline(config_text: str, provenance: dict[str, Any]) -> list[str]:
    """The pipeline table (as logged to W&B): what ran at each step, and its arguments."""
    if not config_text or not provenance.get("components"):
        return []
    from ednaml.config.load import parse_yaml
    from ednaml.tracking.provenance import PIPELINE_COLUMNS, pipeline_rows

    try:
        config = parse_yaml(config_text)
        rows = pipeline_rows(config, provenance["components"]) if isinstance(config, dict) else []
    except Exception:  # noqa: BLE001 - a damaged config.yaml leaves the rest of the report
        return []
    return ["<h2>Pipeline</h2>", _table(rows, PIPELINE_COLUMNS, "pipeline")] if rows else []


def _config_changes(config_text: str) -> list[str]:
    """The keys whose values differ from EdnaML's defaults: what this experiment chose."""
    from ednaml.config.load import parse_yaml, resolve
    from ednaml.tracking.browse import changes, flatten

    try:
        config = parse_yaml(config_text) if config_text else None
        defaults = flatten(resolve([]))
    except Exception:  # noqa: BLE001 - the report is written even for a damaged config.yaml
        return []
    if not isinstance(config, dict):
        return []
    flat = flatten(config)
    rows = []
    for key, before, after in changes(defaults, flat):
        if after == "(absent)" and before in ({}, []):  # a mapping or list that now has entries: they are listed
            continue
        if (
            key.startswith(("TRAIN_TRANSFORMATION.", "TEST_TRANSFORMATION."))
            and flat.get("TRANSFORMATION." + key.split(".", 1)[1]) == after
        ):
            continue  # the copy of a TRANSFORMATION value
        rows.append(
            [key, "(picked per run)" if key == "seed_everything" else "" if before == "(absent)" else before, after]
        )
    return (
        [f"<p>{len(rows)} keys differ from the defaults:</p>", _table(rows, ["key", "default", "this run"])]
        if rows
        else []
    )


def build_report(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json") or {}
    provenance = _read_json(run_dir / "provenance.json") or {}
    groups = _read_json(run_dir / "parameter_groups.json") or []
    confusion = _read_json(run_dir / "confusion.json") or {}
    config_text = read_run_text(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else ""
    rows: list[dict[str, str]] = []
    if (run_dir / "metrics.csv").exists():
        rows = list(read_run_csv(run_dir / "metrics.csv"))

    status = summary.get("status", "?")
    final = summary.get("final", {})
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(summary.get('experiment', ''))} "
        f"{html.escape(summary.get('run_id', run_dir.name))}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(summary.get('experiment', run_dir.parent.name))} / "
        f"{html.escape(summary.get('run_id', run_dir.name))}</h1>",
        f"<p>{html.escape(summary.get('stage', ''))} · "
        f"<b class='status-{html.escape(status)}'>{html.escape(status)}</b> · "
        f"started {html.escape(summary.get('started', ''))} · {summary.get('epochs', '')} epochs, "
        f"{summary.get('global_step', '')} steps · {summary.get('elapsed_seconds', '')} s"
        f"{' · resumed ' + str(summary['resumed']) + '×' if summary.get('resumed') else ''}</p>",
        *_pipeline(config_text, provenance),
        "<h2>Final metrics</h2>",
        _table(
            [[k, v, (summary.get("best", {}).get(k) or {}).get("value")] for k, v in final.items()],
            ["metric", "final", "best"],
        ),
    ]
    marks = [float(r["step"]) for r in summary.get("resumes", []) if r.get("step") is not None]
    charts = _charts(_series(rows), summary.get("majority_baseline") or {}, marks)
    if charts:
        parts += ["<h2>Curves</h2>", f"<div class='charts'>{''.join(charts)}</div>"]
    if confusion:
        parts.append("<h2>Confusion matrix (test)</h2>")
        parts += [_confusion(name, entry["matrix"], entry["classes"]) for name, entry in confusion.items()]
    checkpoints = summary.get("checkpoints") or {}
    listed = [["last", checkpoints.get("last")]] + [
        [
            "best" + (f" ({_fmt(checkpoints.get('best_score'))})" if checkpoints.get("best_score") else ""),
            checkpoints.get("best"),
        ]
    ]
    listed += [["saved", path] for path in checkpoints.get("saved", [])] + [["weights only", checkpoints.get("model")]]
    if any(path for _, path in listed):
        parts += ["<h2>Checkpoints</h2>", _table([[kind, path] for kind, path in listed if path], ["", "file"])]
    if groups:
        parts += [
            "<h2>Parameter groups</h2>",
            _table(
                [
                    [g["group"], g["optimizer"], g["kind"], g["tensors"], g["parameters"], g["lr"], g["weight_decay"]]
                    for g in groups
                ],
                ["group", "optimizer", "kind", "tensors", "parameters", "lr", "weight decay"],
            ),
        ]
    if provenance:
        versions = provenance.get("versions", {})
        git = provenance.get("git") or {}
        data = provenance.get("data", {})
        machine = provenance.get("machine", {})
        facts = [
            ["command", " ".join(provenance.get("command") or []) or "(Python API)"],
            ["seed", provenance.get("seed")],
            [
                "versions",
                ", ".join(
                    f"{k} {versions.get(k)}" for k in ("ednaml", "torch", "lightning", "python") if versions.get(k)
                ),
            ],
            [
                "packages",
                f"{len(versions.get('packages', []))} (sha256 {str(versions.get('packages_sha256', ''))[:12]})",
            ],
            [
                "git",
                f"{git.get('commit', '')[:12]} on {git.get('branch')}{' (dirty)' if git.get('dirty') else ''}"
                if git
                else "not a git working tree",
            ],
            [
                "machine",
                f"{machine.get('platform', '')}, {machine.get('cpus', '')} CPUs, "
                f"accelerators: {', '.join(machine.get('accelerators') or []) or 'none'}",
            ],
            [
                "data",
                f"{data.get('samples')}, {data.get('files')} files, {data.get('bytes')} bytes, "
                f"sha256 {str(data.get('sha256', ''))[:12]}",
            ],
            ["parameters", provenance.get("parameters")],
        ]
        parts += ["<h2>Provenance</h2>", _table(facts, ["", ""])]
        comps = provenance.get("components", {})
        parts.append(
            _table(
                [[k, v["name"], v["class"], (v.get("source_sha256") or "")[:12]] for k, v in comps.items()],
                ["config key", "name", "class", "source sha256"],
            )
        )
    parts += [
        "<h2>Config</h2>",
        *_config_changes(config_text),
        f"<details><summary>the whole resolved config</summary><pre>{html.escape(config_text)}</pre></details>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(run_dir: Path) -> Path:
    path = Path(run_dir) / "report.html"
    write_atomic(path, build_report(Path(run_dir)))
    return path
