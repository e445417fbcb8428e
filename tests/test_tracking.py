"""Every run recorded: provenance, W&B, secrets, resume after SIGKILL, runs / diff / reproduce, report.html."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers import CONFIGS, EDNAML, GLIBC, run_ednaml, run_folders, stopped_at_a_checkpoint, summary

from ednaml.tracking import wandb_log

pytestmark = pytest.mark.e2e

SHORT = [
    "--EXECUTION.EPOCHS",
    "2",
    "--trainer.limit_train_batches",
    "6",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.limit_test_batches",
    "2",
]
SECRET = "sk-test-0123456789abcdef"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A user's project: a git working tree with an uncommitted change, where two runs were made."""
    cwd = tmp_path_factory.mktemp("project")
    git(cwd, "init", "-q", "-b", "main")
    (cwd / "notes.txt").write_text("first\n")
    git(cwd, "add", "notes.txt")
    git(cwd, "-c", "user.email=a@b.c", "-c", "user.name=A", "commit", "-qm", "start")
    (cwd / "notes.txt").write_text("first\nchanged\n")
    env = {"MY_SERVICE_API_KEY": SECRET}
    for lr in ("0.003", "0.01"):
        result = run_ednaml(
            "fit",
            "--config",
            str(CONFIGS / "digits.yml"),
            *SHORT,
            "--OPTIMIZER.0.BASE_LR",
            lr,
            "--STORAGE.TOKEN",
            SECRET,
            cwd=cwd,
            env=env,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return cwd


def runs(project: Path) -> list[Path]:
    return sorted(run_folders(project / "runs"), key=lambda r: summary(r)["started"] + r.name)


def test_provenance_records_code_versions_machine_data_and_components(project):
    run = runs(project)[0]
    record = json.loads((run / "provenance.json").read_text())
    assert record["command"][0] == "ednaml" and "--OPTIMIZER.0.BASE_LR" in record["command"]
    assert {"ednaml", "torch", "lightning", "python"} <= set(record["versions"])
    assert (
        any(p.startswith("torch==") for p in record["versions"]["packages"])
        and len(record["versions"]["packages_sha256"]) == 64
    )
    assert record["git"]["branch"] == "main" and record["git"]["dirty"] is True
    assert "+changed" in (run / record["git"]["diff_file"]).read_text()
    assert record["seed"] == 0 and record["machine"]["cpus"] >= 1
    if GLIBC and not any(k.startswith("MALLOC_") or k == "GLIBC_TUNABLES" for k in os.environ):
        assert record["machine"]["allocator"] == {"mmap_threshold": 32 << 20, "trim_threshold": 64 << 20}
    assert (
        record["data"]["samples"] == {"train": 1294, "val": 144, "test": 359} and record["data"]["hashed"] == "content"
    )
    arch = record["components"]["MODEL.MODEL_ARCH"]
    assert arch["class"] == "ednaml.models.classification.SmallCNN" and len(arch["source_sha256"]) == 64
    assert record["components"]["OPTIMIZER[0].OPTIMIZER"]["class"] == "torch.optim.adam.Adam"
    assert record["parameter_groups"] == json.loads((run / "parameter_groups.json").read_text())
    assert record["parameters"]["model"] == record["parameters"]["model_trainable"] > 0
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["ednaml"]["config"] == yaml.safe_load((run / "config.yaml").read_text())
    assert checkpoint["ednaml"]["provenance"]["data"] == record["data"]


def test_a_secret_from_the_environment_is_written_nowhere(project):
    for run in runs(project):
        for path in run.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path
    assert "TOKEN: '***'" in (runs(project)[0] / "config.yaml").read_text()


def test_the_wandb_run_holds_config_provenance_metrics_and_the_run_record(project):
    run = runs(project)[0]
    (log,) = run.glob("wandb/offline-run-*/run-*.wandb")
    config = wandb_log.run_config(log)
    assert config["OPTIMIZER"][0]["BASE_LR"] == 0.003 and config["provenance"]["run_id"] == run.name
    kinds = [r.WhichOneof("record_type") for r in wandb_log.records(log)]
    artifacts = [r.artifact for r in wandb_log.records(log) if r.WhichOneof("record_type") == "artifact"]
    assert "history" in kinds and any(a.type == "run-record" for a in artifacts)
    steps = [r["trainer/global_step"] for r in wandb_log.history(log) if "train/loss_step" in r]
    assert steps == sorted(set(steps))


def test_runs_lists_newest_first_and_filters_by_config_key(project):
    result = run_ednaml("runs", "--json", cwd=project)
    rows = json.loads(result.stdout)
    assert [r["run_id"] for r in rows] == [r.name for r in reversed(runs(project))]
    filtered = json.loads(run_ednaml("runs", "--where", "OPTIMIZER.0.BASE_LR=0.01", "--json", cwd=project).stdout)
    assert [r["run_id"] for r in filtered] == [runs(project)[1].name]
    assert json.loads(run_ednaml("runs", "--status", "failed", "--json", cwd=project).stdout) == []
    table = run_ednaml("runs", cwd=project).stdout
    assert table.splitlines()[0].split() == [
        "experiment",
        "run_id",
        "started",
        "status",
        "stage",
        "epochs",
        "best",
        "final",
        "wandb",
    ]
    assert f"digits/digits-v1-smallcnn-all/smallcnn-all-{runs(project)[0].name[-6:]}" in table
    finals = {r.name: summary(r)["final"]["test/accuracy"] for r in runs(project)}
    cut = (min(finals.values()) + max(finals.values())) / 2 if len(set(finals.values())) > 1 else max(finals.values())
    above = json.loads(run_ednaml("runs", "--where", f"test/accuracy>={cut}", "--json", cwd=project).stdout)
    assert {r["run_id"] for r in above} == {name for name, value in finals.items() if value >= cut}
    assert run_ednaml("runs", "--where", "test/accuracy>2", cwd=project).stdout.strip() == "no runs match"
    assert (
        run_ednaml(
            "runs", "--where", "best.val/loss<1e9", "--where", "OPTIMIZER.0.BASE_LR!=0.01", "--json", cwd=project
        ).stdout.count('"run_id"')
        == 1
    )


def test_diff_of_two_runs_names_the_changed_learning_rate_first(project):
    a, b = runs(project)
    result = run_ednaml("diff", a.name, b.name, cwd=project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    config = lines.index("config: 1 difference")
    assert lines[config + 1] == "  OPTIMIZER[0].BASE_LR: 0.003 -> 0.01"
    assert lines.index("components: same") > config and "versions: same" in lines and "data: same" in lines
    assert lines.index("final metrics: differ") > lines.index("data: same")


def test_diff_takes_a_config_file_too(project, tmp_path):
    a = runs(project)[0]
    changed = yaml.safe_load((a / "config.yaml").read_text())
    changed["TRANSFORMATION"]["BATCH_SIZE"] = 32
    path = tmp_path / "other.yml"
    path.write_text(yaml.safe_dump(changed))
    lines = run_ednaml("diff", str(a), str(path), cwd=project).stdout.splitlines()
    assert lines[lines.index("config: 1 difference") + 1] == "  TRANSFORMATION.BATCH_SIZE: 64 -> 32"


def render(report: Path, tmp_path: Path) -> tuple[str, Any]:
    """The DOM and a screenshot of report.html in headless Chromium (skipped where it is not installed)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,1600",
    ]
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1600)
    assert len(image.getcolors(maxcolors=1_000_000)) > 50  # drawn plots and text, not a blank page
    return dom, image


def test_report_html_renders_in_headless_chromium_with_its_plots(project, tmp_path):
    report = runs(project)[0] / "report.html"
    text = report.read_text()
    assert text.count("<svg") >= 4 and "<polyline" in text and "Parameter groups" in text and "Confusion matrix" in text
    dom, image = render(report, tmp_path)
    assert dom.count("<polyline") >= 3 and "digits-v1-smallcnn-all" in dom
    assert dom.index("<h2>Pipeline</h2>") < dom.index("<h2>Final metrics</h2>")  # the pipeline heads the report
    assert "MODEL.MODEL_ARCH" in dom and "ednaml.models.classification.SmallCNN" in dom
    assert (
        'class="baseline"' in dom
        and "majority baseline" in dom
        and "<h2>Checkpoints</h2>" in dom
        and "last.ckpt" in dom
    )
    assert (
        'class="before"' in dom and "optimizer step" in dom and 'class="grid"' in dom
    )  # the pass before training; labelled axes
    assert "keys differ from the defaults" in dom and "OPTIMIZER[0].BASE_LR" in dom.split("<details>")[0]


def test_reproduce_starts_a_new_run_with_the_same_config_and_seed_and_shows_the_diff(project):
    source = runs(project)[0]
    result = run_ednaml("reproduce", source.name, cwd=project, env={"MY_SERVICE_API_KEY": SECRET})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "config: same" in result.stdout and "components: same" in result.stdout
    assert "final metrics: same" in result.stdout  # same seed, same data order, CPU: same numbers
    assert len(run_folders(project / "runs")) == 3


def kill_mid_epoch(cwd: Path, args: list[str]) -> Path:
    """Start `ednaml fit`, SIGKILL it once a mid-epoch checkpoint of its second epoch exists."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    process = subprocess.Popen(
        [str(EDNAML), "fit", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not list(cwd.glob("runs/*/*/checkpoints/*_epoch1_step30.ckpt")):
        assert process.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (run,) = run_folders(cwd / "runs")
    return run


def test_a_run_killed_mid_epoch_resumes_to_the_same_result_as_an_uninterrupted_one(tmp_path):
    args = [
        "--config",
        str(CONFIGS / "digits.yml"),
        "--EXECUTION.EPOCHS",
        "3",
        "--SAVE.STEP_SAVE_FREQUENCY",
        "5",
        "--trainer.deterministic",
        "true",
        "--trainer.enable_progress_bar",
        "false",
    ]
    (tmp_path / "whole").mkdir()
    (tmp_path / "killed").mkdir()
    whole = run_ednaml("fit", *args, cwd=tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    (reference,) = run_folders(tmp_path / "whole" / "runs")

    run = kill_mid_epoch(tmp_path / "killed", args)
    assert summary(run)["status"] == "running"  # SIGKILL: nothing could mark it
    different = run_ednaml(
        "fit", "--resume", str(run), "--config", str(CONFIGS / "digits.yml"), cwd=tmp_path / "killed"
    )
    assert different.returncode == 2 and "the config differs from the run's" in different.stderr
    assert (
        "SAVE.STEP_SAVE_FREQUENCY: the run has 5, given 0" in different.stderr
    )  # (12 epochs: a later horizon is allowed)
    resumed = run_ednaml("fit", "--resume", run.name, cwd=tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    done = summary(run)
    assert done["status"] == "finished" and done["resumed"] == 1 and done["epochs"] == 3
    assert done["final"] == summary(reference)["final"]
    # every step once, in both metrics.csv and the W&B history, exactly as in the run that was never killed
    assert (run / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()

    def history(folder: Path) -> list:
        rows = [r for log in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")) for r in wandb_log.history(log)]
        metrics = [
            r for r in rows if not any(k.endswith("/_type") for k in r)
        ]  # not the tables each process logs at its start
        return sorted(
            json.dumps({k: v for k, v in r.items() if not k.startswith("_")}, sort_keys=True) for r in metrics
        )

    assert len(list(run.glob("wandb/offline-run-*"))) == 2  # one W&B run id, written by two processes
    assert history(run) == history(reference)
    steps = [
        row["_step"] for log in sorted(run.glob("wandb/offline-run-*/run-*.wandb")) for row in wandb_log.history(log)
    ]
    assert steps == sorted(set(steps))  # in the order `wandb sync` sends them: no step goes back or repeats


def test_a_run_stopped_and_resumed_continues_its_wandb_steps(tmp_path):
    process, _, err = stopped_at_a_checkpoint(
        [
            "fit",
            "--config",
            str(CONFIGS / "digits.yml"),
            "--EXECUTION.EPOCHS",
            "3",
            "--SAVE.STEP_SAVE_FREQUENCY",
            "5",
            "--trainer.enable_progress_bar",
            "false",
        ],
        tmp_path,
    )
    assert process.returncode == 143, err[-2000:]
    (run,) = run_folders(tmp_path / "runs")
    resumed = run_ednaml("fit", "--resume", run.name, "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    logs = sorted(run.glob("wandb/offline-run-*/run-*.wandb"))
    assert [wandb_log.run_info(log)["id"] for log in logs] == [run.name, run.name]  # one W&B run, two processes
    for log in logs:  # each offline folder holds what an online run's files/ holds
        files = log.parent / "files"
        assert yaml.safe_load((files / "config.yaml").read_text())["EXECUTION"]["value"]["EPOCHS"] == 3
        assert json.loads((files / "wandb-summary.json").read_text())["_step"] == wandb_log.history(log)[-1]["_step"]
    first, second = (wandb_log.history(log) for log in logs)
    assert first and second  # the stopped process closed its W&B file properly
    steps = [row["_step"] for row in first + second]
    assert steps == sorted(set(steps)) and second[0]["_step"] == first[-1]["_step"] + 1
    global_steps = [row["trainer/global_step"] for row in first + second if "train/loss_step" in row]
    assert global_steps == sorted(set(global_steps)) and global_steps[-1] == 60
    (resume,) = summary(run)["resumes"]  # where it resumed, marked on every chart of its report
    assert 25 <= resume["step"] < 42
    copy = tmp_path / "elsewhere" / run.name  # both processes' W&B runs sync from a moved run folder
    shutil.copytree(run, copy, symlinks=True)
    result = run_ednaml("sync", str(copy), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.count("files would be sent") == 2, result.stderr[-2000:]
    assert result.stdout.count("the run folder was moved") == 2
    dom, _ = render(run / "report.html", tmp_path)
    assert dom.count('class="resume"') >= 3 and "resumed" in dom


# ---- debug runs, online W&B without a login ----


def test_a_debug_run_is_marked_in_its_summary_in_runs_and_in_wandb(tmp_path):
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--trainer.limit_train_batches",
        "3",
        "--trainer.limit_val_batches",
        "2",
        "--trainer.limit_test_batches",
        "2",
        "--EXECUTION.EPOCHS",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = run_folders(tmp_path / "runs")
    assert summary(run)["debug"] == [
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
    ]
    listed = run_ednaml("runs", cwd=tmp_path)
    assert "finished (debug)" in listed.stdout, listed.stdout
    (log,) = run.glob("wandb/offline-run-*/run-*.wandb")
    assert b"debug" in log.read_bytes()  # the W&B run's tag
    full = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--EXECUTION.EPOCHS",
        "1",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert full.returncode == 0, full.stderr[-2000:]
    (other,) = [r for r in run_folders(tmp_path / "runs") if r != run]
    assert "debug" not in summary(other)


def test_online_wandb_without_a_login_stops_before_the_run_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "NETRC"))}
    env.update({"HOME": str(tmp_path), "WANDB_MODE": "online"})
    for command in ("fit", "check"):
        result = subprocess.run(
            [str(EDNAML), command, "--config", str(CONFIGS / "digits.yml")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert (
            "LOGGING.WANDB_MODE: 'online' (from the WANDB_MODE environment variable) needs a W&B login" in result.stderr
        )
        assert "wandb login" in result.stderr and "WANDB_MODE=offline" in result.stderr
    assert not (tmp_path / "runs").exists()
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "0" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    found = subprocess.run(
        [str(EDNAML), "check", "--config", str(CONFIGS / "digits.yml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert found.returncode == 0, found.stderr[-2000:]  # a login is there: nothing refused (check sends nothing)


def test_two_runs_of_one_study_share_a_project_in_two_groups_with_tags_flat_keys_and_best_values(tmp_path):
    short = [*SHORT, "--trainer.enable_progress_bar", "false"]
    for backbone, env in (("narrow", {}), ("wide", {"WANDB_NOTES": "notes from the environment win"})):
        result = run_ednaml(
            "fit",
            "--config",
            str(CONFIGS / "digits.yml"),
            *short,
            "--SAVE.MODEL_BACKBONE",
            backbone,
            "--LOGGING.WANDB_NOTES",
            "from the config",
            cwd=tmp_path,
            env=env,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    logs = {run.parent.name: next(run.glob("wandb/offline-run-*/run-*.wandb")) for run in runs(tmp_path)}
    info = {experiment: wandb_log.run_info(log) for experiment, log in logs.items()}
    assert sorted(info) == ["digits-v1-narrow-all", "digits-v1-wide-all"]
    assert {i["project"] for i in info.values()} == {"digits"}  # the study: SAVE.MODEL_CORE_NAME
    assert {i["group"] for i in info.values()} == set(info)  # the experiment
    narrow, wide = info["digits-v1-narrow-all"], info["digits-v1-wide-all"]
    assert (
        narrow["job_type"] == "fit"
        and narrow["name"].startswith("narrow-all-")
        and len(narrow["name"]) == len("narrow-all-") + 6
    )
    assert {"model:SmallCNN", "backbone:narrow", "qualifier:all", "data:Digits", "stage:fit"} <= set(narrow["tags"])
    assert (narrow["notes"], wide["notes"]) == ("from the config", "notes from the environment win")
    config = wandb_log.run_config(logs["digits-v1-narrow-all"])
    assert config["OPTIMIZER.0.BASE_LR"] == config["OPTIMIZER"][0]["BASE_LR"] and config["LOSS.digit.LOSSES"] == [
        "SoftmaxLogitsLoss"
    ]
    record = wandb_log.summary(logs["digits-v1-narrow-all"])
    validation = [row for row in wandb_log.history(logs["digits-v1-narrow-all"]) if "val/accuracy" in row]
    assert record["val/accuracy"] == {"max": max(row["val/accuracy"] for row in validation)}
    assert record["val/loss"] == {"min": min(row["val/loss"] for row in validation)}
    folder = summary(logs["digits-v1-narrow-all"].parents[2])
    assert (
        record["status"] == "finished"
        and record["best"] == folder["best"]
        and record["majority_baseline"] == folder["majority_baseline"]
    )
    assert (
        record["checkpoints"]["last"].endswith("last.ckpt")
        and record["test/accuracy"] == folder["final"]["test/accuracy"]
    )
    tables = {}  # the pipeline and parameter-group tables, as W&B keeps them beside the run's log
    for name in ("pipeline", "parameter_groups"):
        (path,) = logs["digits-v1-narrow-all"].parent.glob(f"files/media/table/{name}_*.table.json")
        tables[name] = json.loads(path.read_text())
    pipeline = tables["pipeline"]
    assert pipeline["columns"] == ["step", "config key", "name", "class", "source sha256", "arguments"]
    steps = [row[0] for row in pipeline["data"]]
    assert (
        steps[0] == "load data"
        and steps[-1] == "save"
        and {"preprocess", "model", "weights", "losses", "optimizers"} <= set(steps)
    )
    model = next(row for row in pipeline["data"] if row[1] == "MODEL.MODEL_ARCH")
    assert model[2:4] == ["SmallCNN", "ednaml.models.classification.SmallCNN"] and json.loads(model[5])["width"] == 32
    assert [row[0] for row in tables["parameter_groups"]["data"]] == ["opt-1", "opt-1"]
    assert "<h2>Pipeline</h2>" in (logs["digits-v1-narrow-all"].parents[2] / "report.html").read_text()
    with (logs["digits-v1-narrow-all"].parents[2] / "metrics.csv").open(newline="") as handle:  # 6 steps an epoch
        lr_rows = [
            (int(row["epoch"]), int(row["step"])) for row in csv.DictReader(handle) if row.get("lr/opt-1/weight")
        ]
    assert lr_rows == [
        (0, 1),
        (0, 6),
        (1, 10),
        (1, 12),
    ]  # every STEP_VERBOSE (10) steps, the first, and each epoch's end


def test_a_run_writes_nothing_under_the_home_directory(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        *SHORT,
        "--trainer.enable_progress_bar",
        "false",
        cwd=tmp_path,
        env={"HOME": str(home), "XDG_CACHE_HOME": "", "XDG_DATA_HOME": "", "XDG_CONFIG_HOME": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p for p in home.rglob("*")] == []
    (run,) = run_folders(tmp_path / "runs")
    staged = list((run / "wandb" / "staging").rglob("*"))
    assert staged and all(
        p.is_relative_to(run) for p in staged
    )  # the run-record artifact's files, staged in the run folder


def artifact_paths(log: Path) -> list[str]:
    return [
        entry.local_path
        for record in wandb_log.records(log)
        if record.WhichOneof("record_type") == "artifact"
        for entry in record.artifact.manifest.contents
    ]


def test_sync_of_a_moved_run_folder_sends_its_own_staged_artifacts(project, tmp_path):
    from ednaml.tracking.sync import relocate, sync_plan

    copy = tmp_path / "elsewhere"
    shutil.copytree(project / "runs", copy)
    run = runs(project)[0]
    result = run_ednaml("sync", run.name, "--root", str(copy), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    copied = copy / run.parent.name / run.name
    (offline,) = copied.glob("wandb/offline-run-*")
    (log,) = offline.glob("*.wandb")
    recorded = artifact_paths(log)  # the run-record and the two tables, staged in the original run folder
    assert len(recorded) == 4 and all(path.startswith(str(run / "wandb" / "staging")) for path in recorded)
    listed = {
        line.strip() for line in result.stdout.splitlines() if line.startswith("  ") and not line.startswith("  (")
    }
    sent = {str(p.relative_to(copied)) for p in [log, *(offline / "files").rglob("*")] if p.is_file()}
    sent |= {str(Path(path).relative_to(run)) for path in recorded}
    assert listed == sent and f"{offline}: {len(sent)} files would be sent" in result.stdout
    assert "the run folder was moved: 4 artifact paths" in result.stdout
    assert artifact_paths(log) == recorded  # a dry run writes nothing

    before = {"history": wandb_log.history(log), "config": wandb_log.run_config(log), "summary": wandb_log.summary(log)}
    (plan,) = sync_plan(copied)
    assert relocate(plan) == 4  # what `ednaml sync` does before `wandb sync` (which needs the network)
    assert artifact_paths(log) == [str(copied / Path(path).relative_to(run)) for path in recorded]
    assert all(Path(path).is_file() for path in artifact_paths(log))
    assert {
        "history": wandb_log.history(log),
        "config": wandb_log.run_config(log),
        "summary": wandb_log.summary(log),
    } == before
    assert artifact_paths(next(run.glob("wandb/offline-run-*/*.wandb"))) == recorded  # the original is untouched
    assert sync_plan(copied)[0].moved == {} and sync_plan(copied)[0].problems == []


def test_sync_sends_nothing_when_a_run_folder_names_files_outside_it(project, tmp_path):
    from ednaml.tracking.sync import sync_plan

    copy = tmp_path / "untrusted"
    shutil.copytree(runs(project)[0], copy, symlinks=True)
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY\n")
    (log,) = copy.glob("wandb/offline-run-*/*.wandb")
    header, items = wandb_log.payloads(log)
    original = list(items)
    for i, payload in enumerate(items):  # the run-record artifact now names a file of the user's home
        record = wandb_log.parse(payload)
        if record.WhichOneof("record_type") == "artifact" and record.artifact.type == "run-record":
            record.artifact.manifest.contents[0].local_path = str(secret)
            items[i] = record.SerializeToString()
    wandb_log.write_log(log, header, items)
    for planted, expected in [
        ("manifest", f"an artifact manifest file {secret} is named"),
        ("garbage", "cannot be read"),
    ]:
        changed = list(original)
        for i, payload in enumerate(changed):
            record = wandb_log.parse(payload)
            if record.WhichOneof("record_type") == "artifact":
                if planted == "manifest":  # W&B reads the entries of a manifest file, wherever it is
                    record.artifact.manifest.manifest_file_path = str(secret)
                    changed[i] = record.SerializeToString()
                else:  # a record nothing can read, with more after it: what follows is unchecked, so nothing is sent
                    changed.insert(i, b"\xff\xff\xff\xff")
                break
        copied = tmp_path / f"untrusted-{planted}"
        shutil.copytree(copy, copied, symlinks=True)
        wandb_log.write_log(next(copied.glob("wandb/offline-run-*/*.wandb")), header, changed)
        (plan,) = sync_plan(copied)
        assert any(expected in problem for problem in plan.problems), plan.problems
    (log.parent / "files" / "media" / "key.txt").symlink_to(secret)
    for flags in ([], ["--dry-run"]):
        result = run_ednaml("sync", str(copy), *flags, cwd=tmp_path, env={"WANDB_BASE_URL": "http://127.0.0.1:9"})
        assert result.returncode == 2 and "nothing was sent" in result.stderr, result.stderr[-2000:]
        assert (
            f"artifact file {secret} is outside the run folder" in result.stderr
            and "key.txt leads outside the run folder" in result.stderr
        )
        assert "Traceback" not in result.stderr and not list(log.parent.glob("*.synced"))
    (log.parent / "files" / "media" / "key.txt").unlink()
    (plan,) = sync_plan(copy, trust=True)  # --trust: the user's own staging directory, outside on purpose
    assert plan.problems == [] and secret in plan.artifacts
    result = run_ednaml("sync", str(copy), "--dry-run", "--trust", cwd=tmp_path)
    assert result.returncode == 0 and f"  {secret}" in result.stdout, result.stderr[-2000:]


def test_w_and_b_tables_and_summary_are_logged_without_importing_pandas(tmp_path):
    """pandas is installed here (the datasets extra): W&B would import it for any logged Table or list."""
    script = """
import json, sys
from types import SimpleNamespace
import wandb
from ednaml.tracking.wandb import log_tables, record_summary
run = wandb.init(dir=sys.argv[1], project="tables", mode="offline")
log_tables(SimpleNamespace(experiment=run), [("pipeline", ["step", "name"], [["model", "SmallCNN"], ["loss", 1.5]]), \
("empty", ["a"], [])])
record_summary(SimpleNamespace(experiment=run), {"status": "finished", "checkpoints": {"saved": ["a.ckpt", "b.ckpt"]},
                                                 "final": {"test/loss": 0.25}, \
"best": {"val/loss": {"value": 0.2, "epoch": 1}}})
print(json.dumps({"pandas": "pandas" in sys.modules, "pd_available": wandb.util.pd_available}))
wandb.finish()
"""
    result = subprocess.run(
        [EDNAML.parent / "python", "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"pandas": False, "pd_available": True}
    (table,) = tmp_path.glob("wandb/offline-run-*/files/media/table/pipeline_*.table.json")
    assert json.loads(table.read_text())["data"] == [["model", "SmallCNN"], ["loss", "1.5"]]
    assert not list(tmp_path.glob("wandb/offline-run-*/files/media/table/empty_*"))
    (log,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    recorded = wandb_log.summary(log)
    assert (
        recorded["checkpoints"] == {"saved": ["a.ckpt", "b.ckpt"]}
        and recorded["test/loss"] == 0.25
        and recorded["status"] == "finished"
    )


@pytest.mark.e2e
def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    process = subprocess.Popen(
        [str(EDNAML), "list"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process.stdout.close()  # `ednaml list | head -0`: the reader is gone before anything is written
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere_unless_the_trainer_section_says():
    import io

    from ednaml.adapters.callbacks import LineProgress, progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    (lines,) = progress({}, 10, io.StringIO())
    assert isinstance(lines, LineProgress) and lines.every == 10
    assert progress({}, 10, Terminal()) == []  # Lightning's own bar
    assert progress({"enable_progress_bar": False}, 10, io.StringIO()) == []
    assert progress({"enable_progress_bar": True}, 10, io.StringIO()) == []
    assert (
        progress({"callbacks": [{"class_path": "lightning.pytorch.callbacks.RichProgressBar"}]}, 10, io.StringIO())
        == []
    )


@pytest.mark.e2e
def test_a_run_whose_output_is_not_a_terminal_prints_a_line_per_logging_interval(tmp_path):
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--EXECUTION.EPOCHS",
        "1",
        "--LOGGING.STEP_VERBOSE",
        "5",
        "--trainer.limit_train_batches",
        "12",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\r" not in result.stderr
    batches = [line for line in result.stderr.splitlines() if line.startswith("epoch 1/1 batch")]
    assert [line.split()[3] for line in batches] == ["5/12", "10/12", "12/12"] and all(
        "train/loss_step" in line for line in batches
    )
    assert any(
        line.startswith("epoch 1 validation: ") and "val/accuracy" in line for line in result.stderr.splitlines()
    )
    assert any(line.startswith("test: ") and "test/loss" in line for line in result.stderr.splitlines())


def test_a_finished_run_trains_longer_with_a_later_horizon_in_its_own_folder(tmp_path):
    short = [
        "--trainer.limit_train_batches",
        "5",
        "--trainer.limit_val_batches",
        "2",
        "--trainer.limit_test_batches",
        "2",
    ]
    first = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--EXECUTION.EPOCHS",
        "2",
        *short,
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert first.returncode == 0, first.stderr[-2000:]
    (run,) = run_folders(tmp_path / "runs")
    again = run_ednaml("fit", "--resume", str(run), cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert again.returncode == 2 and "--EXECUTION.EPOCHS N (more than 2)" in again.stderr, again.stderr[-2000:]
    longer = run_ednaml(
        "fit", "--resume", str(run), "--EXECUTION.EPOCHS", "4", cwd=tmp_path, env={"WANDB_MODE": "disabled"}
    )
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert run_folders(tmp_path / "runs") == [run]  # the same run, not a new one
    info = summary(run)
    assert info["status"] == "finished" and info["epochs"] == 4
    with (run / "metrics.csv").open(newline="") as handle:
        epochs = sorted({int(row["epoch"]) for row in csv.DictReader(handle) if row.get("train/loss")})
    assert epochs == [0, 1, 2, 3]  # each epoch trained once: two before, two after
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["resumes"][-1]["continued"] == {"EXECUTION.EPOCHS": [2, 4]}
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["EXECUTION"]["EPOCHS"] == 4 and recorded["trainer"]["max_epochs"] == 4
    fewer = run_ednaml(
        "fit", "--resume", str(run), "--EXECUTION.EPOCHS", "3", cwd=tmp_path, env={"WANDB_MODE": "disabled"}
    )
    assert fewer.returncode == 2 and "the run finished its 4 epochs" in fewer.stderr, fewer.stderr[-2000:]
