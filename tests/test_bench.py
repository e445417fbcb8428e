"""The benchmark runs from the repository: `python -m bench` on the digits, one short round."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

pytestmark = pytest.mark.e2e


def test_the_benchmark_times_all_three_contenders_and_reports_their_ratios(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "WANDB_MODE": "offline"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--tasks",
            "digits",
            "--repeats",
            "1",
            "--epochs",
            "2",
            "--json",
            str(out),
            "--report",
            str(tmp_path / "bench.md"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    digits = json.loads(out.read_text())["tasks"]["digits"]
    for who in ("ednaml", "lightning", "plain"):
        assert 0 < digits[who]["step"]["median"] < 1 and 0 < digits[who]["first_step"]["median"] < 60
        assert digits[who]["peak_mb"]["median"] > 100
    # a ratio of the two sides (one round: the ratio of their medians), not a copy of either; no timing bound
    ratio = digits["ednaml/lightning"]["step"]["median"]
    assert ratio == pytest.approx(digits["ednaml"]["step"]["median"] / digits["lightning"]["step"]["median"], rel=1e-6)
    assert digits["steps_per_epoch"] == 21  # 1,293 training digits in batches of 64
    assert set(digits["loader"]) == {"0", "2"}
    assert "| step, ms |" in (tmp_path / "bench.md").read_text()


def test_the_in_process_comparison_alternates_both_lightning_runs_in_one_process():
    env = {**os.environ, "WANDB_MODE": "offline"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", "--tasks", "digits", "--repeats", "2", "--epochs", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| digits |")]
    step_a, step_b, ratio = row.split("|")[2:5]
    assert float(step_a) > 0 and float(step_b) > 0
    assert float(ratio.split()[0]) > 0 and "–" in ratio  # the median of the two paired ratios, with their range
    assert result.stderr.count("digits round") == 4  # two rounds of both contenders


def test_a_task_whose_data_or_package_is_missing_is_named_with_how_to_get_it(monkeypatch):
    from bench import __main__ as bench

    config, epochs, _ = bench.TASKS["text"]
    monkeypatch.setitem(
        bench.TASKS, "text", (config, epochs, ("/nonexistent/fortunes", "apt-get install fortunes", "json", "-"))
    )
    assert bench.missing("text") == "/nonexistent/fortunes is missing (apt-get install fortunes)"
    monkeypatch.setitem(
        bench.TASKS, "text", (config, epochs, (str(ROOT), "-", "no_such_package_x", "pip install -e '.[text]'"))
    )
    assert bench.missing("text") == "the no_such_package_x package is missing (pip install -e '.[text]')"
    assert bench.missing("digits") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: --gpu would run")
def test_gpu_mode_without_a_gpu_says_so_before_it_starts():
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--gpu", "--tasks", "digits"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--gpu: torch sees no CUDA GPU here" in result.stderr


@pytest.mark.parametrize("module", ["bench", "bench.inprocess"])
@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "digit"], "'digit': the tasks are digits, resnet18, text"),
        (["--repeats", "0"], "'0': a whole number, 1 or more"),
    ],
)
def test_a_bad_argument_is_named_with_what_it_takes(module, args, message):
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr
