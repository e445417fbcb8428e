"""The config contract: defaults, merging, precedence, overrides, linked keys and legacy forms."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml
from helpers import CONFIGS

from ednaml.config import ConfigError, ConfigWarning, dump, parse_key_path, resolve


def write(tmp_path: Path, name: str, data: dict | str) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_every_section_has_defaults_when_the_file_names_only_one(tmp_path):
    cfg = resolve([write(tmp_path, "a.yml", {"EXECUTION": {"EPOCHS": 3}})])
    assert cfg["EXECUTION"]["EPOCHS"] == 3
    assert cfg["EXECUTION"]["TEST_FREQUENCY"] == 1
    assert cfg["SAVE"]["MODEL_CORE_NAME"] == "model"
    assert cfg["OPTIMIZER"][0]["BASE_LR"] == 0.001
    assert cfg["LOSS"][0]["LOSSES"] == ["SoftmaxLogitsLoss"]
    assert cfg["SCHEDULER"] == []


def test_mappings_merge_key_by_key_and_lists_replace_wholesale(tmp_path):
    a = write(
        tmp_path,
        "a.yml",
        {
            "SAVE": {"MODEL_CORE_NAME": "a", "MODEL_VERSION": 2},
            "LOSS": [{"LOSSES": ["SoftmaxLogitsLoss"], "NAME": "x"}, {"NAME": "y"}],
        },
    )
    b = write(tmp_path, "b.yml", {"SAVE": {"MODEL_CORE_NAME": "b"}, "LOSS": [{"NAME": "z"}]})
    cfg = resolve([a, b])
    assert cfg["SAVE"]["MODEL_CORE_NAME"] == "b"
    assert cfg["SAVE"]["MODEL_VERSION"] == 2
    assert [e["NAME"] for e in cfg["LOSS"]] == ["z"]


def test_train_and_test_transformation_merge_over_transformation(tmp_path):
    path = write(
        tmp_path,
        "a.yml",
        {
            "TRANSFORMATION": {"BATCH_SIZE": 16, "ARGS": {"i_shape": [8, 8], "channels": 1}},
            "TRAIN_TRANSFORMATION": {"ARGS": {"h_flip": 0.5}},
            "TEST_TRANSFORMATION": {"BATCH_SIZE": 100},
        },
    )
    cfg = resolve([path])
    assert cfg["TRAIN_TRANSFORMATION"] == {
        "BATCH_SIZE": 16,
        "WORKERS": 2,
        "ARGS": {"i_shape": [8, 8], "channels": 1, "h_flip": 0.5},
    }
    assert cfg["TEST_TRANSFORMATION"]["BATCH_SIZE"] == 100
    assert cfg["TEST_TRANSFORMATION"]["ARGS"] == {"i_shape": [8, 8], "channels": 1}


def test_precedence_is_defaults_then_files_then_trainer_keys_then_flags(tmp_path):
    a = write(tmp_path, "a.yml", {"EXECUTION": {"EPOCHS": 3}})
    b = write(tmp_path, "b.yml", {"EXECUTION": {"EPOCHS": 4}, "trainer": {"max_epochs": 6}})
    assert resolve([a])["trainer"]["max_epochs"] == 3
    assert resolve([a, b])["EXECUTION"]["EPOCHS"] == 6
    cfg = resolve([a, b], [("EXECUTION.EPOCHS", "7")])
    assert cfg["EXECUTION"]["EPOCHS"] == 7 and cfg["trainer"]["max_epochs"] == 7
    cfg = resolve([a, b], [("EXECUTION.EPOCHS", "7"), ("trainer.max_epochs", "2")])
    assert cfg["EXECUTION"]["EPOCHS"] == 2 and cfg["trainer"]["max_epochs"] == 2


def test_linked_keys_show_the_effective_value_in_both_places(tmp_path):
    path = write(
        tmp_path,
        "a.yml",
        {
            "EXECUTION": {"TEST_FREQUENCY": 2, "STEP_LOGIC_ARGS": {"accumulation_steps": 4}},
            "LOGGING": {"STEP_VERBOSE": 7},
        },
    )
    trainer = resolve([path])["trainer"]
    assert trainer["check_val_every_n_epoch"] == 2
    assert trainer["accumulate_grad_batches"] == 4
    assert trainer["log_every_n_steps"] == 7


def test_a_list_entry_is_overridden_by_index_in_either_spelling(tmp_path):
    path = write(tmp_path, "a.yml", {"OPTIMIZER": [{"OPTIMIZER_NAME": "a"}, {"OPTIMIZER_NAME": "b"}]})
    cfg = resolve([path], [("OPTIMIZER.1.BASE_LR", "0.5"), ("OPTIMIZER[0].WEIGHT_DECAY", "0")])
    assert cfg["OPTIMIZER"][1]["BASE_LR"] == 0.5 and cfg["OPTIMIZER"][0]["BASE_LR"] == 0.001
    assert cfg["OPTIMIZER"][0]["WEIGHT_DECAY"] == 0


def test_a_list_key_without_index_sets_the_only_entry_and_refuses_to_guess_among_several(tmp_path):
    cfg = resolve([], [("OPTIMIZER.BASE_LR", "0.25")])
    assert cfg["OPTIMIZER"][0]["BASE_LR"] == 0.25
    path = write(tmp_path, "a.yml", {"OPTIMIZER": [{"OPTIMIZER_NAME": "a"}, {"OPTIMIZER_NAME": "b"}]})
    with pytest.raises(ConfigError, match=r"OPTIMIZER has 2 entries; say which one, e.g. --OPTIMIZER.0.BASE_LR"):
        resolve([path], [("OPTIMIZER.BASE_LR", "0.1")])


def test_override_values_are_read_as_yaml():
    cfg = resolve([], [("TRANSFORMATION.ARGS.i_shape", "[8, 8]"), ("trainer.devices", "2"), ("MODEL.WEIGHTS", "null")])
    assert cfg["TRANSFORMATION"]["ARGS"]["i_shape"] == [8, 8]
    assert cfg["trainer"]["devices"] == 2
    assert cfg["MODEL"]["WEIGHTS"] is None


def test_key_paths_parse_dots_and_brackets():
    assert parse_key_path("LOSS[1].LOSSES[0]") == ["LOSS", 1, "LOSSES", 0]
    assert parse_key_path("OPTIMIZER.0.BASE_LR") == ["OPTIMIZER", 0, "BASE_LR"]


def test_legacy_optimizer_and_scheduler_written_as_one_mapping(tmp_path):
    path = write(
        tmp_path,
        "a.yml",
        {
            "OPTIMIZER": {"OPTIMIZER": "SGD", "BASE_LR": 0.1},
            "SCHEDULER": {"LR_SCHEDULER": "StepLR", "LR_KWARGS": {"step_size": 3}},
        },
    )
    cfg = resolve([path])
    assert cfg["OPTIMIZER"][0]["OPTIMIZER"] == "SGD" and cfg["OPTIMIZER"][0]["OPTIMIZER_NAME"] == "opt-1"
    assert cfg["SCHEDULER"][0]["LR_KWARGS"] == {"step_size": 3}


def test_legacy_kwargs_written_as_strings_holding_a_dict(tmp_path):
    path = write(
        tmp_path,
        "a.yml",
        {
            "OPTIMIZER": [{"OPTIMIZER_KWARGS": "{}"}],
            "SCHEDULER": [{"LR_KWARGS": '{"step_size":20, "gamma": 0.5}'}],
            "LOSS": [{"KWARGS": ['{"eps": 0.2}'], "LOSSES": ["SoftmaxLabelSmooth"]}],
        },
    )
    cfg = resolve([path])
    assert cfg["OPTIMIZER"][0]["OPTIMIZER_KWARGS"] == {}
    assert cfg["SCHEDULER"][0]["LR_KWARGS"] == {"step_size": 20, "gamma": 0.5}
    assert cfg["LOSS"][0]["KWARGS"] == [{"eps": 0.2}]


def test_legacy_torch_optimizer_in_optimizer_name(tmp_path):
    path = write(tmp_path, "a.yml", {"OPTIMIZER": [{"OPTIMIZER_NAME": "AdamW", "BASE_LR": 0.01}]})
    with pytest.warns(ConfigWarning, match="OPTIMIZER_NAME 'AdamW' names a torch optimizer"):
        cfg = resolve([path])
    assert cfg["OPTIMIZER"][0]["OPTIMIZER"] == "AdamW" and cfg["OPTIMIZER"][0]["OPTIMIZER_NAME"] == "opt-1"


def test_dead_keys_are_accepted_and_warned_once(tmp_path):
    path = write(tmp_path, "a.yml", {"EXECUTION": {"MODEL_SERVING": "None"}, "OPTIMIZER": [{"FP16": True}]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolve([path])
    messages = [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]
    assert any("EXECUTION.MODEL_SERVING" in m for m in messages)
    assert any("OPTIMIZER[0].FP16" in m for m in messages)


def test_blank_values_take_the_default(tmp_path):
    path = write(tmp_path, "a.yml", "MODEL:\n  MODEL_KWARGS:\nEXECUTION:\n  DATAREADER:\n    DATASET_ARGS:\n")
    cfg = resolve([path])
    assert cfg["MODEL"]["MODEL_KWARGS"] == {}
    assert cfg["EXECUTION"]["DATAREADER"]["DATASET_ARGS"] == {}


def test_loss_names_default_to_the_label(tmp_path):
    path = write(tmp_path, "a.yml", {"LOSS": [{"LABEL": "color"}, {}]})
    assert [e["NAME"] for e in resolve([path])["LOSS"]] == ["color", "out2"]


def test_fp16_picks_mixed_precision_unless_the_trainer_sets_it(tmp_path):
    path = write(tmp_path, "a.yml", {"EXECUTION": {"FP16": True}, "trainer": {"accelerator": "cpu"}})
    assert resolve([path])["trainer"]["precision"] == "bf16-mixed"
    cfg = resolve([path], [("trainer.precision", "32-true")])
    assert cfg["trainer"]["precision"] == "32-true" and cfg["EXECUTION"]["FP16"] is False


def test_a_chosen_seed_is_recorded_in_the_resolved_config():
    seed = resolve([])["seed_everything"]
    assert isinstance(seed, int) and not isinstance(seed, bool)


def test_printed_config_loads_again_as_the_same_config(tmp_path):
    source = CONFIGS / "digits.yml"
    first = resolve([source], [("EXECUTION.EPOCHS", "2"), ("OPTIMIZER.0.BASE_LR", "0.01")])
    printed = write(tmp_path, "printed.yml", dump(first))
    assert resolve([printed]) == first


@pytest.mark.parametrize(
    "text, message",
    [
        ("EXECUTION: [1, 2\n", "YAML syntax error in .*bad.yml' line 2"),
        ("", "is empty"),
        ("- 1\n- 2\n", "holds a list, not a mapping"),
    ],
)
def test_unreadable_files_are_named_with_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        resolve([write(tmp_path, "bad.yml", text)])


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file .*nope.yml' does not exist"):
        resolve([tmp_path / "nope.yml"])


def test_numbers_with_an_exponent_are_floats_in_files_and_overrides(tmp_path):
    path = write(
        tmp_path, "a.yml", "OPTIMIZER:\n  - BASE_LR: 3e-3\n    WEIGHT_DECAY: 1E-4\nEXECUTION:\n  EPOCHS: 1e1\n"
    )
    cfg = resolve([path], [("OPTIMIZER.0.WEIGHT_DECAY", "5e-4"), ("LOSS.0.LAMBDAS", "[1e0, 2.5e-1]")])
    assert cfg["OPTIMIZER"][0]["BASE_LR"] == 0.003 and isinstance(cfg["OPTIMIZER"][0]["BASE_LR"], float)
    assert cfg["OPTIMIZER"][0]["WEIGHT_DECAY"] == 0.0005
    assert cfg["LOSS"][0]["LAMBDAS"] == [1.0, 0.25]
    printed = write(tmp_path, "printed.yml", dump(cfg))
    assert resolve([printed]) == cfg  # --print_config's output reads back the same


def test_words_that_only_look_like_numbers_stay_strings(tmp_path):
    path = write(tmp_path, "a.yml", "SAVE:\n  MODEL_QUALIFIER: e5\n  MODEL_BACKBONE: 1e5x\n")
    cfg = resolve([path])
    assert cfg["SAVE"]["MODEL_QUALIFIER"] == "e5" and cfg["SAVE"]["MODEL_BACKBONE"] == "1e5x"


# ---- composing configs: merge, replace, delete, swapping a component ----


def test_a_replace_tag_replaces_a_mapping_and_a_delete_tag_removes_a_key(tmp_path):
    a = write(
        tmp_path,
        "a.yml",
        {
            "MODEL": {"MODEL_KWARGS": {"width": 32, "embedding_dimensions": 64}},
            "EXECUTION": {"DATAREADER": {"CRAWLER_ARGS": {"split_seed": 1, "test_fraction": 0.2}}},
        },
    )
    b = write(
        tmp_path,
        "b.yml",
        "MODEL:\n  MODEL_KWARGS: !replace {width: 8}\n"
        "EXECUTION:\n  DATAREADER:\n    CRAWLER_ARGS:\n      split_seed: !delete\n",
    )
    cfg = resolve([a, b])
    assert cfg["MODEL"]["MODEL_KWARGS"] == {"width": 8}
    assert cfg["EXECUTION"]["DATAREADER"]["CRAWLER_ARGS"] == {"test_fraction": 0.2}
    assert "!" not in dump(cfg)  # the tags are resolved, not carried into the resolved config


def test_on_the_command_line_a_mapping_replaces_and_a_delete_removes(tmp_path):
    a = write(tmp_path, "a.yml", {"MODEL": {"MODEL_KWARGS": {"width": 32, "embedding_dimensions": 64}}})
    assert resolve([a], [("MODEL.MODEL_KWARGS", "{width: 8}")])["MODEL"]["MODEL_KWARGS"] == {"width": 8}
    assert resolve([a], [("MODEL.MODEL_KWARGS.width", "!delete")])["MODEL"]["MODEL_KWARGS"] == {
        "embedding_dimensions": 64
    }


def test_a_tag_in_the_wrong_place_is_a_yaml_error_naming_the_file(tmp_path):
    bad = write(tmp_path, "bad.yml", "MODEL:\n  MODEL_KWARGS: !replace 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yml.*line 2.*!replace tags a mapping"):
        resolve([bad])


def test_a_file_that_names_another_component_drops_the_old_ones_arguments(tmp_path):
    a = write(
        tmp_path,
        "a.yml",
        {
            "MODEL": {"MODEL_ARCH": "SmallCNN", "MODEL_KWARGS": {"width": 32}},
            "EXECUTION": {"DATAREADER": {"DATAREADER": "Digits", "CRAWLER_ARGS": {"split_seed": 3}}},
        },
    )
    b = write(
        tmp_path,
        "b.yml",
        {
            "MODEL": {"MODEL_ARCH": "ClassificationResnet", "MODEL_KWARGS": {"initial_channels": 1}},
            "EXECUTION": {"DATAREADER": {"DATAREADER": "ImageFolder"}},
        },
    )
    with pytest.warns(
        ConfigWarning,
        match=r"MODEL\.MODEL_KWARGS of SmallCNN dropped: .*b\.yml sets MODEL\.MODEL_ARCH to ClassificationResnet",
    ):
        cfg = resolve([a, b])
    assert cfg["MODEL"]["MODEL_KWARGS"] == {"initial_channels": 1}
    assert cfg["EXECUTION"]["DATAREADER"]["CRAWLER_ARGS"] == {}
    same = write(
        tmp_path, "same.yml", {"MODEL": {"MODEL_ARCH": "SmallCNN", "MODEL_KWARGS": {"embedding_dimensions": 16}}}
    )
    assert resolve([a, same])["MODEL"]["MODEL_KWARGS"] == {
        "width": 32,
        "embedding_dimensions": 16,
    }  # same model: merged


def test_the_command_line_swaps_a_component_whatever_the_order_of_its_flags(tmp_path):
    a = write(
        tmp_path,
        "a.yml",
        {"OPTIMIZER": [{"OPTIMIZER_NAME": "opt-1", "OPTIMIZER": "Adam", "OPTIMIZER_KWARGS": {"betas": [0.9, 0.99]}}]},
    )
    for order in ([0, 1], [1, 0]):
        flags = [("OPTIMIZER.0.OPTIMIZER", "SGD"), ("OPTIMIZER.0.OPTIMIZER_KWARGS.momentum", "0.9")]
        with pytest.warns(ConfigWarning, match="the command line sets OPTIMIZER"):
            cfg = resolve([a], [flags[i] for i in order])
        assert cfg["OPTIMIZER"][0]["OPTIMIZER_KWARGS"] == {"momentum": 0.9}


# ---- a resolved config stays open to overrides ----


def test_an_override_of_transformation_reaches_both_splits_of_a_resolved_config(tmp_path):
    resolved = write(tmp_path, "resolved.yml", dump(resolve([CONFIGS / "digits.yml"])))
    cfg = resolve([resolved], [("TRANSFORMATION.BATCH_SIZE", "32"), ("TRANSFORMATION.ARGS.i_shape", "[16, 16]")])
    for section in ("TRANSFORMATION", "TRAIN_TRANSFORMATION", "TEST_TRANSFORMATION"):
        assert cfg[section]["BATCH_SIZE"] == 32 and cfg[section]["ARGS"]["i_shape"] == [16, 16], section
    assert cfg["TRAIN_TRANSFORMATION"]["ARGS"]["t_crop"] is True  # what differs per split stays
    only_train = resolve([resolved], [("TRAIN_TRANSFORMATION.BATCH_SIZE", "16")])
    assert (only_train["TRAIN_TRANSFORMATION"]["BATCH_SIZE"], only_train["TEST_TRANSFORMATION"]["BATCH_SIZE"]) == (
        16,
        64,
    )
    assert resolve([resolved]) == resolve([CONFIGS / "digits.yml"])  # still the same config


# ---- where each value came from ----


def test_origins_name_the_file_or_flag_that_set_each_key(tmp_path):
    a = write(tmp_path, "a.yml", {"EXECUTION": {"EPOCHS": 3}, "OPTIMIZER": [{"BASE_LR": 0.1}]})
    b = write(tmp_path, "b.yml", {"trainer": {"log_every_n_steps": 7}})
    origins: dict = {}
    resolve([a, b], [("OPTIMIZER.0.BASE_LR", "0.2")], origins=origins)
    assert origins[("EXECUTION", "EPOCHS")] == str(a)
    assert origins[("OPTIMIZER", 0, "BASE_LR")] == "--OPTIMIZER.0.BASE_LR"
    assert origins[("LOGGING", "STEP_VERBOSE")] == str(b)  # the Trainer key it mirrors was set there
    assert ("MODEL", "MODEL_ARCH") not in origins  # a default


def test_the_resolved_trainer_section_holds_every_trainer_argument_at_its_default_unless_set(tmp_path):
    import inspect

    import lightning.pytorch as pl

    from ednaml.config.schema import trainer_defaults

    signature = {
        name: p.default for name, p in inspect.signature(pl.Trainer.__init__).parameters.items() if name != "self"
    }
    assert trainer_defaults() == signature and list(trainer_defaults()) == list(
        signature
    )  # read without importing torch
    path = write(
        tmp_path, "a.yml", "EXECUTION:\n  TEST_FREQUENCY: 3\ntrainer:\n  gradient_clip_val: 0.5\n  my_typo: 1\n"
    )
    trainer = resolve([path])["trainer"]
    assert list(trainer) == [*signature, "my_typo"]  # Lightning's order, then what validation will name
    assert (
        trainer["gradient_clip_val"] == 0.5 and trainer["check_val_every_n_epoch"] == 3 and trainer["max_epochs"] == 10
    )
    assert {
        k: v
        for k, v in trainer.items()
        if k not in ("gradient_clip_val", "check_val_every_n_epoch", "max_epochs", "log_every_n_steps", "my_typo")
    } == {
        k: v
        for k, v in signature.items()
        if k not in ("gradient_clip_val", "check_val_every_n_epoch", "max_epochs", "log_every_n_steps")
    }
