"""`python -m bench`: EdnaML against the same work written by hand, interleaved, medians with their spread.

For each task: (a) `ednaml fit`, (b) a hand-written LightningModule + LightningDataModule started by
LightningCLI, (c) a plain PyTorch loop, run in turn `--repeats` times (the order rotates every round);
then `ednaml --help`, `ednaml check` and data-loader throughput. Prints a Markdown report (also written
to --report) and the raw numbers (--json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.peak import wait_for_peak
from bench.spec import spec_from_config
from bench.timing import OUT_ENV, T0_ENV

ROOT = Path(__file__).resolve().parents[1]
EDNAML = Path(sys.executable).parent / "ednaml"
TASKS = {  # name -> (config, epochs, what it needs: a file and a module, with how to get them)
    "digits": (ROOT / "configs" / "digits.yml", 6, None),
    "resnet18": (ROOT / "bench" / "resnet18.yml", 3, None),
    "text": (
        ROOT / "configs" / "fortunes-text.yml",
        4,
        ("/usr/share/games/fortunes", "apt-get install fortunes", "tokenizers", "pip install -e '.[text]'"),
    ),
}
CONTENDERS = ("ednaml", "lightning", "plain")
TIMER = "[{class_path: bench.callback.StepTimer}]"


def task_names(text: str) -> list[str]:
    """--tasks: comma-separated names of TASKS."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in TASKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: the tasks are {', '.join(TASKS)} (comma-separated)")
    return names


