"""One rule for relative paths: relative to the config file that set them, to the working directory when
given on the command line; the run's config holds them absolute."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import yaml
from helpers import CONFIGS, run_ednaml, run_folders

from ednaml import registry
from ednaml.config import resolve
from ednaml.config.paths import anchor, location_arguments
from ednaml.validation import path_keys


def _reader_paths() -> list[tuple[str, str, str]]:
    """(reader, kwargs section, argument) for every path argument of every registered reader's crawler and
    transforms."""
    found = []
    for name in registry.names("datareader"):
        try:
            reader = registry.get("datareader", name)
        except ImportError:  # an extra that is not installed
            continue
        found += [(name, "CRAWLER_ARGS", arg) for arg in location_arguments(reader.crawler)]
        found += [(name, "ARGS", arg) for arg in location_arguments(reader.transforms)]
    return found


READER_PATHS = _reader_paths()


def test_every_reader_names_its_path_arguments():
    named = {(reader, arg) for reader, _, arg in READER_PATHS}
    assert {
        ("ImageFolder", "data_folder"),
        ("CSVManifest", "manifest"),
        ("CSVManifest", "root"),
        ("TextFiles", "train_file"),
        ("TextFiles", "tokenizer_file"),
        ("HFDataset", "path"),
        ("HFDataset", "cache_dir"),
    } <= named, sorted(named)


@pytest.mark.parametrize(("reader", "section", "argument"), READER_PATHS, ids=lambda v: str(v))
@pytest.mark.parametrize("where", ["file", "flag"])
def test_each_path_argument_is_relative_to_the_file_that_set_it_or_to_the_working_directory(
    tmp_path, monkeypatch, reader, section, argument, where
):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    place = {"CRAWLER_ARGS": ["EXECUTION", "DATAREADER", "CRAWLER_ARGS"], "ARGS": ["TRANSFORMATION", "ARGS"]}[section]
    key = ".".join(place + [argument])
    text = {"EXECUTION": {"DATAREADER": {"DATAREADER": reader}}}
    if where == "file":
        node = text
        for part in place:
            node = node.setdefault(part, {})
        node[argument] = "data/thing"
    config_file = project / "cfg.yml"
    config_file.write_text(yaml.safe_dump(text))
    origins: dict = {}
    config = resolve([config_file], [(key, "data/thing")] if where == "flag" else [], origins=origins)
    keys = path_keys(config, registry.Trust())
    assert tuple(place + [argument]) in keys
    anchor(config, keys, origins, [config_file], warnings.warn)
    node = config
    for part in place + [argument]:
        node = node[part]
    assert node == str((project if where == "file" else elsewhere) / "data" / "thing")


@pytest.mark.parametrize("key", ["MODEL.WEIGHTS", "SAVE.CHECKPOINT_DIRECTORY", "ckpt_path", "EXECUTION.IMPORTS"])
def test_the_schema_path_keys_follow_the_same_rule(tmp_path, monkeypatch, key):
    from ednaml.config.paths import SCHEMA_PATHS

    (tmp_path / "conf").mkdir()
    monkeypatch.chdir(tmp_path)
    value = ["my/things.py"] if key == "EXECUTION.IMPORTS" else "my/things"
    *parents, leaf = key.split(".")
    text: dict = {leaf: value}
    for parent in reversed(parents):
        text = {parent: text}
    (tmp_path / "conf" / "cfg.yml").write_text(yaml.safe_dump(text))
    origins: dict = {}
    config = resolve([tmp_path / "conf" / "cfg.yml"], origins=origins)
    anchor(config, SCHEMA_PATHS, origins, [tmp_path / "conf" / "cfg.yml"], warnings.warn)
    node = config
    for part in key.split("."):
        node = node[part]
    expected = str(tmp_path / "conf" / "my" / "things") + (".py" if key == "EXECUTION.IMPORTS" else "")
    assert node == ([expected] if key == "EXECUTION.IMPORTS" else expected)


def test_urls_absolute_paths_home_paths_and_module_names_are_left_as_written(tmp_path):
    config = {
        "SAVE": {"CHECKPOINT_DIRECTORY": "s3://bucket/runs"},
        "MODEL": {"WEIGHTS": "/abs/w.pt"},
        "ckpt_path": "~/x.ckpt",
        "EXECUTION": {"IMPORTS": ["mypkg.losses", "local.py"]},
    }
    (tmp_path / "c.yml").write_text("")
    origins = {(k,): str(tmp_path / "c.yml") for k in config}
    from ednaml.config.paths import SCHEMA_PATHS

    anchor(config, SCHEMA_PATHS, origins, [tmp_path / "c.yml"], warnings.warn)
    assert config["SAVE"]["CHECKPOINT_DIRECTORY"] == "s3://bucket/runs" and config["MODEL"]["WEIGHTS"] == "/abs/w.pt"
    assert config["ckpt_path"] == "~/x.ckpt" and config["EXECUTION"]["IMPORTS"] == [
        "mypkg.losses",
        str(tmp_path / "local.py"),
    ]


def _images(root: Path) -> None:
    from PIL import Image

    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            Image.new("L", (8, 8), color=(20 * i) if label == "a" else 255 - 20 * i).save(root / label / f"{i}.png")


def _project_config(imports: bool) -> str:
    """The shipped digits config, reading a folder of images beside it (and, with `imports`, a model of its own)."""
    config = yaml.safe_load((CONFIGS / "digits.yml").read_text())
    config["EXECUTION"].update(
        EPOCHS=1,
        DATAREADER={"DATAREADER": "ImageFolder", "CRAWLER_ARGS": {"data_folder": "images", "label_name": "digit"}},
    )
    if imports:
        config["EXECUTION"]["IMPORTS"] = ["code/my_model.py"]
        config["MODEL"]["MODEL_ARCH"] = "MovedNet"
    config["TRANSFORMATION"]["BATCH_SIZE"] = 8
    return yaml.safe_dump(config, sort_keys=False)


MODEL = """\
import torch
from ednaml.models.classification import SmallCNN
from ednaml.registry import register


