"""Predicting and exporting: records from outputs, new data found in input order, output files, and every
mistake named. The runs themselves are in test_e2e.py (images, exports) and test_text_video.py (texts, videos)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import CONFIGS, run_ednaml
from PIL import Image
from test_validation import problems

from ednaml.checkpoints import trained_checkpoint
from ednaml.cli import parse_args
from ednaml.data.readers import image_inputs
from ednaml.data.text import text_inputs
from ednaml.deploy import Predicted, manifest_path, output_format, write_records
from ednaml.deploy.classification import BaseDeploy
from ednaml.errors import ConfigError, DataError, UsageError

CLASSES = ["cat", "dog", "owl"]


def predicted(target: bool = True) -> Predicted:
    probabilities = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    return Predicted(probabilities, torch.tensor([1, 2]) if target else None, CLASSES)


def test_base_deploy_gives_class_probability_target_and_top_k_per_input():
    one = BaseDeploy().records({"animal": predicted()})
    assert one == [
        {"prediction": "dog", "confidence": 0.7, "target": "dog"},
        {"prediction": "cat", "confidence": 0.5, "target": "owl"},
    ]
    top = BaseDeploy(top_k=5).records({"animal": predicted(target=False)})  # more than the classes: all of them
    assert top[1] == {
        "prediction": "cat",
        "confidence": 0.5,
        "top_k": [
            {"class": "cat", "probability": 0.5},
            {"class": "owl", "probability": 0.3},
            {"class": "dog", "probability": 0.2},
        ],
    }
    two = BaseDeploy().records({"a": predicted(target=False), "b": predicted(target=False)})
    assert list(two[0]) == ["a_prediction", "a_confidence", "b_prediction", "b_confidence"]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="top_k"):
            BaseDeploy(top_k=bad)


def test_records_are_written_as_csv_jsonl_or_parquet_with_lists_kept(tmp_path):
    records = [
        {"index": i, "prediction": c, "top_k": [{"class": c, "probability": p}]}
        for i, (c, p) in enumerate([("dog", 0.7), ("cat", 0.5)])
    ]
    assert write_records(tmp_path / "p.csv", records, "csv") == ["index", "prediction", "top_k"]
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [json.loads(r["top_k"]) for r in rows] == [r["top_k"] for r in records]
    write_records(tmp_path / "p.jsonl", records, "jsonl")
    assert [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()] == records
    import pyarrow.parquet

    write_records(tmp_path / "p.parquet", records, "parquet")
    assert pyarrow.parquet.read_table(tmp_path / "p.parquet").to_pylist() == records
    assert manifest_path(tmp_path / "p.csv") == tmp_path / "p.manifest.json"
    assert output_format("out.JSONL") == "jsonl" and output_format("out") == "csv"
    with pytest.raises(ValueError, match=r"\.csv, \.jsonl or \.parquet file, not \.txt"):
        output_format("out.txt")


def test_new_images_are_found_below_a_folder_in_path_order_and_bad_ones_named(tmp_path):
    for name in ("b.png", "a.PNG", "sub/c.jpg", "notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        if name.endswith("txt"):
            (tmp_path / name).write_text("not an image")
        else:
            Image.new("L", (4, 4)).save(tmp_path / name, format="PNG" if "png" in name.lower() else "JPEG")
    assert [i for i, _ in image_inputs(str(tmp_path))] == [str(tmp_path / n) for n in ("a.PNG", "b.png", "sub/c.jpg")]
    assert image_inputs(str(tmp_path / "b.png")) == [(str(tmp_path / "b.png"),) * 2]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG nothing")
    with pytest.raises(DataError, match=r"1 of 4 images cannot be used: .*broken.png \(not a readable image\)"):
        image_inputs(str(tmp_path))
    with pytest.raises(DataError, match=r"notes.txt' has none of the image extensions \(.png"):
        image_inputs(str(tmp_path / "notes.txt"))
    with pytest.raises(DataError, match="does not exist"):
        image_inputs(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        image_inputs(str(tmp_path / "empty"))


def test_new_texts_come_from_lines_a_text_column_or_files(tmp_path):
    (tmp_path / "lines.txt").write_text("first text\n\nsecond text\n")
    assert text_inputs(str(tmp_path / "lines.txt")) == [
        (f"{tmp_path / 'lines.txt'}:1", "first text"),
        (f"{tmp_path / 'lines.txt'}:3", "second text"),
    ]
    (tmp_path / "rows.csv").write_text("id,text\nr1,hello\nr2,world\n")
    assert text_inputs(str(tmp_path / "rows.csv")) == [("r1", "hello"), ("r2", "world")]
    (tmp_path / "rows.jsonl").write_text('{"text": "one"}\n{"text": "two", "id": 7}\n')
    assert text_inputs(str(tmp_path / "rows.jsonl")) == [(f"{tmp_path / 'rows.jsonl'}:1", "one"), ("7", "two")]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "b.txt").write_text("bee")
    (folder / "a.txt").write_text("ay")
    (folder / "skip.csv").write_text("id,text\nx,y\n")
    assert text_inputs(str(folder)) == [(str(folder / "a.txt"), "ay"), (str(folder / "b.txt"), "bee")]
    (tmp_path / "bad.jsonl").write_text('["a list"]\n')
    with pytest.raises(DataError, match="every row needs a `text` field"):
        text_inputs(str(tmp_path / "bad.jsonl"))
    (tmp_path / "broken.jsonl").write_text('{"text": \n')
    with pytest.raises(DataError, match="cannot be read"):
        text_inputs(str(tmp_path / "broken.jsonl"))


def test_predict_takes_one_run_or_checkpoint_and_data_only_for_predict():
    args = parse_args(["predict", "runs/x/1", "--data", "images/", "--output", "p.jsonl", "EXECUTION.EPOCHS=2"])
    assert args["positional"] == ["runs/x/1"] and args["data"] == "images/" and args["output"] == "p.jsonl"
    assert args["overrides"] == [("EXECUTION.EPOCHS", "2")]
    with pytest.raises(UsageError, match="unexpected argument 'runs/x/1'"):
        parse_args(["fit", "runs/x/1"])


def test_a_run_predicts_with_its_best_checkpoint_else_its_last_and_only_from_its_own_folder(tmp_path):
    run = tmp_path / "exp" / "r1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "summary.json").write_text(
        json.dumps({"checkpoints": {"best": "/etc/passwd"}})
    )  # untrusted: only its file name counts
    assert trained_checkpoint(str(run)) == run / "checkpoints" / "last.ckpt"
    (run / "checkpoints" / "m_best.ckpt").write_bytes(b"x")
    (run / "summary.json").write_text(json.dumps({"checkpoints": {"best": "/elsewhere/m_best.ckpt"}}))
    assert trained_checkpoint("r1", tmp_path) == run / "checkpoints" / "m_best.ckpt"
    assert trained_checkpoint(str(run / "checkpoints" / "last.ckpt")) == run / "checkpoints" / "last.ckpt"
    (run / "checkpoints" / "last.ckpt").unlink()
    (run / "checkpoints" / "m_best.ckpt").unlink()
    with pytest.raises(ConfigError, match="has no checkpoint"):
        trained_checkpoint(str(run))
    outside = tmp_path / "elsewhere.ckpt"
    outside.write_bytes(b"x")
    (run / "checkpoints" / "last.ckpt").symlink_to(outside)  # a link out of the run's folder is not followed
    (run / "summary.json").write_text(json.dumps({"checkpoints": ["not", "a", "mapping"]}))
    with pytest.raises(ConfigError, match="has no checkpoint"):
        trained_checkpoint(str(run))


def test_deployment_mistakes_are_named_before_anything_runs():
    assert problems([("DEPLOYMENT.DEPLOY", "BaseDeplo")]) == [
        "DEPLOYMENT.DEPLOY: 'BaseDeplo' is not a known deployment; did you mean 'BaseDeploy'?"
    ]
    assert problems([("DEPLOYMENT.DEPLOYMENT_ARGS", "{topk: 3}")]) == [
        "DEPLOYMENT.DEPLOYMENT_ARGS.topk: BaseDeploy takes no argument 'topk'; did you mean 'top_k'?"
    ]
    assert problems([("DEPLOYMENT.OUTPUT_ARGS.format", "xlsx")]) == [
        "DEPLOYMENT.OUTPUT_ARGS.format: 'xlsx' is not one of csv, jsonl, parquet"
    ]


@pytest.mark.e2e
def test_predict_without_a_trained_model_or_with_a_reader_that_reads_no_new_data_is_refused(tmp_path):
    result = run_ednaml("predict", "--config", str(CONFIGS / "digits.yml"), "--data", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "needs a trained model" in result.stderr and "Traceback" not in result.stderr
    from ednaml.data.base import DataReader

    with pytest.raises(DataError, match="does not read new data"):
        DataReader.inputs(str(Path(tmp_path)))


@pytest.mark.e2e
def test_export_needs_one_run_and_a_known_format(tmp_path):
    for args, message in (
        (["export", "r1"], "needs --format torchscript or onnx"),
        (["export", "r1", "--format", "tflite"], "not 'tflite'"),
        (["export", "--format", "onnx"], "takes one run folder"),
    ):
        result = run_ednaml(*args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_deployment_datareader_reads_new_data_where_the_config_sets_one(tmp_path):
    import ednaml
    from ednaml.adapters.datamodule import EdnaDataModule, NewData
    from ednaml.api import prepare
    from ednaml.data.readers import Digits

    @ednaml.register.datareader("ListedImages")
    class ListedImages(Digits):
        """Images listed one path per line in a text file."""

        inputs = staticmethod(lambda path: [(line, line) for line in Path(path).read_text().split()])

    for name in ("a.png", "b.png"):
        Image.new("L", (8, 8)).save(tmp_path / name)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'b.png'}\n{tmp_path / 'a.png'}\n")
    labels = {"digit": [str(d) for d in range(10)]}
    config = prepare([CONFIGS / "digits.yml"], [("DEPLOYMENT.DATAREADER.DATAREADER", "ListedImages")])
    data = EdnaDataModule(config, None, NewData(str(listing), labels))
    assert data.ids == [str(tmp_path / "b.png"), str(tmp_path / "a.png")]  # in the listing's order
    assert data.predict_dataloader().dataset[0][0].shape == (1, 8, 8)  # the model's transforms
    with pytest.raises(DataError, match="none of the image extensions"):  # without it: the training reader reads --data
        EdnaDataModule(prepare([CONFIGS / "digits.yml"]), None, NewData(str(listing), labels))
    assert problems([("DEPLOYMENT.DATAREADER.DATAREADER", "ImageFoldr")]) == [
        "DEPLOYMENT.DATAREADER.DATAREADER: 'ImageFoldr' is not a known datareader; did you mean 'ImageFolder'?"
    ]


def test_new_data_with_no_inputs_is_named(tmp_path):
    from ednaml.adapters.datamodule import EdnaDataModule, NewData
    from ednaml.api import prepare

    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="empty.txt' holds no inputs to predict on"):
        EdnaDataModule(
            prepare([CONFIGS / "analogies-text.yml"]),
            None,
            NewData(str(tmp_path / "empty.txt"), {"category": ["family", "currency"]}),
        )


def test_model_json_s_preprocessing_holds_the_normalization_a_config_leaves_to_its_default():
    from ednaml.config import resolve
    from ednaml.config.sections import sections
    from ednaml.export import preprocessing

    config = sections(
        resolve([CONFIGS / "digits.yml"], [("TEST_TRANSFORMATION.ARGS", "!replace {i_shape: [8, 8], channels: 1}")])
    )
    shown = preprocessing(config)
    assert shown["normalization_mean"] == 0.5 and shown["normalization_std"] == 0.5 and shown["i_shape"] == [8, 8]
    assert shown["channels"] == 1 and "train" not in shown
