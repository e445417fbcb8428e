"""A sweep folder's results, written after every trial: sweep.json (the study, its best trial and every
trial), trials.csv, and report.html (the metric against each sampled key, in the style of a run's report)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import time
from typing import TYPE_CHECKING, Any

from ednaml.tracking.report import COLORS, STYLE, _fmt, _table, _ticks
from ednaml.tracking.run_folder import write_atomic
from ednaml.tracking.secrets import scrub
from ednaml.tracking.trial import shown_storage

if TYPE_CHECKING:
    from ednaml.sweeps.space import Param
    from ednaml.sweeps.study import Sweep

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 420, 240, 56, 16, 24, 48
TRIALS_STYLE = (
    "table.trials td:last-child, table.best td:last-child { text-align: left; overflow-wrap: anywhere; "
    "max-width: 380px; }"
)
STATE_COLORS = {"complete": COLORS[0], "pruned": "#999999", "fail": COLORS[1], "running": COLORS[4]}


def trial_rows(sweep: Sweep) -> list[dict[str, Any]]:
    rows = []
    for trial in sweep.study.get_trials(deepcopy=False):
        values = {p.key: p.value(trial.params[p.key]) for p in sweep.space.params if p.key in trial.params}
        intermediate = trial.intermediate_values
        value = trial.value if trial.value is not None else (intermediate[max(intermediate)] if intermediate else None)
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "value": value,
                "params": values,
                "run": trial.user_attrs.get("run"),
                "epochs_reported": len(intermediate),
                "error": trial.user_attrs.get("error"),
                "started": trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None,
                "seconds": round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)
                if trial.datetime_complete and trial.datetime_start
                else None,
            }
        )
    return rows


def summary(sweep: Sweep) -> dict[str, Any]:
    """sweep.json: the study, where it is stored (without credentials), the space, the best trial, every trial."""
    rows = trial_rows(sweep)
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    pick = max if sweep.space.direction == "maximize" else min
    best = pick(complete, key=lambda r: r["value"]) if complete else None
    counts = {state: sum(r["state"] == state for r in rows) for state in ("complete", "pruned", "fail", "running")}
    return scrub(
        {
            "study": sweep.name,
            "storage": shown_storage(sweep.storage),
            "metric": sweep.space.metric,
            "direction": sweep.space.direction,
            "space": sweep.space.describe(),
            "space_file": sweep.space.source,
            "configs": [str(f) for f in sweep.files],
            "overrides": [[k, v] for k, v in sweep.overrides],
            "trials_wanted": sweep.space.trials,
            "counts": counts,
            "best": best,
            "trials": rows,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    )


def trials_csv(record: dict[str, Any]) -> str:
    keys = list(record["space"]["SWEEP"])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "state", record["metric"], *keys, "run", "seconds"])
    for row in record["trials"]:
        writer.writerow(
            [
                row["number"],
                row["state"],
                "" if row["value"] is None else row["value"],
                *[
                    json.dumps(row["params"][k])
                    if isinstance(row["params"].get(k), (list, dict))
                    else row["params"].get(k, "")
                    for k in keys
                ],
                row["run"] or "",
                "" if row["seconds"] is None else row["seconds"],
            ]
        )
    return out.getvalue()


def svg_scatter(param: Param, metric: str, rows: list[dict[str, Any]]) -> str:
    """The metric of each trial against one sampled key: a log axis for a log range, the choices in order
    for a choice; colour by the trial's state."""
    points = [
        (r["params"][param.key], r["value"], r["state"], r["number"])
        for r in rows
        if r["value"] is not None and param.key in r["params"]
    ]
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    if param.kind == "choice":
        labels = [json.dumps(c) if not isinstance(c, str) else c for c in param.choices]
        position = {i: i for i in range(len(labels))}
        x0, x1 = -0.5, len(labels) - 0.5

        def xv(value: Any) -> float:
            return float(position[param.choices.index(value)])
    else:
        x0, x1 = (math.log10(param.low), math.log10(param.high)) if param.log else (float(param.low), float(param.high))

        def xv(value: Any) -> float:
            return math.log10(value) if param.log else float(value)

    ys = [p[1] for p in points] or [0.0, 1.0]
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.08 if y1 > y0 else 0.5  # points clear of the axes
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (right - LEFT)

    def py(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - TOP)

    title = param.key
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
    if param.kind == "choice":
        ticks = [(float(i), label) for i, label in enumerate(labels)]
    else:
        ticks = [(x, f"{10**x:.2g}" if param.log else f"{x:.3g}") for x in _ticks(x0, x1)]
    for x, label in ticks:
        parts += [
            f'<line x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" y2="{bottom}" class="grid"/>',
            f'<text x="{px(x):.1f}" y="{bottom + 12}" class="tick" text-anchor="middle">'
            f"{html.escape(label[:24])}</text>",
        ]
    parts += [
        f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" class="axis"/>',
        f'<text x="{(LEFT + right) / 2:.0f}" y="{HEIGHT - 18}" class="label" text-anchor="middle">'
        f"{html.escape(param.key)}{' (log)' if param.log else ''}</text>",
        f'<text x="12" y="{(TOP + bottom) / 2:.0f}" class="label" text-anchor="middle" '
        f'transform="rotate(-90 12 {(TOP + bottom) / 2:.0f})">'
        f"{html.escape(metric)}</text>",
    ]
    for value, result, state, number in points:
        parts.append(
            f'<circle cx="{px(xv(value)):.1f}" cy="{py(result):.1f}" r="4" fill="{STATE_COLORS.get(state, "#000")}" '
            f'class="trial {state}"><title>trial {number} ({state}): {result:.4g}</title></circle>'
        )
    legend = [f'<tspan fill="{color}">● {state}</tspan>' for state, color in STATE_COLORS.items()]
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 4}" class="legend">{" ".join(legend)}</text></svg>')
    return "".join(parts)


