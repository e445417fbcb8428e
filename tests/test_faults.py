"""Faults lose nothing: SIGTERM, NaN losses, kills during a save, bad checkpoints, a failing backup, DDP."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers import CONFIGS, EDNAML, run_ednaml, run_folders, summary

pytestmark = pytest.mark.e2e
QUIET = ["--trainer.enable_progress_bar", "false"]


def start(cwd: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.Popen(
        [str(EDNAML), "fit", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(cwd: Path, pattern: str, process: subprocess.Popen, poll: float = 0.02) -> None:
    deadline = time.time() + 300
    while not list(cwd.glob(pattern)):
        assert process.poll() is None and time.time() < deadline, "the run ended first"
        time.sleep(poll)


def _shipped(config: Path) -> Any:
    """The fortunes example needs a system package; every other shipped config's data comes with pip."""
    if config.name == "fortunes-text.yml" and not Path("/usr/share/games/fortunes").is_dir():
        return pytest.param(
            config, marks=pytest.mark.skip(reason="its data is Debian's fortunes package (apt-get install fortunes)")
        )
    return config


def _local_data(config: Path, folder: Path) -> list[str]:
    """The configs that read the user's own files get small ones, made here."""
    from test_ecosystem import digits_as_mnist, reviews

    if config.name == "hf-text-parquet.yml":
        pytest.importorskip("datasets", reason="the datasets extra").Dataset.from_dict(reviews(120)).to_parquet(
            folder / "r.parquet"
        )
        return ["--EXECUTION.DATAREADER.CRAWLER_ARGS.path", str(folder / "r.parquet")]
    if config.name == "mnist-torchvision.yml":
        digits_as_mnist(folder / "mnist")
        return ["--EXECUTION.DATAREADER.CRAWLER_ARGS.root", str(folder / "mnist")]
    if config.name == "digits-timm.yml":
        pytest.importorskip("timm", reason="the timm extra")
    return []


SHIPPED = [
    _shipped(c) for c in sorted(CONFIGS.glob("*.yml")) if "SWEEP" not in yaml.safe_load(c.read_text())
]  # not search spaces


@pytest.mark.parametrize("config", SHIPPED, ids=lambda c: c.stem)
def test_check_passes_every_shipped_config(tmp_path, config):
    data = tmp_path / "data"
    data.mkdir()
    result = run_ednaml("check", "--config", str(config), *_local_data(config, data), cwd=tmp_path)
    assert result.returncode == 0, f"{config.name}: {result.stderr[-2000:]}"
    lines = result.stdout.splitlines()
    for section in (
        "data",
        "model",
        "losses (one batch)",
        "parameter groups",
        "learning rate at the start of each epoch",
        "checkpoints",
        "run folder",
        "ready to train",
    ):
        assert any(line.startswith(section) for line in lines), f"{config.name}: {section}"
    assert not (tmp_path / "runs").exists()  # a check trains nothing and writes nothing


