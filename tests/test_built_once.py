"""Each part of a run is built once: the legacy translation of each config layer, the parse of the `trainer:`
section, the Trainer, the optimizers. Counted by wrapping the real functions (each still runs), over a
real fit and a real check. And what the one Trainer refuses is said at its key before anything is written."""

from __future__ import annotations

import collections
import functools

import lightning.pytorch as pl
import pytest
from helpers import CONFIGS, run_ednaml, run_folders

import ednaml.config.legacy
from ednaml import cli
from ednaml.adapters import trainer as trainer_adapter
from ednaml.adapters.module import EdnaModule
from ednaml.api import EdnaML

pytestmark = pytest.mark.e2e

SHORT = {"EXECUTION.EPOCHS": 1, "trainer.limit_train_batches": 2, "trainer.limit_val_batches": 1}


@pytest.fixture
def built(monkeypatch):
    """How many times each part was built while the test ran."""
    counts: collections.Counter = collections.Counter()

    def counted(owner, name, label):
        real = getattr(owner, name)

        @functools.wraps(real)
        def wrapper(*args, **kwargs):
            counts[label] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    counted(ednaml.config.legacy, "translate", "legacy translation")
    counted(trainer_adapter.trainer_parser(), "parse_object", "trainer: section parse")
    counted(EdnaModule, "build_optimizers", "optimizers")
    real_init = pl.Trainer.__init__

    def trainer_init(self, *args, **kwargs):
        counts["Trainer"] += 1
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", trainer_init)
    trainer_adapter._PARSED.clear()  # a section parsed by an earlier test in this process counts as this one's
    return counts


ONCE = {"legacy translation": 1, "trainer: section parse": 1, "optimizers": 1, "Trainer": 1}


def test_a_fit_builds_each_part_once(built, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    summary = EdnaML(CONFIGS / "digits.yml", overrides=SHORT).fit()
    assert summary["status"] == "finished" and "test/accuracy" in summary["final"]
    assert dict(built) == ONCE


def test_each_config_layer_is_translated_once_two_files_and_a_mapping(built, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    extra = tmp_path / "extra.yml"
    extra.write_text("EXECUTION:\n  EPOCHS: 1\n")
    EdnaML({"SAVE": {"MODEL_VERSION": 3}}, CONFIGS / "digits.yml", extra, overrides=SHORT)
    assert built["legacy translation"] == 3 and built["Trainer"] == 0  # nothing is built before the run


def test_check_builds_each_part_once(built, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", "--config", str(CONFIGS / "digits.yml")]) == 0
    assert "ready to train" in capsys.readouterr().out
    assert dict(built) == ONCE and not (tmp_path / "runs").exists()


def test_a_trainer_section_that_does_not_parse_names_each_bad_key(built, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["--trainer.precision", "bf17", "--trainer.gradient_clip_val", "lots"]
    assert cli.main(["check", "--config", str(CONFIGS / "digits.yml"), *argv]) == 2
    err = capsys.readouterr().err
    assert "trainer.precision: 'bf17' is not valid here" in err and "trainer.gradient_clip_val: 'lots'" in err
    assert built["Trainer"] == 0


@pytest.mark.parametrize("command", ["fit", "check"])
@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("accelerator", "warp-drive", "trainer.accelerator: 'warp-drive' is not valid here"),
        ("strategy", "warp", "trainer.strategy: 'warp' is not valid here"),
        ("devices", "0", "trainer.devices: 0 is not valid here"),
    ],
)
def test_what_the_trainer_refuses_is_said_at_its_key_and_leaves_no_run_folder(tmp_path, command, key, value, said):
    result = run_ednaml(
        command, "--config", str(CONFIGS / "digits.yml"), f"--trainer.{key}", value, cwd=tmp_path,
        env={"WANDB_MODE": "offline"},
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert said in result.stderr
    assert not run_folders(tmp_path / "runs") and not (tmp_path / "wandb").exists()