def at_least_one(text: str) -> int:
    """--repeats and --epochs: a whole number, 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number, 1 or more")
    return int(text)


def missing(name: str) -> str | None:
    """What task `name` needs and this machine lacks, with how to get it; None when it can run."""
    needs = TASKS[name][2]
    if needs is None:
        return None
    path, get_path, module, get_module = needs
    if not Path(path).exists():
        return f"{path} is missing ({get_path})"
    if importlib.util.find_spec(module) is None:
        return f"the {module} package is missing ({get_module})"
    return None


def run(command: list[str], cwd: Path, env: dict[str, str], out: Path | None = None) -> dict[str, Any]:
    """Run one process; its wall time, peak resident memory and (with `out`) the timings it wrote."""
    env = {**env, T0_ENV: repr(time.time())}
    if out is not None:
        env[OUT_ENV] = str(out)
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors, text=True)
        code, peak = wait_for_peak(process)
        wall = time.perf_counter() - start
        if code != 0:
            errors.seek(0)
            raise SystemExit(f"bench: {' '.join(command)} failed (exit {code}):\n{errors.read()[-3000:]}")
    result: dict[str, Any] = {"wall": wall, "peak_mb": peak / 2**20}
    if out is not None:
        timings = json.loads(out.read_text())
        epochs = timings["epochs"][1:] or timings["epochs"]  # the first epoch warms caches up
        result.update(
            step=statistics.median(timings["steps"]),
            fetch=statistics.median(timings["fetches"] or [0.0]),
            epoch=statistics.median(epochs),
            first_step=timings["first_step"],
            steps=len(timings["steps"]),
        )
    return result


def contender_command(who: str, config: Path, spec: Path, epochs: int, run_dir: Path, gpu: bool) -> list[str]:
    device = (
        ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", "bf16-mixed"]
        if gpu
        else ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    )
    if who == "ednaml":
        return [
            str(EDNAML),
            "fit",
            "--config",
            str(config),
            "--EXECUTION.EPOCHS",
            str(epochs),
            "--trainer.default_root_dir",
            str(run_dir),
            "--trainer.callbacks",
            TIMER,
            *device,
        ]
    values = json.loads(spec.read_text())
    if who == "lightning":
        return [
            sys.executable,
            "-m",
            "bench.handwritten",
            "--model.spec",
            str(spec),
            "--data.spec",
            str(spec),
            "--seed_everything",
            str(values["seed"]),
            "--trainer.max_epochs",
            str(epochs),
            "--trainer.log_every_n_steps",
            str(values["log_every"]),
            "--trainer.default_root_dir",
            str(run_dir),
            *device,
        ]
    return [sys.executable, "-m", "bench.plain", str(spec), str(run_dir), "cuda" if gpu else "cpu"]


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_task(
    name: str, repeats: int, work: Path, env: dict[str, str], gpu: bool, epochs: int | None
) -> dict[str, Any]:
    config, default_epochs, _ = TASKS[name]
    epochs = epochs or default_epochs
    resolved = subprocess.run(
        [str(EDNAML), "fit", "--config", str(config), "--EXECUTION.EPOCHS", str(epochs), "--print_config"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (work / f"{name}.resolved.yml").write_text(resolved)
    spec = work / f"{name}.spec.json"
    spec.write_text(json.dumps(spec_from_config(yaml.safe_load(resolved))))
    runs: dict[str, list[dict[str, Any]]] = {who: [] for who in CONTENDERS}
    for round_ in range(repeats):
        order = CONTENDERS[round_ % 3 :] + CONTENDERS[: round_ % 3]
        for who in order:
            run_dir = work / f"{name}-{who}-{round_}"
            run_dir.mkdir()
            command = contender_command(who, config, spec, epochs, run_dir, gpu)
            runs[who].append(run(command, work, env, out=work / f"{name}-{who}-{round_}.json"))
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"  {name} round {round_ + 1}/{repeats} {who}: {runs[who][-1]['wall']:.1f} s", file=sys.stderr)
    table: dict[str, Any] = {
        who: {k: summarize([r[k] for r in rs]) for k in ("step", "fetch", "epoch", "first_step", "wall", "peak_mb")}
        for who, rs in runs.items()
    }
    for other in ("lightning", "plain"):  # paired ratios: round r of ednaml over round r of the other
        table[f"ednaml/{other}"] = {
            k: summarize([a[k] / b[k] for a, b in zip(runs["ednaml"], runs[other]) if b[k]])
            for k in ("step", "fetch", "epoch", "first_step", "wall", "peak_mb")
        }
    table["loader"] = {
        workers: json.loads(
            subprocess.run(
                [sys.executable, "-m", "bench.loader", str(work / f"{name}.resolved.yml"), str(spec), str(workers)],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for workers in (0, 2)
    }
    table["steps_per_epoch"] = runs["ednaml"][0]["steps"] // epochs
    table["epochs"] = epochs
    return table


def command_times(work: Path, env: dict[str, str], repeats: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"ednaml --help": [], "ednaml list": [], "ednaml check (digits)": []}
    commands = {
        "ednaml --help": [str(EDNAML), "--help"],
        "ednaml list": [str(EDNAML), "list"],
        "ednaml check (digits)": [str(EDNAML), "check", "--config", str(TASKS["digits"][0])],
    }
    for _ in range(repeats):
        for name, command in commands.items():
            times[name].append(run(command, work, env)["wall"])
    return {name: summarize(values) for name, values in times.items()}


def _cell(stats: dict[str, float], scale: float = 1.0, digits: int = 1) -> str:
    return f"{stats['median'] * scale:.{digits}f} ({stats['min'] * scale:.{digits}f}–{stats['max'] * scale:.{digits}f})"


def report(results: dict[str, Any]) -> str:
    lines = [f"Machine: {results['machine']}; {results['repeats']} interleaved rounds; median (min–max).", ""]
    rows = (
        ("step", "step, ms", 1000, 1),
        ("fetch", "batch fetch, ms", 1000, 1),
        ("epoch", "epoch, s", 1, 2),
        ("first_step", "time to first step, s", 1, 2),
        ("wall", "whole run, s", 1, 1),
        ("peak_mb", "peak memory, MB", 1, 0),
    )
    for name, table in results["tasks"].items():
        lines += [
            f"### {name} ({table['epochs']} epochs, {table['steps_per_epoch']} steps each)",
            "",
            "| | (a) ednaml fit | (b) Lightning by hand | (c) plain PyTorch | a/b | a/c |",
            "|---|---|---|---|---|---|",
        ]
        for key, label, scale, digits in rows:
            lines.append(
                f"| {label} | "
                + " | ".join(_cell(table[who][key], scale, digits) for who in CONTENDERS)
                + " | "
                + " | ".join(_cell(table[f"ednaml/{other}"][key], 1, 3) for other in ("lightning", "plain"))
                + " |"
            )
        loader = table["loader"]
        lines += [
            "",
            "Training loader, samples/s: "
            + "; ".join(
                f"WORKERS {w}: EdnaML {v['ednaml']:.0f}, plain DataLoader {v['hand']:.0f}" for w, v in loader.items()
            ),
            "",
        ]
    lines += ["### Commands", "", "| command | wall, s |", "|---|---|"]
    lines += [f"| `{name}` | {_cell(stats, 1, 2)} |" for name, stats in results["commands"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=at_least_one, default=3, help="interleaved rounds per task (default 3)")
    parser.add_argument(
        "--tasks", type=task_names, default="digits,resnet18,text", help="comma-separated: " + ", ".join(TASKS)
    )
    parser.add_argument("--epochs", type=at_least_one, default=None, help="epochs per run (default: per task)")
    parser.add_argument("--gpu", action="store_true", help="one GPU, bf16-mixed, for all three contenders")
    parser.add_argument("--report", type=Path, default=None, help="write the Markdown report here too")
    parser.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    args = parser.parse_args(argv)
    env = {
        **os.environ,
        "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
        "PYTHONPATH": str(ROOT),
        "WANDB_SILENT": "true",
    }
    import platform

    import torch

    if args.gpu and not torch.cuda.is_available():
        parser.error(
            "--gpu: torch sees no CUDA GPU here (torch.cuda.is_available() is False); without --gpu it runs on the CPU"
        )
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    if args.gpu:
        machine += f", {torch.cuda.get_device_name(0)}, bf16-mixed"
    results: dict[str, Any] = {"machine": machine, "repeats": args.repeats, "tasks": {}}
    with tempfile.TemporaryDirectory(prefix="ednaml-bench-") as tmp:
        work = Path(tmp)
        for name in args.tasks:
            if lacking := missing(name):
                print(f"bench: skipping {name}: {lacking}", file=sys.stderr)
                continue
            results["tasks"][name] = bench_task(name, args.repeats, work, env, args.gpu, args.epochs)
        results["commands"] = command_times(work, env, args.repeats)
    text = report(results)
    print(text)
    if args.report:
        args.report.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