def test_check_lists_five_different_mistakes_at_once(tmp_path):
    config = yaml.safe_load((CONFIGS / "digits.yml").read_text())
    config["EXECUTION"]["EPOCHS"] = "twelve"
    config["LOSS"][0]["LOSSES"] = ["SoftmaxLabelSmoth"]
    config["OPTIMIZER"][0]["OPTIMIZER_KWARGS"] = {"betaz": [0.9, 0.99]}
    config["SCHEDULER"][0]["SCHEDULER_NAME"] = "opt-2"
    config["trainer"]["max_epoch"] = 3
    path = tmp_path / "five.yml"
    path.write_text(yaml.safe_dump(config))
    result = run_ednaml("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "5 config errors" in result.stderr
    for key in (
        "EXECUTION.EPOCHS",
        "LOSS[0].LOSSES[0]",
        "OPTIMIZER[0].OPTIMIZER_KWARGS.betaz",
        "SCHEDULER[0].SCHEDULER_NAME",
        "trainer.max_epoch",
    ):
        assert key in result.stderr, key


def test_sigterm_saves_a_checkpoint_marks_the_run_interrupted_and_resume_finishes_it(tmp_path):
    process = start(
        tmp_path,
        "--config",
        str(CONFIGS / "digits.yml"),
        "--EXECUTION.EPOCHS",
        "3",
        "--SAVE.STEP_SAVE_FREQUENCY",
        "5",
        *QUIET,
    )
    wait_for(tmp_path, "runs/*/*/checkpoints/*_epoch1_step25.ckpt", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "continue with `ednaml fit --resume" in err
    (run,) = run_folders(tmp_path / "runs")
    info = summary(run)
    assert info["status"] == "interrupted" and "SIGTERM at step" in info["error"]
    stopped_at = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert 25 <= stopped_at < 42  # mid-epoch, after the signal
    resumed = run_ednaml("fit", "--resume", run.name, *QUIET, cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    info = summary(run)
    assert info["status"] == "finished" and info["epochs"] == 3 and info["global_step"] == 63 and info["resumed"] == 1


def test_a_nan_loss_stops_the_run_naming_the_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path):
    (tmp_path / "nan_loss.py").write_text(
        textwrap.dedent("""
        import torch
        import ednaml

        @ednaml.register.loss("NaNAfter")
        class NaNAfter(torch.nn.Module):
            \"\"\"Cross-entropy, until its call number `after` (two sanity-check batches count): then NaN.\"\"\"
            def __init__(self, after: int = 12):
                super().__init__()
                self.after, self.calls = after, 0
            def forward(self, logits, target):
                self.calls += 1
                loss = torch.nn.functional.cross_entropy(logits, target)
                return loss * float("nan") if self.calls > self.after and self.training else loss
    """)
    )
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--import",
        str(tmp_path / "nan_loss.py"),
        "--LOSS.0.LOSSES",
        "[NaNAfter]",
        "--SAVE.STEP_SAVE_FREQUENCY",
        "5",
        "--EXECUTION.SKIPEVAL",
        "true",
        *QUIET,
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the loss is nan at step 10" in result.stderr and "non-finite terms: digit/NaNAfter" in result.stderr
    (run,) = run_folders(tmp_path / "runs")
    assert summary(run)["status"] == "failed" and "step 10" in summary(run)["error"]
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 10
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_an_error_that_follows_a_nan_loss_is_reported_as_the_nan_step(tmp_path):
    # the bad step's update spoils the weights; the next step's loss fails on the NaN logits before
    # the losses are next checked: the report names the cause, not its consequence
    (tmp_path / "nan_then_error.py").write_text(
        textwrap.dedent("""
        import torch
        import ednaml

        @ednaml.register.loss("NaNThenError")
        class NaNThenError(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.calls = 0
            def forward(self, logits, target):
                self.calls += 1
                if not torch.isfinite(logits).all():
                    raise RuntimeError("logits are not finite")
                loss = torch.nn.functional.cross_entropy(logits, target)
                return loss * float("nan") if self.calls == 4 else loss
    """)
    )
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--import",
        str(tmp_path / "nan_then_error.py"),
        "--LOSS.0.LOSSES",
        "[NaNThenError]",
        "--EXECUTION.SKIPEVAL",
        "true",
        "--trainer.num_sanity_val_steps",
        "0",
        *QUIET,
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "the loss is nan at step 3 (epoch 0, batch 3)" in result.stderr
    (run,) = run_folders(tmp_path / "runs")
    assert summary(run)["status"] == "failed" and "step 3" in summary(run)["error"]


def test_a_kill_during_a_checkpoint_write_leaves_last_ckpt_loadable(tmp_path):
    # a ResNet-18 checkpoint (with Adam's state) takes long enough to write that the kill lands inside it
    process = start(
        tmp_path,
        "--config",
        str(CONFIGS / "digits-multi.yml"),
        "--SAVE.STEP_SAVE_FREQUENCY",
        "2",
        "--TRANSFORMATION.ARGS.i_shape",
        "[16, 16]",
        *QUIET,
    )
    wait_for(tmp_path, "runs/*/*/checkpoints/last.ckpt", process, poll=0.05)
    wait_for(tmp_path, "runs/*/*/checkpoints/.last.ckpt.tmp-*", process, poll=0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (run,) = run_folders(tmp_path / "runs")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] >= 2 and "ednaml" in checkpoint


def test_a_corrupted_foreign_or_mismatched_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint at all")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.ckpt")
    fit = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--EXECUTION.EPOCHS",
        "1",
        *QUIET,
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    (run,) = run_folders(tmp_path / "runs")
    cases = {
        "garbage.ckpt": ("test", "--ckpt_path", "garbage.ckpt"),
        "was not written by EdnaML": ("test", "--config", str(CONFIGS / "digits.yml"), "--ckpt_path", "foreign.ckpt"),
        "holds a different model than this config (MODEL.MODEL_KWARGS.width)": (
            "test",
            "--config",
            str(CONFIGS / "digits.yml"),
            "--MODEL.MODEL_KWARGS.width",
            "8",
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
        ),
        "does not exist": ("fit", "--config", str(CONFIGS / "digits.yml"), "--ckpt_path", "missing.ckpt"),
    }
    for expected, args in cases.items():
        result = run_ednaml(*args, cwd=tmp_path)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr, (
            args,
            result.stderr[-1500:],
        )


def test_a_backup_target_that_cannot_be_written_is_refused_before_the_run(tmp_path):
    (tmp_path / "blocked").write_text("a file where the backup folder should be")
    target = ["--SAVE.DRIVE_BACKUP", "true", "--SAVE.CHECKPOINT_DIRECTORY", str(tmp_path / "blocked" / "backups")]
    for command in ("check", "fit"):
        result = run_ednaml(
            command,
            "--config",
            str(CONFIGS / "digits.yml"),
            *target,
            *QUIET,
            cwd=tmp_path,
            env={"WANDB_MODE": "disabled"},
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert f"SAVE.CHECKPOINT_DIRECTORY: '{tmp_path / 'blocked' / 'backups'}' cannot take backups" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_backup_failing_during_the_run_is_reported_at_the_end_and_the_local_checkpoints_are_kept(tmp_path):
    from ednaml.config import resolve
    from ednaml.tracking.run_folder import experiment_name

    (tmp_path / "backups").mkdir()  # writable, but where the experiment's folder goes there is a file
    (tmp_path / "backups" / experiment_name(resolve([CONFIGS / "digits.yml"]))).write_text("not a folder")
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--EXECUTION.EPOCHS",
        "2",
        "--SAVE.DRIVE_BACKUP",
        "true",
        "--SAVE.CHECKPOINT_DIRECTORY",
        str(tmp_path / "backups"),
        *QUIET,
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = run_folders(tmp_path / "runs")
    info = summary(run)
    assert (
        info["status"] == "finished" and "backup failed" in info["backup_error"] and "are kept" in info["backup_error"]
    )
    assert (
        f"ednaml: warning: SAVE.CHECKPOINT_DIRECTORY '{tmp_path / 'backups'}/" in result.stderr
    )  # said last, on the console
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert "backup failed" in (run / "log.txt").read_text()


DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


def test_two_processes_reach_the_single_process_test_metrics_within_tolerance(tmp_path):
    # the same effective batch (2 x 32 = 64) and schedule on one and on two processes
    single = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        *QUIET,
        "--trainer.default_root_dir",
        "one",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    double = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--TRANSFORMATION.BATCH_SIZE",
        "32",
        *DDP,
        *QUIET,
        "--trainer.default_root_dir",
        "two",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert single.returncode == 0 and double.returncode == 0, double.stderr[-2000:]
    (one,), (two,) = run_folders(tmp_path / "one"), run_folders(tmp_path / "two")
    a, b = summary(one)["final"], summary(two)["final"]
    assert summary(two)["global_step"] == summary(one)["global_step"] == 252
    assert abs(a["test/accuracy"] - b["test/accuracy"]) <= 0.03 and b["test/accuracy"] >= 0.95
    assert not list((tmp_path / "two").glob("*/*/wandb"))


def test_a_ddp_run_stopped_by_sigterm_resumes_on_two_processes(tmp_path):
    process = start(
        tmp_path,
        "--config",
        str(CONFIGS / "digits.yml"),
        "--EXECUTION.EPOCHS",
        "3",
        "--SAVE.STEP_SAVE_FREQUENCY",
        "4",
        *DDP,
        *QUIET,
    )
    wait_for(tmp_path, "runs/*/*/checkpoints/*_epoch1_step16.ckpt", process)
    process.send_signal(signal.SIGTERM)  # to the launching process only: the other rank stops at the same batch
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0 and "SIGTERM at step" in err, err[-2000:]
    (run,) = run_folders(tmp_path / "runs")
    assert summary(run)["status"] == "interrupted"
    resumed = run_ednaml("fit", "--resume", run.name, *DDP, *QUIET, cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    info = summary(run)
    assert info["status"] == "finished" and info["epochs"] == 3 and info["global_step"] == 33
    assert len(run_folders(tmp_path / "runs")) == 1


SIGTERM_AT = textwrap.dedent("""
    import os, signal
    import torch
    import ednaml

    @ednaml.register.loss("SigtermAt")
    class SigtermAt(torch.nn.Module):
        \"\"\"Cross-entropy; the process sends itself SIGTERM in its training call number $SIGTERM_AT.\"\"\"
        def __init__(self):
            super().__init__()
            self.at, self.calls = int(os.environ.get("SIGTERM_AT", "0")), 0
        def forward(self, logits, target):
            if self.training:
                self.calls += 1
                if self.calls == self.at:
                    os.kill(os.getpid(), signal.SIGTERM)
            return torch.nn.functional.cross_entropy(logits, target)
""")


def _metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("batch", [0, 10, 20], ids=["first", "middle", "last"])
def test_a_run_resumed_after_a_stop_at_any_batch_of_an_epoch_records_what_an_uninterrupted_run_does(tmp_path, batch):
    (tmp_path / "sigterm_at.py").write_text(SIGTERM_AT)
    args = [
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--import",
        str(tmp_path / "sigterm_at.py"),
        "--LOSS.0.LOSSES",
        "[SigtermAt]",
        "--EXECUTION.EPOCHS",
        "3",
        "--SAVE.MONITOR",
        "val/loss",
        *QUIET,
    ]
    whole = run_ednaml(*args, "--trainer.default_root_dir", "whole", cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert whole.returncode == 0, whole.stderr[-2000:]
    stopped = run_ednaml(
        *args,
        "--trainer.default_root_dir",
        "stopped",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled", "SIGTERM_AT": str(21 + batch + 1)},
    )  # epoch 1 of 21 batches
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    (run,) = run_folders(tmp_path / "stopped")
    refused = run_ednaml("fit", "--resume", str(run), *QUIET, cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert refused.returncode == 2 and "EXECUTION.IMPORTS" in refused.stderr  # a run folder's imports are data
    resumed = run_ednaml("fit", "--resume", str(run), "--trust", *QUIET, cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (reference,) = run_folders(tmp_path / "whole")
    assert _metrics(run) == _metrics(reference)
    ours, theirs = summary(run), summary(reference)
    assert ours["best"] == theirs["best"] and ours["final"] == theirs["final"]
    best = lambda info: Path(info["checkpoints"].get("best", "")).name  # noqa: E731
    assert best(ours) == best(theirs)
