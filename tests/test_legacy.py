"""Configs written the original EdnaML's way: its spellings read with a note each, its projects' components
named as such, `ednaml migrate`, and a run that records what was translated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import CONFIGS, FEW_BATCHES, run_ednaml, run_folders, summary

ORIGINAL = Path(__file__).parent / "legacy_configs" / "digits-original-style.yml"
NOTES = [
    "EXECUTION.CRAWLER: the original named the crawler (DigitsDataCrawler); a data reader holds it here: read as "
    "EXECUTION.DATAREADER.DATAREADER: Digits",
    "LOSS[0].LOSS_KWARGS: the original's spelling, read as LOSS[0].KWARGS",
    "LOSS[0].LOSS_LAMBDAS: the original's spelling, read as LOSS[0].LAMBDAS",
    "MODEL.EMB_DIM: the original's spelling, read as MODEL.MODEL_KWARGS.embedding_dimensions",
    "EXECUTION.MODEL_BUILDER: the original's spelling, read as MODEL.BUILDER",
    "TRANSFORMATION.INSTANCES: the original's identity sampler",
    "LOSS[0].KWARGS[0].soft_dim: the original's spelling, read as softmax_dimensions",
    "MODEL.MODEL_NORMALIZATION: '' (no normalization in the original), read as none",
    "EXECUTION.TRAINER: the original's spelling, read as EXECUTION.STEP_LOGIC",
    "EXECUTION.STEP_LOGIC: the original's 'BaseTrainer', read as ClassificationTrainer",
    "EXECUTION.OPTIMIZER_BUILDER: the original's 'ReIDOptimizerBuilder', read as ClassificationOptimizer",
    "LOSS[0]: CenterLoss learns parameters and has no LOSS_OPTIMIZER entry: one was added",
]


@pytest.mark.e2e
def test_a_config_in_the_originals_spellings_checks_ready_with_a_note_for_each(tmp_path):
    result = run_ednaml("check", "--config", str(ORIGINAL), cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert result.returncode == 0 and "ready to train" in result.stdout, result.stderr[-3000:]
    for note in NOTES:
        assert f"ednaml: warning: {note}" in result.stderr, note
    assert "did you mean" not in result.stderr


@pytest.mark.e2e
def test_migrate_writes_a_config_that_checks_without_a_note(tmp_path):
    target = tmp_path / "migrated.yml"
    result = run_ednaml("migrate", str(ORIGINAL), "-o", str(target), cwd=tmp_path)
    assert result.returncode == 0 and f"wrote {target}" in result.stdout, result.stderr[-3000:]
    text = target.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    for note in NOTES:
        assert any(note in line for line in header), note
    config = yaml.safe_load(text)
    assert config["EXECUTION"]["DATAREADER"]["DATAREADER"] == "Digits" and config["LOSS"][0]["KWARGS"][0] == {
        "softmax_dimensions": 10
    }
    assert config["MODEL"]["MODEL_KWARGS"]["embedding_dimensions"] == 32 and "MODEL_SERVING" not in config["EXECUTION"]
    assert [e["OPTIMIZER_NAME"] for e in config["LOSS_OPTIMIZER"]] == ["digit"] and "seed_everything" not in config
    checked = run_ednaml("check", "--config", str(target), cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert checked.returncode == 0 and "ednaml: warning" not in checked.stderr, checked.stderr[-3000:]
    again = run_ednaml("migrate", str(ORIGINAL), "-o", str(target), cwd=tmp_path)
    assert again.returncode == 2 and "the file exists" in again.stderr and target.read_text() == text


@pytest.mark.e2e
def test_the_originals_projects_components_are_named_as_such_not_misspellings(tmp_path):
    config = tmp_path / "carzam.yml"
    config.write_text(
        ORIGINAL.read_text()
        .replace("TRAINER: BaseTrainer", "TRAINER: CarzamTrainer")
        .replace("MODEL_ARCH: 'SmallCNN'", "MODEL_ARCH: Resnet")
    )
    result = run_ednaml("check", "--config", str(config), cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "EXECUTION.STEP_LOGIC: 'CarzamTrainer' belongs to CarZam, built on the original EdnaML, "
        "and is not part of EdnaML: "
        "register it with IMPORTS" in result.stderr
    )
    assert "MODEL.MODEL_ARCH: 'Resnet' is the original's re-identification ResNet" in result.stderr
    assert "did you mean" not in result.stderr
    migrated = run_ednaml("migrate", str(config), cwd=tmp_path)  # to stdout, with what is still to do
    assert migrated.returncode == 0 and "# Still to do (`ednaml check` reports these):" in migrated.stdout
    assert "'CarzamTrainer' belongs to CarZam" in migrated.stdout


@pytest.mark.e2e
def test_a_run_of_an_original_config_records_what_was_translated(tmp_path):
    result = run_ednaml(
        "fit",
        "--config",
        str(ORIGINAL),
        "--trainer.limit_train_batches",
        "3",
        "--trainer.limit_val_batches",
        "2",
        "--trainer.limit_test_batches",
        "2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    notes = json.loads((run / "provenance.json").read_text())["config_notes"]
    for note in NOTES:
        assert any(note in recorded for recorded in notes), note
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["LOSS_OPTIMIZER"][0]["OPTIMIZER"] == "Adam" and config["LOSS_OPTIMIZER"][0]["BASE_LR"] == 0.003


def test_old_spellings_on_the_command_line_win_and_old_string_forms_keep_their_values(tmp_path):
    from ednaml.api import EdnaML

    experiment = EdnaML(
        ORIGINAL, overrides=[("LOSS.0.LOSS_KWARGS", "[{soft_dim: 10, eps: 0.2}, {}]"), ("MODEL.EMB_DIM", 48)]
    )
    config = experiment.config
    assert config["LOSS"][0]["KWARGS"][0] == {"softmax_dimensions": 10, "eps": 0.2}
    assert config["MODEL"]["MODEL_KWARGS"]["embedding_dimensions"] == 48
    text = ORIGINAL.read_text().replace(
        "  MODEL_KWARGS:\n    initial_channels: 1\n    width: 16\n",
        '  MODEL_KWARGS: \'{"initial_channels": 1, "width": 16}\'\n',
    )
    (tmp_path / "strings.yml").write_text(
        text.replace("LOSS_KWARGS: [{'soft_dim': 10}, {}]", "LOSS_KWARGS: '[{\"soft_dim\": 10}, {}]'")
    )
    config = EdnaML(tmp_path / "strings.yml").config
    assert config["MODEL"]["MODEL_KWARGS"] == {"initial_channels": 1, "width": 16, "embedding_dimensions": 32}
    assert config["LOSS"][0]["KWARGS"][0] == {"softmax_dimensions": 10}


@pytest.mark.parametrize("mistake", ["LOSSES: [[SoftmaxLogitsLoss]]", "NAME: [digit]", "LOSS_KWARGS: 12"])
def test_malformed_old_forms_are_config_errors_not_tracebacks(tmp_path, mistake):
    from ednaml.api import EdnaML
    from ednaml.errors import ConfigError

    text = ORIGINAL.read_text()
    key = mistake.split(":")[0]
    lines = [line for line in text.splitlines() if not line.strip().startswith(f"{key}:")]
    index = lines.index("LOSS:") + 1
    (tmp_path / "bad.yml").write_text("\n".join(lines[:index] + [f"  {mistake}"] + lines[index:]) + "\n")
    with pytest.raises(ConfigError):
        EdnaML(tmp_path / "bad.yml")


@pytest.mark.e2e
def test_migrate_leaves_out_what_resolving_derives(tmp_path):
    target = tmp_path / "migrated.yml"
    assert run_ednaml("migrate", str(ORIGINAL), "-o", str(target), cwd=tmp_path).returncode == 0
    config = yaml.safe_load(target.read_text())
    assert "trainer" not in config  # no max_epochs to outvote EXECUTION.EPOCHS, no precision of this machine
    missing = run_ednaml("migrate", str(ORIGINAL), "-o", str(tmp_path / "no" / "such" / "x.yml"), cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_the_originals_trainer_is_read_as_step_logic_in_files_overrides_and_registrations(tmp_path):
    from ednaml import registry
    from ednaml.config.load import noted, resolve
    from ednaml.steps import StepLogic

    old = tmp_path / "old.yml"
    old.write_text(
        "EXECUTION:\n  TRAINER: MultiClassificationTrainer\n  TRAINER_ARGS:\n    accumulation_steps: 3\n"
        "  TRAIN_MODE: full\n"
    )
    with noted(show=False) as notes:
        config = resolve([old])
    execution = config["EXECUTION"]
    assert execution["STEP_LOGIC"] == "MultiClassificationTrainer" and "TRAINER" not in execution
    assert execution["STEP_LOGIC_ARGS"] == {"accumulation_steps": 3, "train_mode": "full"}
    assert config["trainer"]["accumulate_grad_batches"] == 3  # the linked Lightning key follows
    assert "EXECUTION.TRAINER_ARGS: the original's spelling, read as EXECUTION.STEP_LOGIC_ARGS" in notes
    flags = [("EXECUTION.TRAINER_ARGS.accumulation_steps", "5"), ("EXECUTION.TRAINER", "ClassificationTrainer")]
    overridden = resolve([old], flags)
    assert overridden["EXECUTION"]["STEP_LOGIC"] == "ClassificationTrainer"
    assert overridden["EXECUTION"]["STEP_LOGIC_ARGS"]["accumulation_steps"] == 5
    assert overridden["trainer"]["accumulate_grad_batches"] == 5

    class OldStyleSteps(StepLogic):
        pass

    try:
        registry.register("trainer", "OldStyleSteps")(OldStyleSteps)  # the original's kind name
        assert registry.get("step_logic", "OldStyleSteps") is OldStyleSteps
        assert registry.get("trainer", "OldStyleSteps") is OldStyleSteps
        assert "OldStyleSteps" in dict(registry.catalogue("trainer")["step_logic"])
    finally:
        registry._components["step_logic"].pop("OldStyleSteps", None)


@pytest.mark.e2e
def test_a_run_folder_recorded_with_the_originals_trainer_keys_resumes_and_diffs_as_its_own(tmp_path):
    quick = FEW_BATCHES
    env = {"WANDB_MODE": "disabled"}
    for _ in range(2):
        fit = run_ednaml(
            "fit", "--config", str(CONFIGS / "digits.yml"), "--EXECUTION.EPOCHS", "1", *quick, cwd=tmp_path, env=env
        )
        assert fit.returncode == 0, fit.stderr[-3000:]
    older, newer = run_folders(tmp_path / "runs")
    recorded = yaml.safe_load((older / "config.yaml").read_text())  # as a version before STEP_LOGIC recorded it
    recorded["EXECUTION"]["TRAINER"] = recorded["EXECUTION"].pop("STEP_LOGIC")
    recorded["EXECUTION"]["TRAINER_ARGS"] = recorded["EXECUTION"].pop("STEP_LOGIC_ARGS")
    (older / "config.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    compared = run_ednaml("diff", str(older), str(newer), cwd=tmp_path)
    assert compared.returncode == 0 and "TRAINER" not in compared.stdout and "STEP_LOGIC" not in compared.stdout
    resumed = run_ednaml("fit", "--resume", older.name, "--EXECUTION.EPOCHS", "2", *quick, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert summary(older)["status"] == "finished" and summary(older)["epochs"] == 2
