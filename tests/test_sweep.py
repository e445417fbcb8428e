"""`ednaml sweep`: the search space, trials as recorded runs, pruning, shared studies, stop and continue."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from helpers import CONFIGS, EDNAML, run_ednaml, run_folders, stopped_at_a_checkpoint, summary

from ednaml.errors import ConfigError
from ednaml.sweeps.space import read_space
from ednaml.tracking import wandb_log

optuna = pytest.importorskip("optuna", reason="the sweep extra: pip install 'ednaml[sweep]'")

# a short digits run: 2 epochs of 4 batches
SHORT = [
    "--EXECUTION.EPOCHS",
    "2",
    "--trainer.limit_train_batches",
    "4",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.limit_test_batches",
    "2",
]


def space_file(tmp_path: Path, text: str, name: str = "space.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_search_space_reads_ranges_steps_logs_and_choices(tmp_path):
    space = read_space(
        space_file(
            tmp_path,
            """
METRIC: val/loss
DIRECTION: minimize
SAMPLER: grid
PRUNER: {threshold: {upper: 5.0}}
SWEEP:
  OPTIMIZER.0.BASE_LR: {float: [0.001, 0.004], step: 0.001}
  MODEL.MODEL_KWARGS.width: {int: [16, 64], step: 16}
  LOSS.0.LOSSES: {choice: [[SoftmaxLogitsLoss], [SoftmaxLabelSmooth]]}
""",
        ),
        trials=100,
    )
    lr, width, loss = space.params
    assert [round(v, 6) for v in lr.grid()] == [0.001, 0.002, 0.003, 0.004] and width.grid() == [16, 32, 48, 64]
    assert (
        loss.grid() == [0, 1]
        and loss.value(1) == ["SoftmaxLabelSmooth"]
        and loss.probes() == [["SoftmaxLogitsLoss"], ["SoftmaxLabelSmooth"]]
    )
    assert space.limit == 4 * 4 * 2 and space.trials == 100  # a grid stops at its size
    assert space.describe()["PRUNER"] == {"threshold": {"upper": 5.0}} and space.direction == "minimize"


def test_the_shipped_search_space_checks_against_its_config(tmp_path, monkeypatch):
    from ednaml.sweeps.study import Sweep

    monkeypatch.chdir(tmp_path)
    space = read_space(CONFIGS / "digits-sweep.yml")
    assert [p.key for p in space.params] == ["OPTIMIZER.0.BASE_LR", "LOSS.0.LOSSES", "MODEL.MODEL_KWARGS.width"]
    Sweep(
        "digits-sweep", space, [str(CONFIGS / "digits.yml")], [], [], ""
    ).check_space()  # every choice and range end validates


def test_sampled_values_stay_in_their_space(tmp_path):
    space = read_space(
        space_file(
            tmp_path,
            """
SAMPLER: random
SWEEP:
  OPTIMIZER.0.BASE_LR: {float: [1.0e-4, 1.0e-1], log: true}
  MODEL.MODEL_KWARGS.width: {int: [16, 64], step: 16}
  LOSS.0.LOSSES: {choice: [[SoftmaxLogitsLoss], [SoftmaxLabelSmooth]]}
""",
        )
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    for _ in range(30):
        trial = study.ask()
        seen.append({p.key: p.suggest(trial) for p in space.params})
        study.tell(trial, 0.0)
    assert all(1e-4 <= s["OPTIMIZER.0.BASE_LR"] <= 1e-1 for s in seen)
    assert {s["MODEL.MODEL_KWARGS.width"] for s in seen} <= {16, 32, 48, 64}
    assert {tuple(s["LOSS.0.LOSSES"]) for s in seen} == {("SoftmaxLogitsLoss",), ("SoftmaxLabelSmooth",)}
    assert min(s["OPTIMIZER.0.BASE_LR"] for s in seen) < 1e-3  # log scale: the low decades are sampled too


def test_every_problem_of_a_sweep_file_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as caught:
        read_space(
            space_file(
                tmp_path,
                """
METRIC: accuracy
SAMPLER: grd
PRUNER: medain
TRIALS: 0
TRIAL: 3
SWEEP:
  OPTIMIZER.0.BASE_LR: {float: [0.1, 0.01]}
  MODEL.MODEL_KWARGS.width: {int: [16, 64], log: true, step: 8}
  LOSS.0.LOSSES: {choice: []}
  EXECUTION.EPOCHS: [1, 2]
""",
            )
        )
    text = str(caught.value)
    for expected in (
        "METRIC: 'accuracy'",
        "SAMPLER: 'grd'",
        "did you mean 'grid'",
        "PRUNER: 'medain'",
        "TRIALS: 0",
        "TRIAL: not a sweep key",
        "SWEEP.OPTIMIZER.0.BASE_LR.float: [0.1, 0.01]",
        "SWEEP.MODEL.MODEL_KWARGS.width.step",
        "SWEEP.LOSS.0.LOSSES.choice",
        "SWEEP.EXECUTION.EPOCHS: [1, 2]",
    ):
        assert expected in text, expected
    with pytest.raises(ConfigError, match=r"SWEEP.OPTIMIZER.0.BASE_LR: SAMPLER grid needs a finite set"):
        read_space(space_file(tmp_path, "SAMPLER: grid\nSWEEP: {OPTIMIZER.0.BASE_LR: {float: [0.1, 0.2]}}\n"))
    with pytest.raises(ConfigError, match=r"PRUNER.threshold: \{'lowr': 0.5\}"):
        read_space(
            space_file(
                tmp_path, "PRUNER: {threshold: {lowr: 0.5}}\nSWEEP: {OPTIMIZER.0.BASE_LR: {float: [0.1, 0.2]}}\n"
            )
        )


@pytest.mark.e2e
def test_a_space_that_can_give_an_invalid_config_is_reported_before_any_trial(tmp_path):
    space = space_file(
        tmp_path,
        """
SWEEP:
  LOSS.0.LOSSES: {choice: [[SoftmaxLogitsLoss], [NoSuchLoss]]}
  OPTIMIZER.0.BASE_LR: {float: [-1.0, 0.1]}
  MODEL.MODEL_KWARGS.widht: {int: [16, 64]}
""",
    )
    result = run_ednaml("sweep", "--config", str(CONFIGS / "digits.yml"), "--sweep", str(space), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (
        "SWEEP.LOSS.0.LOSSES: ['NoSuchLoss'] gives an invalid config" in result.stderr and "NoSuchLoss" in result.stderr
    )
    assert "SWEEP.OPTIMIZER.0.BASE_LR: -1.0 gives an invalid config" in result.stderr
    assert "SWEEP.MODEL.MODEL_KWARGS.widht: 16 gives an invalid config" in result.stderr and "width" in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "sweeps").exists()
    result = run_ednaml(
        "sweep", "--config", str(CONFIGS / "digits.yml"), "--sweep", str(space), "--trials", "zero", cwd=tmp_path
    )
    assert result.returncode == 2 and "--trials 'zero': a whole number of at least 1" in result.stderr
    result = run_ednaml(
        "sweep", "--config", str(CONFIGS / "digits.yml"), "--sweep", str(space), "--resume", "x", cwd=tmp_path
    )
    assert result.returncode == 2 and "`ednaml sweep` does not take --resume" in result.stderr
    result = run_ednaml("sweep", "--best", "../etc", cwd=tmp_path)
    assert result.returncode == 2 and "--best '../etc': a study name of letters" in result.stderr


@pytest.mark.e2e
def test_sweep_results_hold_no_storage_credentials(tmp_path, monkeypatch):
    from ednaml.sweeps.results import summary as sweep_summary
    from ednaml.sweeps.study import Sweep

    monkeypatch.chdir(tmp_path)
    space = read_space(space_file(tmp_path, "SWEEP: {OPTIMIZER.0.BASE_LR: {float: [0.001, 0.1]}}\n"))
    for address, shown in [
        ("postgresql://ednaml:hunter2-secret@db.example/optuna", "postgresql://***@db.example/optuna"),
        (
            "postgresql://ednaml:hunter2/secret@db.example/optuna?password=other-secret",
            "postgresql://***@db.example/optuna",
        ),
    ]:
        sweep = Sweep("s", space, [str(CONFIGS / "digits.yml")], [], [], address)
        sweep.study = optuna.create_study()
        record = json.dumps(sweep_summary(sweep))
        assert "hunter2" not in record and "other-secret" not in record and json.loads(record)["storage"] == shown
    # a storage that cannot be opened: its scheme and host named, not its password, and no traceback
    result = run_ednaml(
        "sweep",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--sweep",
        str(tmp_path / "space.yml"),
        cwd=tmp_path,
        env={"EDNAML_SWEEP_STORAGE": "nosuchdb://user:hunter2-secret@db.example/optuna"},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "--storage nosuchdb://***@db.example/optuna: cannot open the study there" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout


# ---- sweeps that train ----


def trials_of(folder: Path) -> list[dict]:
    return json.loads((folder / "sweep.json").read_text())["trials"]


@pytest.mark.e2e
def test_a_two_trial_sweep_leaves_two_recorded_runs_and_its_results(tmp_path):
    space = space_file(
        tmp_path,
        """
METRIC: val/accuracy
SAMPLER: random
SWEEP:
  OPTIMIZER.0.BASE_LR: {float: [1.0e-3, 1.0e-2], log: true}
  MODEL.MODEL_KWARGS.width: {int: [16, 32], step: 16}
""",
        "digits-sweep.yml",
    )
    result = run_ednaml(
        "sweep",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--sweep",
        str(space),
        "--trials",
        "2",
        "--parallel",
        "2",
        *SHORT,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "sweeps" / "digits-sweep"  # named after the config and the sweep file
    first, second = sorted(trials_of(folder), key=lambda t: t["started"])
    assert datetime.fromisoformat(second["started"]) < datetime.fromisoformat(first["started"]) + timedelta(
        seconds=first["seconds"]
    )
    record = json.loads((folder / "sweep.json").read_text())
    runs = run_folders(tmp_path / "runs")
    assert len(runs) == 2 and record["counts"] == {"complete": 2, "pruned": 0, "fail": 0, "running": 0}
    assert (folder / "study.journal").is_file() and record["storage"].startswith("journal:")
    for trial in record["trials"]:
        run = Path(trial["run"])
        assert run in runs and summary(run)["status"] == "finished"
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["OPTIMIZER"][0]["BASE_LR"] == trial["params"]["OPTIMIZER.0.BASE_LR"]
        assert config["MODEL"]["MODEL_KWARGS"]["width"] == trial["params"]["MODEL.MODEL_KWARGS.width"] in (16, 32)
        assert trial["value"] == summary(run)["best"]["val/accuracy"]["value"]  # the run's best validation value
        provenance = json.loads((run / "provenance.json").read_text())
        assert provenance["sweep"] == {
            "study": "digits-sweep",
            "trial": trial["number"],
            "metric": "val/accuracy",
            "sampled": trial["params"],
        }
        (log,) = run.glob("wandb/offline-run-*/*.wandb")
        info = wandb_log.run_info(log)
        assert (
            info["group"] == "digits-sweep"
            and f"trial:{trial['number']}" in info["tags"]
            and "sweep:digits-sweep" in info["tags"]
        )
        assert wandb_log.run_config(log)["OPTIMIZER.0.BASE_LR"] == trial["params"]["OPTIMIZER.0.BASE_LR"]
    best = max(record["trials"], key=lambda t: t["value"])
    assert record["best"]["number"] == best["number"] and f"best: trial {best['number']}" in result.stdout
    rows = (folder / "trials.csv").read_text().splitlines()
    assert (
        rows[0] == "number,state,val/accuracy,OPTIMIZER.0.BASE_LR,MODEL.MODEL_KWARGS.width,run,seconds"
        and len(rows) == 3
    )
    report = (folder / "report.html").read_text()
    assert (
        report.count("<svg") == 2
        and report.count('class="trial complete"') == 4
        and "val/accuracy against each sampled key" in report
    )
    from test_tracking import render

    dom, _ = render(folder / "report.html", tmp_path)  # drawn in headless Chromium
    assert (
        dom.count('class="trial complete"') == 4
        and 'aria-label="MODEL.MODEL_KWARGS.width"' in dom
        and "<h2>Best trial</h2>" in dom
    )

    listed = run_ednaml("runs", "--sweep", "digits-sweep", "--json", cwd=tmp_path)
    assert sorted(tmp_path / row["path"] for row in json.loads(listed.stdout)) == runs
    assert json.loads(run_ednaml("runs", "--sweep", "other", "--json", cwd=tmp_path).stdout) == []
    printed = run_ednaml("sweep", "--best", "digits-sweep", "--print_config", cwd=tmp_path)
    assert printed.returncode == 0 and yaml.safe_load(printed.stdout) == yaml.safe_load(
        (Path(best["run"]) / "config.yaml").read_text()
    )
    (tmp_path / "best.yml").write_text(printed.stdout)  # loadable as a config
    again = run_ednaml("fit", "--config", str(tmp_path / "best.yml"), "--print_config", cwd=tmp_path)
    assert (
        again.returncode == 0
        and yaml.safe_load(again.stdout)["OPTIMIZER"][0]["BASE_LR"] == best["params"]["OPTIMIZER.0.BASE_LR"]
    )


@pytest.mark.e2e
def test_a_trial_below_the_pruners_threshold_is_pruned(tmp_path):
    space = space_file(
        tmp_path,
        """
