"""The multi-output config end to end: two labels, two LOSS entries, two parameter groups, a scheduler each."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from helpers import CONFIGS, run_ednaml, run_folders, summary

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("multi")
    result = run_ednaml("fit", "--config", str(CONFIGS / "digits-multi.yml"), cwd=cwd, env={"WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(cwd / "runs")
    return run


def test_both_outputs_learn_their_labels(multi_run):
    final = summary(multi_run)["final"]
    assert final["test/digit/accuracy"] >= 0.95
    assert final["test/parity/accuracy"] >= 0.95


def test_metrics_csv_has_every_loss_term_by_name_and_both_groups_learning_rates(multi_run):
    header = (multi_run / "metrics.csv").read_text().splitlines()[0].split(",")
    for term in ("digit/SoftmaxLogitsLoss", "digit/TripletLoss", "parity/SoftmaxLabelSmooth", "parity/CenterLoss"):
        assert f"train/{term}_step" in header and f"val/{term}" in header and f"test/{term}" in header, term
    for lr in ("lr/backbone/weight", "lr/backbone/bias", "lr/heads/weight", "lr/heads/bias", "lr/parity"):
        assert lr in header, lr
    for metric in ("val/digit/accuracy", "val/parity/f1_weighted", "test/parity/f1_micro"):
        assert metric in header


def test_the_parameter_group_table_is_base_lr_times_the_factors(multi_run):
    config = yaml.safe_load((multi_run / "config.yaml").read_text())
    entries = {e["OPTIMIZER_NAME"]: e for e in config["OPTIMIZER"] + config["LOSS_OPTIMIZER"]}
    table = json.loads((multi_run / "parameter_groups.json").read_text())
    assert {row["group"] for row in table} == {"backbone", "heads", "parity"}
    for row in table:
        entry = entries[row["group"]]
        bias = row["kind"] == "bias"
        assert row["lr"] == entry["BASE_LR"] * (entry["LR_BIAS_FACTOR"] if bias else 1.0)
        assert row["weight_decay"] == entry["WEIGHT_DECAY"] * (entry["WEIGHT_BIAS_FACTOR"] if bias else 1.0)
    heads_bias = next(r for r in table if r["group"] == "heads" and r["kind"] == "bias")
    assert (heads_bias["lr"], heads_bias["weight_decay"]) == (0.006, 0.00025)


def test_each_group_follows_its_own_scheduler(multi_run):
    rows = [line.split(",") for line in (multi_run / "metrics.csv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    backbone = [float(r[header.index("lr/backbone/weight")]) for r in rows if r[header.index("lr/backbone/weight")]]
    heads = [float(r[header.index("lr/heads/weight")]) for r in rows if r[header.index("lr/heads/weight")]]
    assert backbone[0] == pytest.approx(0.001) and backbone[-1] == pytest.approx(
        0.0003
    )  # StepLR(step_size=4, gamma=0.3) over 6 epochs
    assert heads[0] == pytest.approx(0.003) and heads[-1] < 0.0003  # cosine annealing towards 0 over T_max=6 epochs


def test_the_legacy_multiclassification_config_runs_with_only_its_data_reader_changed(tmp_path):
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "multiclassification-legacy.yml"),
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.limit_test_batches",
        "1",
        "--TRANSFORMATION.WORKERS",
        "0",
        "--TRANSFORMATION.BATCH_SIZE",
        "8",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    final = summary(run)["final"]
    # LOSS entries without NAME are named after their LABEL and read the output tracking it
    assert "train/color/SoftmaxLabelSmooth" in final and "train/type/SoftmaxLogitsLoss" in final
    assert "test/type/accuracy" in final and "test/out2/accuracy" in final


def test_check_shows_the_learning_rates_the_run_logged(multi_run):
    # `check` simulates the schedulers; each learning rate logged during epoch E must be its row E
    result = run_ednaml(
        "check", "--config", str(CONFIGS / "digits-multi.yml"), cwd=multi_run.parent, env={"WANDB_MODE": "disabled"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.split("learning rate at the start of each epoch", 1)[1].splitlines()[1:]
    header = lines[0].split()
    table = {int(row.split()[0]): dict(zip(header[1:], map(float, row.split()[1:]))) for row in lines[1:7]}
    assert sorted(table) == list(range(6))
    with (multi_run / "metrics.csv").open(newline="") as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("lr/parity")]
    assert {int(row["epoch"]) for row in logged} == set(range(6))  # every epoch logged its learning rates
    for row in logged:
        for group, value in table[int(row["epoch"])].items():
            assert float(row[f"lr/{group}"]) == pytest.approx(value, rel=1e-3), (row["epoch"], group)