@register("model", "MovedNet")
class MovedNet(SmallCNN):
    pass
"""


@pytest.mark.e2e
def test_a_config_and_its_data_moved_together_train_from_a_third_folder(tmp_path):
    project = tmp_path / "first" / "project"
    _images(project / "images")
    (project / "code").mkdir()
    (project / "code" / "my_model.py").write_text(MODEL)
    (project / "cfg.yml").write_text(_project_config(imports=True))
    moved = tmp_path / "second" / "project"
    shutil.move(str(project), str(moved))
    third = tmp_path / "third"
    third.mkdir()
    result = run_ednaml(
        "fit",
        "--config",
        str(moved / "cfg.yml"),
        "--trainer.enable_progress_bar",
        "false",
        cwd=third,
        env={"WANDB_MODE": "disabled"},
    )
    # 17 training images in batches of 8: the last batch is 1 image, which batch norm cannot train on
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (
        "a training batch of 1 sample reached a batch norm layer" in result.stderr
        and "drop_last: true" in result.stderr
    )
    result = run_ednaml(
        "fit",
        "--config",
        str(moved / "cfg.yml"),
        "--trainer.enable_progress_bar",
        "false",
        "--EXECUTION.DATAREADER.DATALOADER_ARGS.drop_last",
        "true",
        cwd=third,
        env={"WANDB_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [r for r in run_folders(third / "runs") if (r / "checkpoints" / "last.ckpt").exists()]
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["EXECUTION"]["DATAREADER"]["CRAWLER_ARGS"]["data_folder"] == str(moved / "images")
    assert recorded["EXECUTION"]["IMPORTS"] == [str(moved / "code" / "my_model.py")]
    given = run_ednaml(
        "check",
        "--config",
        str(moved / "cfg.yml"),
        "--EXECUTION.DATAREADER.CRAWLER_ARGS.data_folder",
        "images",
        cwd=third,
        env={"WANDB_MODE": "disabled"},
    )  # on the command line: the working directory's
    assert given.returncode == 2 and f"{third / 'images'}' does not exist" in given.stderr, given.stderr[-2000:]


@pytest.mark.e2e
def test_an_old_config_that_read_its_data_from_the_working_directory_still_runs_with_a_warning_naming_both(tmp_path):
    _images(tmp_path / "images")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "old.yml").write_text(_project_config(imports=False))
    result = run_ednaml("check", "--config", "configs/old.yml", cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"'images' is read from the working directory ({tmp_path / 'images'})" in result.stderr
        and str(tmp_path / "configs" / "images") in result.stderr
    ), result.stderr[-2000:]