METRIC: val/accuracy
SAMPLER: grid
PRUNER: {threshold: {lower: 0.5}}
SWEEP:
  OPTIMIZER.0.BASE_LR: {choice: [1.0e-7]}
""",
    )
    result = run_ednaml(
        "sweep", "--config", str(CONFIGS / "digits.yml"), "--sweep", str(space), "--trials", "3", *SHORT, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (trial,) = trials_of(tmp_path / "sweeps" / "digits-space")  # a grid of one point: one trial
    run = Path(trial["run"])
    assert trial["state"] == "pruned" and trial["epochs_reported"] == 1 and trial["value"] < 0.5
    assert summary(run)["status"] == "pruned" and "pruned by the sweep's pruner after epoch 0" in summary(run)["error"]
    assert summary(run)["epochs"] == 0 and "trial 0 pruned" in result.stdout


@pytest.mark.e2e
def test_two_sweep_processes_share_one_study_without_duplicate_trials(tmp_path):
    space = space_file(
        tmp_path, "SAMPLER: random\nSWEEP: {OPTIMIZER.0.BASE_LR: {float: [1.0e-3, 1.0e-2], log: true}}\n"
    )
    journal = tmp_path / "shared" / "study.journal"
    journal.parent.mkdir()
    args = [
        "sweep",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--sweep",
        str(space),
        "--trials",
        "4",
        "--study",
        "shared",
        "--storage",
        str(journal),
        *SHORT,
        "--EXECUTION.EPOCHS",
        "1",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    processes = [
        subprocess.Popen(
            [str(EDNAML), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    study = optuna.load_study(
        study_name="shared",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
    )
    numbers = [t.number for t in study.trials]
    runs = [t.user_attrs["run"] for t in study.trials]
    # Optuna has no "ask only below N": two processes that both count 3 may each ask one
    assert numbers == list(range(len(numbers))) and 4 <= len(numbers) <= 5
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len(set(runs)) == len(runs) and sorted(runs) == sorted(str(r) for r in run_folders(tmp_path / "runs"))
    started = sorted(
        int(line.split()[1])
        for out, _ in outputs
        for line in out.splitlines()
        if line.startswith("trial ") and " started:" in line
    )
    assert started == numbers  # each trial run by one process


@pytest.mark.e2e
def test_a_sweep_stopped_by_sigterm_continues_its_trial_from_the_checkpoint(tmp_path):
    space = space_file(
        tmp_path, "SAMPLER: random\nSWEEP: {OPTIMIZER.0.BASE_LR: {float: [1.0e-3, 1.0e-2], log: true}}\n"
    )
    args = [
        "sweep",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--sweep",
        str(space),
        "--trials",
        "2",
        "--EXECUTION.EPOCHS",
        "3",
        "--SAVE.STEP_SAVE_FREQUENCY",
        "5",
    ]
    process, out, err = stopped_at_a_checkpoint(args, tmp_path)
    assert process.returncode == 143 and "continue from their last checkpoint" in err, err[-2000:]
    (trial,) = trials_of(tmp_path / "sweeps" / "digits-space")
    assert trial["state"] == "running" and summary(Path(trial["run"]))["status"] == "interrupted"

    result = run_ednaml("sweep", *args[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trial 0 continued" in result.stdout and "trial 1 started" in result.stdout
    first, second = trials_of(tmp_path / "sweeps" / "digits-space")
    assert [first["state"], second["state"]] == ["complete", "complete"] and first["run"] == trial["run"]
    resumed = summary(Path(first["run"]))
    assert resumed["status"] == "finished" and resumed["resumed"] == 1 and resumed["epochs"] == 3
    assert len(run_folders(tmp_path / "runs")) == 2  # the stopped trial was continued, not run again


@pytest.mark.e2e
def test_a_metric_the_runs_do_not_log_stops_the_sweep_with_the_names_they_do(tmp_path):
    space = space_file(tmp_path, "METRIC: val/acuracy\nSWEEP: {OPTIMIZER.0.BASE_LR: {float: [1.0e-3, 1.0e-2]}}\n")
    result = run_ednaml(
        "sweep",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--sweep",
        str(space),
        "--trials",
        "3",
        *SHORT,
        "--EXECUTION.EPOCHS",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "METRIC: 'val/acuracy' is not a value the runs log; did you mean 'val/accuracy'" in result.stderr
    assert [t["state"] for t in trials_of(tmp_path / "sweeps" / "digits-space")] == ["fail"]  # no second trial
