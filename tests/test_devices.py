"""The same numbers on any number of devices: an evaluation's every epoch value is computed from sums and
counts over exactly its samples, on 1, 2 or 3 CPU processes (gloo)."""

from __future__ import annotations

import csv

import pytest

from conftest import CONFIGS, run_ednaml, run_folders, summary

pytestmark = pytest.mark.e2e

# 151 validation and 359 test samples in batches of 7: no process count here divides either split or its batches.
SPLITS = ["--EXECUTION.DATAREADER.CRAWLER_ARGS.val_fraction", "0.105", "--TRANSFORMATION.BATCH_SIZE", "7"]


def _epoch_values(run) -> dict[str, float]:
    """The last value of each val/ and test/ column of metrics.csv."""
    found: dict[str, float] = {}
    with (run / "metrics.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            found.update({k: float(v) for k, v in row.items() if k.startswith(("val/", "test/")) and v not in ("", None)})
    return found


def test_validation_and_test_give_the_same_losses_and_metrics_on_1_2_and_3_processes(tmp_path):
    trained = run_ednaml("fit", "--config", str(CONFIGS / "digits.yml"), *SPLITS, "--EXECUTION.EPOCHS", "1",
                         "--trainer.limit_train_batches", "20", "--trainer.enable_progress_bar", "false", cwd=tmp_path,
                         env={"WANDB_MODE": "disabled"})
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    seen: dict[tuple[str, int], dict[str, float]] = {}
    for stage in ("validate", "test"):
        for devices in (1, 2, 3):
            before = set(run_folders(tmp_path / "runs"))
            result = run_ednaml(stage, "--ckpt_path", checkpoint, *SPLITS, "--trainer.accelerator", "cpu", "--trainer.devices",
                                str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto",
                                "--trainer.enable_progress_bar", "false", cwd=tmp_path, env={"WANDB_MODE": "disabled"})
            assert result.returncode == 0, result.stderr[-3000:]
            assert "sync_dist" not in result.stderr  # nothing is logged that Lightning would average per process
            (new,) = set(run_folders(tmp_path / "runs")) - before
            final = {k: v for k, v in summary(new)["final"].items() if k.startswith(("val/", "test/"))}
            assert final and final == pytest.approx(_epoch_values(new), abs=1e-6)
            seen[stage, devices] = final
    for stage in ("validate", "test"):
        one = seen[stage, 1]
        assert {"val/loss" if stage == "validate" else "test/loss", "val/accuracy" if stage == "validate" else "test/accuracy"} <= set(one)
        for devices in (2, 3):
            assert set(seen[stage, devices]) == set(one)
            for key, value in one.items():
                assert seen[stage, devices][key] == pytest.approx(value, abs=1e-6), (stage, devices, key)
