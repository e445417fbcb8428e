"""`python -m bench.inprocess`: (a) `ednaml fit` and (b) the hand-written Lightning run of `python -m bench`,
alternated inside one Python process.

Separate processes differ in memory layout and in what the machine does meanwhile, and on a small
machine that moves the a/b ratio of a whole `python -m bench` invocation by more than the adapter's cost.
Here both contenders run with the same imports, allocator and machine state (`ednaml.cli.main` and
`bench.handwritten.main` called in turn, as a notebook would), so what differs between them is the
work each does. Step and epoch are timed by the same callback as in `python -m bench`.

    python -m bench.inprocess [--tasks digits,resnet18] [--repeats 4] [--epochs N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.__main__ import EDNAML, TASKS, TIMER, at_least_one, missing, summarize, task_names
from bench.spec import spec_from_config
from bench.timing import OUT_ENV, T0_ENV


def one_run(who: str, config: Path, spec: Path, epochs: int, folder: Path) -> dict[str, float]:
    """One contender's run in this process; its median step and epoch (the first epoch left out)."""
    from bench import handwritten
    from ednaml import cli

    out = folder.with_suffix(".json")
    os.environ[OUT_ENV], os.environ[T0_ENV] = str(out), repr(time.time())
    device = ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    with contextlib.redirect_stdout(io.StringIO()):
        if who == "ednaml":
            code = cli.main(
                [
                    "fit",
                    "--config",
                    str(config),
                    "--EXECUTION.EPOCHS",
                    str(epochs),
                    "--trainer.default_root_dir",
                    str(folder),
                    "--trainer.callbacks",
                    TIMER,
                    *device,
                ]
            )
            if code != 0:
                raise SystemExit(f"bench: ednaml fit failed (exit {code})")
        else:
            values = json.loads(spec.read_text())
            argv, sys.argv = (
                sys.argv,
                [
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
                    str(folder),
                    *device,
                ],
            )
            try:
                handwritten.main()
            finally:
                sys.argv = argv
    timings = json.loads(out.read_text())
    return {
        "step": statistics.median(timings["steps"]),
        "epoch": statistics.median(timings["epochs"][1:] or timings["epochs"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", type=task_names, default="digits,resnet18", help="comma-separated: " + ", ".join(TASKS)
    )
    parser.add_argument(
        "--repeats", type=at_least_one, default=4, help="rounds per task; the order alternates (default 4)"
    )
    parser.add_argument("--epochs", type=at_least_one, default=None, help="epochs per run (default: per task)")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ["WANDB_SILENT"] = "true"
    lines = [
        "| task | step a, ms | step b, ms | a/b step | epoch a, s | epoch b, s | a/b epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="ednaml-bench-") as tmp:
        work = Path(tmp)
        for name in args.tasks:
            config, default_epochs, _ = TASKS[name]
            if lacking := missing(name):
                print(f"bench: skipping {name}: {lacking}", file=sys.stderr)
                continue
            epochs = args.epochs or default_epochs
            resolved = yaml.safe_load(
                subprocess.run(
                    [str(EDNAML), "fit", "--config", str(config), "--EXECUTION.EPOCHS", str(epochs), "--print_config"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            spec = work / f"{name}.spec.json"
            spec.write_text(json.dumps(spec_from_config(resolved)))
            runs: dict[str, list[dict[str, float]]] = {"ednaml": [], "lightning": []}
            for round_ in range(args.repeats):
                for who in ("ednaml", "lightning") if round_ % 2 == 0 else ("lightning", "ednaml"):
                    runs[who].append(one_run(who, config, spec, epochs, work / f"{name}-{who}-{round_}"))
                    print(
                        f"  {name} round {round_ + 1}/{args.repeats} {who}: step {runs[who][-1]['step'] * 1e3:.2f} ms",
                        file=sys.stderr,
                    )
            cells = []
            for key, scale in (("step", 1e3), ("epoch", 1.0)):
                a, b = ([r[key] for r in runs[who]] for who in ("ednaml", "lightning"))
                ratio = summarize([x / y for x, y in zip(a, b)])
                cells += [
                    f"{statistics.median(a) * scale:.2f}",
                    f"{statistics.median(b) * scale:.2f}",
                    f"{ratio['median']:.3f} ({ratio['min']:.3f}–{ratio['max']:.3f})",
                ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print(f"{args.repeats} alternated rounds in one process; median (min–max) of the paired ratios\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
