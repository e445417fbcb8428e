"""One gate for code: every key of a config that can hold a name, given an import path by a checkpoint or a
run folder, is refused naming the key and --trust, with nothing imported. Nothing here trains."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import yaml
from helpers import CONFIGS

from ednaml import kinds, registry
from ednaml.cli import main
from ednaml.config import resolve
from ednaml.config.load import set_path
from ednaml.config.schema import component_paths
from ednaml.errors import format_path

LABELS = {"digit": [str(i) for i in range(10)]}


def _full_config() -> dict:
    """digits.yml with every optional section that names a component filled in, so that component_paths
    yields every key of the schema that can hold a name."""
    config = resolve(
        [CONFIGS / "digits.yml"],
        [
            ("SCHEDULER", [{"LR_SCHEDULER": "StepLR"}]),
            ("MODEL_PLUGIN", [{"PLUGIN": "ModelPlugin"}]),
            (
                "LOSS",
                [
                    {
                        "LOSSES": ["SoftmaxLogitsLoss", "CenterLoss"],
                        "KWARGS": [{}, {}],
                        "LAMBDAS": [1.0, 1.0],
                        "LABEL": "digit",
                        "NAME": "digit",
                    }
                ],
            ),
            ("LOSS_OPTIMIZER", [{"OPTIMIZER_NAME": "digit", "OPTIMIZER": "SGD"}]),
            ("LOSS_SCHEDULER", [{"SCHEDULER_NAME": "digit", "LR_SCHEDULER": "StepLR"}]),
            ("EXECUTION.DATAREADER.GENERATOR", "DigitsDataset"),
            ("DEPLOYMENT.DATAREADER.DATAREADER", "ImageFolder"),
            ("DEPLOYMENT.DATAREADER.GENERATOR", "DigitsDataset"),
        ],
    )
    return config


def _name_keys() -> list[tuple]:
    """Every key path that can hold a name: the EdnaML sections' components, IMPORTS, each class-valued key
    of the `trainer:` section, and a callable inside a Lightning callback's init_args."""
    found = [path for path, _, _ in component_paths(_full_config())]
    found.append(("EXECUTION", "IMPORTS"))
    found += [("trainer", entry.trainer_key) for entry in kinds.lightning().values()]
    found.append(("trainer", "callbacks", "init_args"))
    return found


KEYS = _name_keys()


def _planted(tmp_path, monkeypatch, key: tuple) -> tuple[str, object]:
    """A module on sys.path that leaves a marker when imported, and the value that names it at `key`."""
    module = "planted_" + "_".join(str(part) for part in key).lower()
    (tmp_path / f"{module}.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\n"
        "import lightning.pytorch as pl\nclass Thing(pl.Callback):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    dotted = f"{module}.Thing"
    if key == ("EXECUTION", "IMPORTS"):
        return module, [module]
    if key == ("trainer", "callbacks", "init_args"):  # Lightning's own class, code inside its arguments
        return module, [
            {
                "class_path": "lightning.pytorch.callbacks.LambdaCallback",
                "init_args": {"on_test_start": f"{module}.hook"},
            }
        ]
    if key[0] == "trainer":
        return module, [{"class_path": dotted}] if key[1] in ("callbacks", "plugins") else {"class_path": dotted}
    return module, dotted


def _config_naming(key: tuple, value: object) -> dict:
    config = _full_config()
    set_path(
        config, list(key[:2]) if key == ("trainer", "callbacks", "init_args") else list(key), value, format_path(key)
    )
    return config


def _checkpoint(path, config: dict) -> None:
    torch.save(
        {
            "state_dict": {},
            "pytorch-lightning_version": "2.6.6",
            "epoch": 0,
            "global_step": 0,
            "ednaml": {"config": config, "labels": LABELS},
        },
        path,
    )


def _run_folder(root, config: dict):
    run = root / "digits-v1-smallcnn-all" / "20261206-000000-abcdef"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "summary.json").write_text(json.dumps({"status": "interrupted", "run_id": run.name}))
    _checkpoint(run / "checkpoints" / "last.ckpt", config)
    return run


def _refused(capsys, key: tuple, module: str, tmp_path, argv: list[str]) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    shown = format_path(key[:2] if key == ("trainer", "callbacks", "init_args") else key)
    assert code == 2, err
    assert shown in err and "--trust" in err and "Traceback" not in err, err
    assert module not in sys.modules and not (tmp_path / "imported").exists()


@pytest.mark.parametrize("command", ["test", "fit"])
@pytest.mark.parametrize("key", KEYS, ids=format_path)
def test_an_import_path_at_any_name_key_of_a_checkpoint_is_refused_with_nothing_imported(
    tmp_path, monkeypatch, capsys, key, command
):
    monkeypatch.chdir(tmp_path)
    module, value = _planted(tmp_path, monkeypatch, key)
    _checkpoint(tmp_path / "evil.ckpt", _config_naming(key, value))
    _refused(capsys, key, module, tmp_path, [command, "--ckpt_path", str(tmp_path / "evil.ckpt")])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", KEYS, ids=format_path)
def test_an_import_path_at_any_name_key_of_a_run_folder_is_refused_on_resume_with_nothing_imported(
    tmp_path, monkeypatch, capsys, key
):
    monkeypatch.chdir(tmp_path)
    module, value = _planted(tmp_path, monkeypatch, key)
    run = _run_folder(tmp_path / "runs", _config_naming(key, value))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    _refused(capsys, key, module, tmp_path, ["fit", "--resume", str(run)])
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("command", ["reproduce", "predict", "export"])
@pytest.mark.parametrize(
    "key", [("MODEL", "MODEL_ARCH"), ("trainer", "logger"), ("trainer", "callbacks", "init_args")], ids=format_path
)
def test_every_command_that_reads_a_run_folder_refuses_its_import_paths(tmp_path, monkeypatch, capsys, command, key):
    monkeypatch.chdir(tmp_path)
    module, value = _planted(tmp_path, monkeypatch, key)
    run = _run_folder(tmp_path / "runs", _config_naming(key, value))
    extra = ["--format", "onnx"] if command == "export" else []
    _refused(capsys, key, module, tmp_path, [command, str(run), *extra])


def test_lightning_s_own_classes_with_data_are_accepted_from_a_checkpoint_and_their_paths_kept_in_the_run_folder(
    tmp_path,
):
    from ednaml.adapters.trainer import gate, in_run_folder

    trust = registry.Trust(whole=False)
    section = {
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": "extra", "monitor": "val/loss"},
            },
            {"class_path": "EarlyStopping", "init_args": {"monitor": "val/loss", "patience": 3}},
        ],
        "logger": {"class_path": "CSVLogger", "init_args": {"save_dir": "logs"}},
        "strategy": "ddp",
        "profiler": "simple",
    }
    assert gate(section, trust) == []
    moved = in_run_folder(section, str(tmp_path / "run"), trust)
    assert moved["callbacks"][0]["init_args"]["dirpath"] == str(tmp_path / "run" / "extra")
    assert moved["logger"]["init_args"]["save_dir"] == str(tmp_path / "run" / "logs")
    assert moved["callbacks"][1]["init_args"] == {"monitor": "val/loss", "patience": 3}


@pytest.mark.parametrize("where", ["/tmp/elsewhere", "../../other-run", "~/x", "s3://bucket/x", "logs/../../x"])
def test_a_path_out_of_the_run_folder_in_a_checkpoint_s_logger_or_callback_is_refused(where):
    from ednaml.adapters.trainer import gate

    trust = registry.Trust(whole=False)
    for section in (
        {"logger": {"class_path": "CSVLogger", "init_args": {"save_dir": where}}},
        {"callbacks": [{"class_path": "ModelCheckpoint", "init_args": {"dirpath": "ok", "filename": where}}]},
        {"profiler": {"class_path": "SimpleProfiler", "init_args": {"dirpath": where}}},
    ):
        (problem,) = gate(section, trust)
        assert "is a path outside the run folder" in problem.message and "--trust" in problem.message
    assert gate({"logger": {"class_path": "CSVLogger", "init_args": {"save_dir": where}}}, registry.Trust()) == []


def test_a_value_the_user_types_is_theirs_whatever_the_config_s_source():
    from ednaml.adapters.trainer import gate

    trust = registry.Trust(whole=False, typed=frozenset({("trainer", "callbacks")}))
    section = {
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.LambdaCallback",
                "init_args": {"on_test_start": "builtins.print"},
            }
        ],
        "logger": {"class_path": "CSVLogger", "init_args": {"save_dir": "/tmp/x"}},
    }
    (problem,) = gate(section, trust)
    assert problem.path == ("trainer", "logger", "init_args", "save_dir")


def test_a_checkpoint_s_runs_root_outside_the_working_directory_is_not_followed(tmp_path, monkeypatch):
    from ednaml.api import EdnaML

    monkeypatch.chdir(tmp_path)
    config = resolve([CONFIGS / "digits.yml"], [("trainer.default_root_dir", str(tmp_path / "elsewhere"))])
    _checkpoint(tmp_path / "given.ckpt", config)
    with pytest.warns(Warning, match="default_root_dir .* not followed"):
        experiment = EdnaML(ckpt_path=str(tmp_path / "given.ckpt"))
    assert "default_root_dir" not in experiment.config["trainer"]
    typed = EdnaML(
        ckpt_path=str(tmp_path / "given.ckpt"), overrides={"trainer.default_root_dir": str(tmp_path / "mine")}
    )
    assert typed.config["trainer"]["default_root_dir"] == str(tmp_path / "mine")


