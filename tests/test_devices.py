"""The same numbers on any number of devices: an evaluation's every epoch value is computed from sums and
counts over exactly its samples, on 1, 2 or 3 CPU processes (gloo)."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import CONFIGS, run_ednaml, run_folders, summary

from ednaml.tracking import wandb_log
from ednaml.tracking.browse import Side, diff, format_diff

# 151 validation and 359 test samples in batches of 7: no process count here divides either split or its batches.
SPLITS = ["--EXECUTION.DATAREADER.CRAWLER_ARGS.val_fraction", "0.105", "--TRANSFORMATION.BATCH_SIZE", "7"]


def _epoch_values(run) -> dict[str, float]:
    """The last value of each val/ and test/ column of metrics.csv."""
    found: dict[str, float] = {}
    with (run / "metrics.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            found.update(
                {k: float(v) for k, v in row.items() if k.startswith(("val/", "test/")) and v not in ("", None)}
            )
    return found


@pytest.mark.e2e
def test_validation_and_test_give_the_same_losses_and_metrics_on_1_2_and_3_processes(tmp_path):
    trained = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        *SPLITS,
        "--EXECUTION.EPOCHS",
        "1",
        "--trainer.limit_train_batches",
        "20",
        "--trainer.enable_progress_bar",
        "false",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    seen: dict[tuple[str, int], dict[str, float]] = {}
    folders = {}
    for stage in ("validate", "test"):
        for devices in (1, 2, 3):
            before = set(run_folders(tmp_path / "runs"))
            result = run_ednaml(
                stage,
                "--ckpt_path",
                checkpoint,
                *SPLITS,
                "--trainer.accelerator",
                "cpu",
                "--trainer.devices",
                str(devices),
                "--trainer.strategy",
                "ddp" if devices > 1 else "auto",
                "--trainer.enable_progress_bar",
                "false",
                cwd=tmp_path,
                env={"WANDB_MODE": "offline" if stage == "test" else "disabled"},
            )
            assert result.returncode == 0, result.stderr[-3000:]
            assert "sync_dist" not in result.stderr  # nothing is logged that Lightning would average per process
            (new,) = set(run_folders(tmp_path / "runs")) - before
            folders[stage, devices] = new
            final = {k: v for k, v in summary(new)["final"].items() if k.startswith(("val/", "test/"))}
            assert final and final == pytest.approx(_epoch_values(new), abs=1e-6)
            seen[stage, devices] = final
    for stage in ("validate", "test"):
        one = seen[stage, 1]
        assert {
            "val/loss" if stage == "validate" else "test/loss",
            "val/accuracy" if stage == "validate" else "test/accuracy",
        } <= set(one)
        for devices in (2, 3):
            assert set(seen[stage, devices]) == set(one)
            for key, value in one.items():
                assert seen[stage, devices][key] == pytest.approx(value, abs=1e-6), (stage, devices, key)

    for devices in (1, 2):  # W&B holds what summary.json holds, the device count, and the run it tested
        test_run = folders["test", devices]
        (log,) = test_run.glob("wandb/offline-run-*/run-*.wandb")
        recorded = wandb_log.summary(log)
        assert {k: recorded[k] for k in seen["test", devices]} == seen["test", devices]
        config, info = wandb_log.run_config(log), wandb_log.run_info(log)
        assert config["devices"] == devices == config["provenance"]["machine"]["processes"]
        assert config["source_run"]["run_id"] == run.name and config["source_run"]["checkpoint"] == "last.ckpt"
        assert info["group"] == run.parent.name and info["job_type"] == "test" and run.name in info["notes"]
        assert (
            json.loads((log.parent / "files" / "wandb-summary.json").read_text())["test/loss"]
            == seen["test", devices]["test/loss"]
        )

    compared = run_ednaml("diff", str(folders["test", 1]), str(folders["test", 2]), cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr[-2000:]
    body = compared.stdout.split("\n\n", 1)[1]  # after the a: and b: lines
    assert body == (
        "config: same\ncomponents: same\nmachine: differs\n  processes: 1 -> 2\n"
        "  as the trainer section placed it: trainer.strategy auto -> ddp, trainer.devices 1 -> 2\n"
        "versions: same\ndata: same\nfinal metrics: same\n"
    ), compared.stdout


def _side(label: str, machine: dict, final: dict) -> Side:
    return Side(label, {"trainer": {}}, {"components": {}, "versions": {}, "data": {}, "machine": machine}, final)


def test_diff_names_the_process_and_thread_counts_first_and_not_float32_noise():
    a = _side(
        "a",
        {"processes": 1, "torch_threads": 2, "thread_settings": {}, "cpus": 2},
        {"test/loss": 0.2200279, "test/accuracy": 0.95},
    )
    b = _side(
        "b",
        {"processes": 2, "torch_threads": 1, "thread_settings": {"OMP_NUM_THREADS": "1"}, "cpus": 2},
        {"test/loss": 0.2200279 + 1.5e-8, "test/accuracy": 0.95},
    )
    shown = format_diff(diff(a, b))
    assert (
        "machine: differs\n  processes: 1 -> 2\n  torch_threads: 2 -> 1\n"
        '  thread_settings: {} -> {"OMP_NUM_THREADS": "1"}' in shown
    )
    assert "final metrics: same" in shown and "cpus" not in shown
    c = _side(
        "c",
        {"processes": 1, "torch_threads": 2, "thread_settings": {}, "cpus": 2},
        {"test/loss": 0.2210279, "test/accuracy": 0.95},
    )
    assert "test/loss: 0.220028 -> 0.221028" in format_diff(diff(a, c))
