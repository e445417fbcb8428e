"""Validation: every mistake found at once, with its key path, the bad value and a suggestion."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from helpers import CONFIGS, run_ednaml

from ednaml.api import prepare
from ednaml.config import ConfigError
from ednaml.config.schema import LINKED_KEYS
from ednaml.errors import format_path


def problems(overrides: list[tuple[str, str]]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        prepare([CONFIGS / "digits.yml"], overrides)
    for problem in caught.value.problems:  # each value came from the file or one of the overrides
        assert problem.origin in [str(CONFIGS / "digits.yml")] + [f"--{key}" for key, _ in overrides], problem
    return [str(dataclasses.replace(p, origin=None)) for p in caught.value.problems]


def test_the_shipped_configs_validate():
    for path in sorted(CONFIGS.glob("*.yml")):
        if not path.read_text().count("\nSWEEP:"):  # a search space, checked by the sweep tests
            prepare([path])


def test_an_unknown_loss_gets_a_did_you_mean():
    assert problems([("LOSS.0.LOSSES", "[SoftmaxLogitLoss]")]) == [
        "LOSS[0].LOSSES[0]: 'SoftmaxLogitLoss' is not a known loss; did you mean 'SoftmaxLogitsLoss'?"
    ]


def test_an_unknown_key_is_named_with_its_path_and_a_suggestion():
    assert problems([("OPTIMIZER.0.BASE_LRR", "0.1")]) == [
        "OPTIMIZER[0].BASE_LRR: unknown key; did you mean 'BASE_LR'?"
    ]


def test_a_wrong_type_names_the_value_and_what_is_allowed():
    assert problems([("EXECUTION.EPOCHS", "ten")]) == ["EXECUTION.EPOCHS: 'ten' is not an integer"]


def test_a_kwarg_the_component_does_not_take():
    found = problems([("LOSS.0.KWARGS", "[{epss: 0.1}]"), ("LOSS.0.LOSSES", "[SoftmaxLabelSmooth]")])
    assert found == ["LOSS[0].KWARGS[0].epss: SoftmaxLabelSmooth takes no argument 'epss'; did you mean 'eps'?"]


def test_kwargs_of_torch_optimizers_and_schedulers_are_checked():
    found = problems([("OPTIMIZER.0.OPTIMIZER_KWARGS", "{betaz: [0.9, 0.99]}"), ("SCHEDULER.0.LR_KWARGS", "{step: 3}")])
    assert found[0].startswith(
        "OPTIMIZER[0].OPTIMIZER_KWARGS.betaz: Adam takes no argument 'betaz'; did you mean 'betas'?"
    )
    assert found[1:] == [
        "SCHEDULER[0].LR_KWARGS.step_size: is missing: StepLR needs it (a required argument, no default)",
        "SCHEDULER[0].LR_KWARGS.step: StepLR takes no argument 'step'; did you mean 'step_size'?",
    ]


def test_torch_loss_checks_its_loss_class():
    found = problems([("LOSS.0.LOSSES", "[TorchLoss]"), ("LOSS.0.KWARGS", "[{loss_class: CrossEntropyLos}]")])
    assert found == [
        "LOSS[0].KWARGS[0].loss_class: 'CrossEntropyLos' is not a torch.nn loss; did you mean 'CrossEntropyLoss'?"
    ]


def test_unknown_trainer_arguments_are_caught_before_anything_runs():
    assert problems([("trainer.max_epoch", "3")])[0].startswith(
        "trainer.max_epoch: Trainer takes no argument 'max_epoch'; did you mean 'max_epochs'?"
    )


def test_a_near_miss_section_is_an_error_and_an_unknown_one_is_kept(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"OPTIMISER": [{"BASE_LR": 0.1}]}))
    with pytest.raises(ConfigError, match="OPTIMISER: unknown section; did you mean 'OPTIMIZER'"):
        prepare([CONFIGS / "digits.yml", bad])
    custom = tmp_path / "custom.yml"
    custom.write_text(yaml.safe_dump({"COLABEL": {"COMPRESSION": 5}}))
    with pytest.warns(UserWarning, match="section COLABEL is not EdnaML's"):
        config = prepare([CONFIGS / "digits.yml", custom])
    assert config["COLABEL"] == {"COMPRESSION": 5}


def test_names_must_match_between_sections():
    found = problems([("SCHEDULER.0.SCHEDULER_NAME", "opt-2"), ("LOSS", "[{NAME: a}, {NAME: a}]")])
    assert (
        "SCHEDULER[0].SCHEDULER_NAME: 'opt-2' names no optimizer; OPTIMIZER_NAMEs are ['opt-1']; did you mean 'opt-1'?"
        in found
    )
    assert "LOSS[1].NAME: 'a' is already the NAME of LOSS[0]; NAMEs must be unique" in found


def test_lambdas_must_match_losses():
    assert problems([("LOSS.0.LAMBDAS", "[0.5, 0.5]")]) == [
        "LOSS[0].LAMBDAS: has 2 items but LOSSES has 1; give one per loss"
    ]


@pytest.mark.e2e
def test_three_mistakes_are_reported_together_by_the_command_with_exit_code_2(tmp_path):
    config = yaml.safe_load((CONFIGS / "digits.yml").read_text())
    config["LOSS"][0]["LOSSES"] = ["SoftmaxLogitLoss"]
    config["OPTIMIZER"][0]["BASE_LRR"] = 0.01
    config["EXECUTION"]["EPOCHS"] = "ten"
    path = tmp_path / "three.yml"
    path.write_text(yaml.safe_dump(config))
    result = run_ednaml("fit", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "3 config errors" in result.stderr
    for expected in (
        "LOSS[0].LOSSES[0]: 'SoftmaxLogitLoss' is not a known loss; did you mean 'SoftmaxLogitsLoss'?",
        "OPTIMIZER[0].BASE_LRR: unknown key; did you mean 'BASE_LR'?",
        "EXECUTION.EPOCHS: 'ten' is not an integer",
    ):
        assert expected in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.e2e
def test_a_missing_data_folder_is_a_clear_error_not_a_traceback(tmp_path):
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--EXECUTION.DATAREADER.DATAREADER",
        "ImageFolder",
        "--EXECUTION.DATAREADER.CRAWLER_ARGS",
        "{data_folder: no/such/folder}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # a relative path on the command line is read from the working directory, and named as it was read
    assert (
        f"EXECUTION.DATAREADER.CRAWLER_ARGS.data_folder: folder '{tmp_path / 'no/such/folder'}' does not exist"
        in result.stderr
    )


@pytest.mark.e2e
def test_an_unknown_option_suggests_the_right_one(tmp_path):
    result = run_ednaml("fit", "--confg", "x.yml", cwd=tmp_path)
    assert result.returncode == 2 and "unknown option --confg; did you mean --config?" in result.stderr


@pytest.mark.e2e
def test_a_hydra_style_key_equals_value_is_an_override(tmp_path):
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "SAVE.MODEL_VERSION=2",
        "OPTIMIZER.0.BASE_LR=5e-4",
        "--print_config",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = yaml.safe_load(result.stdout)
    assert printed["SAVE"]["MODEL_VERSION"] == 2 and printed["OPTIMIZER"][0]["BASE_LR"] == 0.0005


@pytest.mark.e2e
def test_a_hydra_style_tilde_deletes_a_key(tmp_path):
    result = run_ednaml(
        "fit", "--config", str(CONFIGS / "digits.yml"), "~MODEL.MODEL_KWARGS.width", "--print_config", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert yaml.safe_load(result.stdout)["MODEL"]["MODEL_KWARGS"] == {"initial_channels": 1, "embedding_dimensions": 64}


@pytest.mark.parametrize("command", ["fit", "check"])
@pytest.mark.e2e
def test_a_stray_word_on_the_command_line_is_an_error_not_ignored(tmp_path, command):
    result = run_ednaml(command, "--config", str(CONFIGS / "digits.yml"), "SAVE.MODEL_VERSION", "2", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unexpected argument 'SAVE.MODEL_VERSION'" in result.stderr and "KEY.PATH=VALUE" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_trainer_values_are_checked_against_the_trainer_signature_types():
    found = problems([("trainer.precision", "bf17"), ("trainer.gradient_clip_val", "lots")])
    assert found[0].startswith("trainer.precision: 'bf17' is not valid here:") and "bf16-mixed" in found[0]
    assert found[1].startswith("trainer.gradient_clip_val: 'lots' is not valid here:") and "float" in found[1]


def test_trainer_callbacks_in_lightning_cli_form_are_checked():
    found = problems([("trainer.callbacks", "[{class_path: EarlyStopping, init_args: {monitorr: val/loss}}]")])
    assert found[0].startswith("trainer.callbacks:") and "monitorr" in found[0]


def test_an_error_names_the_file_or_flag_its_value_came_from(tmp_path):
    extra = tmp_path / "extra.yml"
    extra.write_text("EXECUTION:\n  EPOCHS: 0\n")
    with pytest.raises(ConfigError) as caught:
        prepare([CONFIGS / "digits.yml", extra], [("OPTIMIZER.0.BASE_LR", "-1")])
    text = str(caught.value)
    assert f"EXECUTION.EPOCHS: 0 must be at least 1 (set in {extra})" in text
    assert "OPTIMIZER[0].BASE_LR: -1 must be a number, 0 or more (set by --OPTIMIZER.0.BASE_LR)" in text


def test_a_malformed_entry_stops_only_its_own_rule():
    # LOSS[0].LOSSES is not a list: the loss rules give up on it, and every later rule still reports
    found = problems(
        [
            ("LOSS.0.LOSSES", "5"),
            ("OPTIMIZER.0.OPTIMIZER_NAME", "heads"),
            ("SAVE.MODEL_QUALIFIER", "../up"),
            ("OPTIMIZER.0.BASE_LR", "-1"),
            ("EXECUTION.DATAREADER.CRAWLER_ARGS.test_fractoin", "0.2"),
        ]
    )
    assert [p.split(":")[0] for p in found] == [
        "LOSS[0].LOSSES",
        "OPTIMIZER[0].BASE_LR",
        "SAVE.MODEL_QUALIFIER",
        "OPTIMIZER[0].OPTIMIZER_NAME",
        "MODEL.PARAMETER_GROUPS",
        "SCHEDULER[0].SCHEDULER_NAME",
        "EXECUTION.DATAREADER.CRAWLER_ARGS.test_fractoin",
    ], found


# ---- a word the config does not know is an error where it cannot be meant as a custom section ----


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("EPOCHS", "EXECUTION.EPOCHS"),
        ("epochs", "EXECUTION.EPOCHS"),
        ("EPOCH", "EXECUTION.EPOCHS"),
        ("BATCH_SIZE", "TRANSFORMATION.BATCH_SIZE"),
        ("BASE_LR", "OPTIMIZER.0.BASE_LR"),
        ("MODEL_ARCH", "MODEL.MODEL_ARCH"),
        ("STEP_VERBOSE", "LOGGING.STEP_VERBOSE"),
        ("seed", None),
        ("MYSECTION.x", None),
    ],
)
def test_an_override_of_a_key_nobody_has_is_an_error_with_the_key_it_was_meant_as(written, meant):
    (found,) = problems([(written, "3")])
    section = written.split(".")[0]
    assert found.startswith(f"{section}: not a config key; the command line overrides keys that exist"), found
    assert (
        (f"did you mean {meant}" in found) if meant else ("did you mean" not in found or "seed_everything" in found)
    ), found


def test_a_custom_section_lives_in_a_config_file_and_the_command_line_may_override_its_keys(tmp_path):
    custom = tmp_path / "custom.yml"
    custom.write_text(
        "MY_COMPONENT_SETTINGS:\n  depth: 2\nCOLABEL:\n  colours: 4\n"
    )  # COLABEL: an original EdnaML section
    with pytest.warns(UserWarning, match="section MY_COMPONENT_SETTINGS is not EdnaML's; kept"):
        config = prepare(
            [CONFIGS / "digits.yml", custom],
            [("MY_COMPONENT_SETTINGS.depth", "3"), ("MY_COMPONENT_SETTINGS.width", "4"), ("COLABEL", "{colours: 5}")],
        )
    assert config["MY_COMPONENT_SETTINGS"] == {"depth": 3, "width": 4} and config["COLABEL"] == {"colours": 5}


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("EPOCHS: 3", "EXECUTION.EPOCHS"),
        ("epochs: 3", "EXECUTION.EPOCHS"),
        ("BATCHSIZE: 8", "TRANSFORMATION.BATCH_SIZE"),
        ("OPTIMISER: []", "OPTIMIZER"),
        ("EPOCH: 3", "EXECUTION.EPOCHS"),
    ],
)
def test_a_top_level_name_in_a_file_close_to_a_key_or_section_gets_the_did_you_mean(tmp_path, written, meant):
    path = tmp_path / "typo.yml"
    path.write_text(written + "\n")
    with pytest.raises(ConfigError) as caught:
        prepare([CONFIGS / "digits.yml", path])
    (found,) = caught.value.problems
    assert found.origin == str(path) and f"did you mean {meant}" in found.message.replace("'", ""), found


@pytest.mark.parametrize("command", ["fit", "check"])
@pytest.mark.parametrize("spelling", [["EPOCHS=3"], ["--EPOCHS", "3"]])
@pytest.mark.e2e
def test_epochs_without_its_section_stops_fit_and_check_naming_execution_epochs(tmp_path, command, spelling):
    result = run_ednaml(
        command, "--config", str(CONFIGS / "digits.yml"), *spelling, cwd=tmp_path, env={"WANDB_MODE": "disabled"}
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "EPOCHS: not a config key" in result.stderr and "did you mean EXECUTION.EPOCHS" in result.stderr
    assert "(set by --EPOCHS)" in result.stderr and not (tmp_path / "runs").exists()  # nothing trained


@pytest.mark.parametrize(("ednaml_key", "trainer_key"), LINKED_KEYS)
@pytest.mark.parametrize("bad", ["x", "0"])
@pytest.mark.parametrize("where", ["file", "flag"])
def test_a_bad_value_of_a_linked_pair_is_reported_at_the_key_written(tmp_path, ednaml_key, trainer_key, bad, where):
    for written in (ednaml_key, trainer_key):
        *parents, leaf = written.split(".")
        path = tmp_path / "bad.yml"
        text = f"{leaf}: {bad}"
        for parent in reversed(parents):
            text = f"{parent}:\n" + "\n".join("  " + line for line in text.splitlines())
        path.write_text(text + "\n")
        files, overrides = (
            ([CONFIGS / "digits.yml", path], []) if where == "file" else ([CONFIGS / "digits.yml"], [(written, bad)])
        )
        with pytest.raises(ConfigError) as caught:
            prepare(files, overrides)
        (found,) = caught.value.problems
        assert format_path(found.path) == written and found.origin == (
            str(path) if where == "file" else f"--{written}"
        ), found
