"""SAVE: checkpoint names and frequencies, backups through fsspec, never overwriting a run."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import fsspec
import pytest
import torch
from helpers import CONFIGS, run_folders

from ednaml import EdnaML

SHORT = {
    "EXECUTION.EPOCHS": 2,
    "trainer.limit_train_batches": 10,
    "trainer.limit_val_batches": 2,
    "trainer.limit_test_batches": 2,
    "trainer.enable_progress_bar": False,
}


def fit(workdir, **overrides):
    return EdnaML(CONFIGS / "digits.yml", overrides={**SHORT, **overrides}).fit()


@pytest.mark.e2e
def test_epoch_and_step_checkpoints_are_named_by_save(workdir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    info = fit(workdir, **{"SAVE.SAVE_FREQUENCY": 1, "SAVE.STEP_SAVE_FREQUENCY": 7})
    names = sorted(p.rsplit("/", 1)[1] for p in info["checkpoints"]["saved"])
    # 10 steps per epoch: epoch ends at steps 10 and 20, step saves at 7 and 14.
    assert names == [
        "digits-v1_epoch0_step10.ckpt",
        "digits-v1_epoch0_step7.ckpt",
        "digits-v1_epoch1_step14.ckpt",
        "digits-v1_epoch1_step20.ckpt",
    ]
    last = torch.load(info["checkpoints"]["last"], map_location="cpu", weights_only=True)
    assert last["global_step"] == 20
    assert last["ednaml"]["config"]["SAVE"]["STEP_SAVE_FREQUENCY"] == 7  # every checkpoint carries the config


@pytest.mark.e2e
def test_save_frequency_zero_keeps_only_last(workdir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    info = fit(workdir, **{"SAVE.SAVE_FREQUENCY": 0, "SAVE.MONITOR": None})
    assert info["checkpoints"]["saved"] == []
    assert info["checkpoints"]["last"].endswith("last.ckpt")
    assert "best" not in info["checkpoints"]


@pytest.mark.e2e
def test_the_best_checkpoint_by_monitor_and_a_weights_only_export(workdir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    info = fit(workdir, **{"EXECUTION.EPOCHS": 3, "SAVE.MONITOR": "val/accuracy"})
    best = torch.load(info["checkpoints"]["best"], map_location="cpu", weights_only=True)
    with open(Path(info["run_dir"]) / "metrics.csv", newline="") as handle:  # every validation pass, as logged
        rows = [r for r in csv.DictReader(handle) if r.get("val/accuracy") and r.get("epoch")]
    by_epoch = {int(r["epoch"]): float(r["val/accuracy"]) for r in rows}
    assert len(by_epoch) >= 3  # the pass before training (epoch 0) and one after each epoch
    top = max(by_epoch.values())
    assert info["checkpoints"]["best_score"]["val/accuracy"] == pytest.approx(top, abs=1e-6)
    assert info["best"]["val/accuracy"]["value"] == pytest.approx(top, abs=1e-6)
    assert by_epoch[best["epoch"]] == pytest.approx(top, abs=1e-6)  # the file saved after a best epoch
    assert f"_best_epoch{best['epoch']}_" in info["checkpoints"]["best"]
    weights = torch.load(info["checkpoints"]["model"], map_location="cpu", weights_only=True)
    last = torch.load(info["checkpoints"]["last"], map_location="cpu", weights_only=True)
    assert set(weights) == {k.removeprefix("model.") for k in last["state_dict"] if k.startswith("model.")}
    assert all(torch.equal(weights[k], last["state_dict"][f"model.{k}"]) for k in weights)


@pytest.mark.e2e
def test_exact_epoch_count(workdir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    info = fit(workdir, **{"EXECUTION.EPOCHS": 3})
    assert info["epochs"] == 3 and info["global_step"] == 30


@pytest.mark.e2e
@pytest.mark.parametrize("target", ["local", "memory://ednaml-backup"])
def test_drive_and_log_backups_copy_the_run(workdir, monkeypatch, target):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    url = str(workdir / "backup") if target == "local" else target
    info = fit(
        workdir,
        **{
            "SAVE.DRIVE_BACKUP": True,
            "SAVE.LOG_BACKUP": True,
            "SAVE.CHECKPOINT_DIRECTORY": url,
            "SAVE.SAVE_FREQUENCY": 1,
        },
    )
    fs, root = fsspec.core.url_to_fs(f"{url}/{info['experiment']}/{info['run_id']}")
    copied = {p.rsplit("/", 1)[1] for p in fs.find(root)}
    best = info["checkpoints"]["best"].rsplit("/", 1)[1]
    expected = {
        "config.yaml",
        "provenance.json",
        "summary.json",
        "metrics.csv",
        "log.txt",
        "parameter_groups.json",
        "confusion.json",
        "report.html",
        "last.ckpt",
        "digits-v1_epoch0_step10.ckpt",
        "digits-v1_epoch1_step20.ckpt",
        best,
        "model.pt",
    }
    assert expected <= copied
    assert all("_best_" in name for name in copied - expected)  # an earlier best stays in the backup
    with fs.open(f"{root}/summary.json") as handle:
        assert b'"status": "finished"' in handle.read()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="/dev/full (a device that is always full) is Linux's")
def test_a_backup_copy_to_a_full_disk_keeps_the_previous_copy_and_leaves_no_partial_file(tmp_path):
    from ednaml.adapters.callbacks import Backup
    from ednaml.tracking.run_folder import RunFolder

    run = RunFolder(path=tmp_path / "runs" / "exp" / "run1", run_id="run1", experiment="exp", writer=True)
    run.checkpoints.mkdir(parents=True)
    last = run.checkpoints / "last.ckpt"
    last.write_bytes(b"epoch 1" * 1000)
    backup = Backup(run, str(tmp_path / "remote"), checkpoints=True, logs=False)
    backup.sync()
    copy = tmp_path / "remote" / "exp" / "run1" / "checkpoints" / "last.ckpt"
    assert copy.read_bytes() == last.read_bytes() and backup.error is None
    last.write_bytes(b"epoch 2" * 1000)
    os.utime(last, (time.time() + 5, time.time() + 5))  # a newer file, whatever the clock's resolution
    (copy.parent / ".last.ckpt.partial").symlink_to("/dev/full")  # the copy's temporary file lands on a full disk
    backup.sync()
    assert "No space left on device" in backup.error and "are kept" in backup.error
    assert copy.read_bytes() == b"epoch 1" * 1000  # the good copy, not a truncated one
    assert [p.name for p in copy.parent.iterdir()] == ["last.ckpt"]
    backup.sync()  # the disk has room again: the next sync completes the copy
    assert copy.read_bytes() == b"epoch 2" * 1000


@pytest.mark.e2e
def test_a_second_run_never_touches_the_first(workdir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    first = fit(workdir)
    before = {p: p.stat().st_mtime for p in (workdir / "runs").rglob("*") if p.is_file()}
    second = fit(workdir)
    assert first["run_id"] != second["run_id"]
    assert len(run_folders(workdir / "runs")) == 2
    assert all(p.stat().st_mtime == t for p, t in before.items())


@pytest.mark.e2e
def test_a_run_with_trainer_callbacks_from_the_config_writes_checkpoints_that_load_weights_only(workdir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    callbacks = [{"class_path": "lightning.pytorch.callbacks.Timer", "init_args": {"interval": "epoch"}}]
    info = fit(workdir, **{"trainer.callbacks": callbacks})
    assert info["status"] == "finished"
    last = torch.load(info["checkpoints"]["last"], map_location="cpu", weights_only=True)
    assert last["ednaml"]["config"]["trainer"]["callbacks"] == callbacks  # plain data, as written
    assert any(key.startswith("Timer") for key in last["callbacks"])  # the callback ran and saved its state
