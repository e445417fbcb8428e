"""`ednaml init --data`: from a folder of images or a CSV manifest to a config that `ednaml check` accepts and
`ednaml fit` trains above the majority baseline; bad data said as `check` says it. The images are real:
scikit-learn's bundled handwritten digits, four classes, written as PNG files."""

from __future__ import annotations

import pytest
import yaml
from helpers import digit_images, run_ednaml, run_folders, summary

pytestmark = pytest.mark.e2e

SHORT = ["--EXECUTION.EPOCHS", "4"]  # the starter's own epochs take a minute; four beat the baseline already


@pytest.mark.parametrize("data", ["images", "images/manifest.csv"])
def test_init_writes_a_config_that_checks_and_trains_above_the_majority_baseline(tmp_path, data):
    digit_images(tmp_path / "images")
    made = run_ednaml("init", "--data", data, "-o", "starter.yml", cwd=tmp_path)
    assert made.returncode == 0 and "finds no problem" in made.stdout, made.stderr[-3000:]
    config = yaml.safe_load((tmp_path / "starter.yml").read_text())
    assert config["TRANSFORMATION"]["ARGS"] == {
        "i_shape": [24, 24],
        "channels": 1,
        "normalization_mean": 0.5,
        "normalization_std": 0.5,
    }
    checked = run_ednaml("check", "--config", "starter.yml", cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert checked.returncode == 0 and "ready to train" in checked.stdout, checked.stderr[-3000:]
    assert "4 classes" in checked.stdout
    fit = run_ednaml("fit", "--config", "starter.yml", *SHORT, cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert fit.returncode == 0, fit.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    result = summary(run)
    accuracy, baseline = result["final"]["test/accuracy"], result["majority_baseline"]["test/accuracy"]
    assert accuracy > baseline + 0.3, (accuracy, baseline)


def test_a_manifest_with_a_split_column_and_folders_of_splits_are_read_as_such(tmp_path):
    digit_images(tmp_path / "images", splits=True)
    for data, reader in (("images", "ImageFolder"), ("images/manifest.csv", "CSVManifest")):
        made = run_ednaml("init", "--data", data, cwd=tmp_path)  # to stdout
        assert made.returncode == 0, made.stderr[-3000:]
        config = yaml.safe_load(made.stdout)
        assert config["EXECUTION"]["DATAREADER"]["DATAREADER"] == reader
    arguments = config["EXECUTION"]["DATAREADER"]["CRAWLER_ARGS"]
    assert arguments == {
        "manifest": "images/manifest.csv",
        "path_column": "file",
        "label_columns": ["digit"],
        "split_column": "part",
    }


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda root: None, "--data data: no such file or folder"),
        (lambda root: (root / "data").mkdir(), "CRAWLER_ARGS.data_folder: no images"),
        (lambda root: (root / "data").write_text("path,label\nmissing.png,cat\n"), "missing.png (missing)"),
        (lambda root: (root / "data").write_text("x,label\n1,cat\n"), "no column holds image paths"),
    ],
)
def test_bad_data_is_said_with_what_is_wrong_and_nothing_is_written(tmp_path, make, said):
    make(tmp_path)
    target = tmp_path / "data"
    if target.is_file():
        target.rename(tmp_path / "data.csv")
        data = "data.csv"
        said = said.replace("--data data:", "--data data.csv:")
    else:
        data = "data"
    made = run_ednaml("init", "--data", data, "-o", "starter.yml", cwd=tmp_path)
    assert made.returncode == 2 and "Traceback" not in made.stderr
    assert said in made.stderr, made.stderr
    assert not (tmp_path / "starter.yml").exists()


def test_init_never_writes_over_a_file(tmp_path):
    digit_images(tmp_path / "images")
    (tmp_path / "mine.yml").write_text("MODEL: {}\n")
    made = run_ednaml("init", "--data", "images", "-o", "mine.yml", cwd=tmp_path)
    assert made.returncode == 2 and "the file exists" in made.stderr
    assert (tmp_path / "mine.yml").read_text() == "MODEL: {}\n"