def test_a_class_hidden_below_a_checkpoint_s_trainer_entry_is_refused():
    from ednaml.adapters.trainer import gate

    trust = registry.Trust(whole=False)
    for section in (
        {"callbacks": [[{"class_path": "planted.Thing"}]]},
        {"logger": {"init_args": {"x": {"class_path": "planted.Thing"}}}},
        {"max_epochs": {"class_path": "planted.Thing"}},
    ):
        (problem,) = gate(section, trust)
        assert "names a class ('planted.Thing')" in problem.message and "--trust" in problem.message


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"SAVE.DRIVE_BACKUP": True, "SAVE.CHECKPOINT_DIRECTORY": "s3://elsewhere/x"}, "SAVE.CHECKPOINT_DIRECTORY"),
        ({"SAVE.LOG_BACKUP": True}, "SAVE.CHECKPOINT_DIRECTORY"),
        ({"LOGGING.WANDB_MODE": "online"}, "LOGGING.WANDB_MODE"),
    ],
)
def test_where_a_run_is_sent_is_never_chosen_by_a_checkpoint(tmp_path, monkeypatch, capsys, changes, key):
    from ednaml.api import EdnaML

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # logged in: only the trust rule can refuse
    config = resolve([CONFIGS / "digits.yml"], list(changes.items()))
    _checkpoint(tmp_path / "given.ckpt", config)
    for command in ("test", "fit"):
        assert main([command, "--ckpt_path", str(tmp_path / "given.ckpt")]) == 2
        err = capsys.readouterr().err
        assert f"{key}:" in err and "--trust" in err and "Traceback" not in err, err
        assert not (tmp_path / "runs").exists()
    mine = str(tmp_path / "backups") if key.startswith("SAVE") else "online"
    EdnaML(ckpt_path=str(tmp_path / "given.ckpt"), overrides={key: mine})  # the user's own choice: accepted
    EdnaML(ckpt_path=str(tmp_path / "given.ckpt"), trust=True)


@pytest.mark.parametrize(
    "key, value",
    [
        ("profiler", "{class_path: SimpleProfiler, init_args: {dirpath: /tmp/elsewhere, filename: p}}"),
        (
            "strategy",
            '{class_path: "lightning\\x2epytorch\\x2estrategies\\x2eDDPStrategy", '
            'init_args: {ddp_comm_hook: "planted\\x2ehook"}}',
        ),
        ("accelerator", "planted\\x2eThing"),
        ("plugins", ["{class_path: planted.Thing}"]),
        ("callbacks", [{"class_path": "ModelCheckpoint", "dict_kwargs": {"dirpath": "/tmp/elsewhere"}}]),
        (
            "logger",
            {"class_path": "CSVLogger", "init_args": {"save_dir": "logs", "name": "{class_path: planted.Thing}"}},
        ),
    ],
)
def test_a_class_written_as_a_string_or_beside_init_args_in_a_checkpoint_is_refused(key, value):
    from ednaml.adapters.trainer import gate

    problems = gate({key: value}, registry.Trust(whole=False))
    assert problems and all("--trust" in p.message for p in problems), problems


def test_a_checkpoint_s_relative_paths_are_built_inside_the_run_folder_and_a_typed_argument_is_the_user_s(tmp_path):
    from ednaml.adapters.trainer import build_trainer

    section = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "callbacks": [
            {"class_path": "ModelCheckpoint", "init_args": {"dirpath": "extra", "monitor": "val/loss"}},
            {"class_path": "ModelCheckpoint", "init_args": {"dirpath": str(tmp_path / "mine")}},
        ],
    }
    typed = registry.Trust(whole=False, typed=frozenset({("trainer", "callbacks", 1, "init_args", "dirpath")}))
    trainer = build_trainer(section, str(tmp_path / "run"), [], typed)
    dirs = [c.dirpath for c in trainer.callbacks if type(c).__name__ == "ModelCheckpoint" and c.dirpath]
    assert str(tmp_path / "run" / "extra") in dirs and str(tmp_path / "mine") in dirs


def test_a_file_made_to_look_like_a_checkpoint_is_refused_naming_what_it_lacks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.save(
        {"state_dict": {}, "ednaml": {"config": resolve([CONFIGS / "digits.yml"]), "labels": LABELS}},
        tmp_path / "made.ckpt",
    )
    assert main(["test", "--ckpt_path", str(tmp_path / "made.ckpt")]) == 2
    err = capsys.readouterr().err
    assert (
        "lacks what Lightning restores (pytorch-lightning_version, epoch, global_step)" in err
        and "Traceback" not in err
    ), err
    assert not (tmp_path / "runs").exists()


def test_a_checkpoint_whose_recorded_imports_are_not_a_mapping_is_refused_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = resolve([CONFIGS / "digits.yml"], [("EXECUTION.IMPORTS", "[/elsewhere/parts.py]")])
    torch.save(
        {
            "state_dict": {},
            "pytorch-lightning_version": "2.6.6",
            "epoch": 0,
            "global_step": 0,
            "ednaml": {"config": config, "labels": LABELS, "provenance": {"imports": ["not", "a", "mapping"]}},
        },
        tmp_path / "odd.ckpt",
    )
    assert main(["test", "--ckpt_path", str(tmp_path / "odd.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "EXECUTION.IMPORTS" in err and "--trust" in err and "Traceback" not in err, err