def build_report(sweep: Sweep, record: dict[str, Any]) -> str:
    best = record["best"]
    keys = list(record["space"]["SWEEP"])
    counts = ", ".join(f"{n} {state}" for state, n in record["counts"].items() if n)
    head = [
        f"<h1>Sweep {html.escape(record['study'])}</h1>",
        f"<p>{html.escape(record['direction'])} {html.escape(record['metric'])} over {len(keys)} key(s); "
        f"{len(record['trials'])} of {record['trials_wanted']} trials ({html.escape(counts or 'none yet')}). "
        f"Configs: {html.escape(', '.join(record['configs']))}; space: {html.escape(record['space_file'])}.</p>",
    ]
    if best:
        head += [
            "<h2>Best trial</h2>",
            _table(
                [[best["number"], best["value"], *[json.dumps(best["params"].get(k)) for k in keys], best["run"]]],
                ["trial", record["metric"], *keys, "run folder"],
                "best",
            ),
        ]
    charts = [svg_scatter(p, record["metric"], record["trials"]) for p in sweep.space.params]
    rows = [
        [r["number"], r["state"], r["value"], *[json.dumps(r["params"].get(k)) for k in keys], r["seconds"], r["run"]]
        for r in record["trials"]
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sweep "
        + html.escape(record["study"])
        + "</title><style>"
        + STYLE
        + TRIALS_STYLE
        + "</style></head><body>"
        + "".join(head)
        + f"<h2>{html.escape(record['metric'])} against each sampled key</h2><div class='charts'>"
        + "".join(charts)
        + "</div>"
        + "<h2>Trials</h2>"
        + _table(rows, ["trial", "state", record["metric"], *keys, "seconds", "run folder"], "trials")
        + "<h2>Search space</h2><pre>"
        + html.escape(json.dumps(record["space"], indent=2))
        + "</pre>"
        + f"<p>{html.escape(_fmt(record['updated']))}</p></body></html>"
    )


def write_results(sweep: Sweep) -> dict[str, Any]:
    record = summary(sweep)
    sweep.folder.mkdir(parents=True, exist_ok=True)
    write_atomic(sweep.folder / "sweep.json", json.dumps(record, indent=2, default=str) + "\n")
    write_atomic(sweep.folder / "trials.csv", trials_csv(record))
    write_atomic(sweep.folder / "report.html", build_report(sweep, record))
    return record
