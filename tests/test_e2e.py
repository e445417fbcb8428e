"""End to end: the real `ednaml` command, a real Lightning Trainer, real data, W&B offline."""

from __future__ import annotations

import csv
import inspect
import json
import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml
from helpers import CONFIGS, run_ednaml, run_folders, summary

from ednaml.tracking import wandb_log as wandb_records

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> tuple[Path, Path]:
    """One full `ednaml fit --config configs/digits.yml` (the README's main job), shared by the tests below."""
    cwd = tmp_path_factory.mktemp("digits")
    result = run_ednaml("fit", "--config", str(CONFIGS / "digits.yml"), cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_folders(cwd / "runs")
    assert len(runs) == 1
    return cwd, runs[0]


def test_fit_reaches_095_test_accuracy_on_digits(digits_run):
    _, run = digits_run
    info = summary(run)
    assert info["status"] == "finished"
    assert info["final"]["test/accuracy"] >= 0.95
    assert info["epochs"] == 12


def test_fit_leaves_the_run_folder_layout(digits_run):
    _, run = digits_run
    assert run.parent.name == "digits-v1-smallcnn-all"
    for name in (
        "config.yaml",
        "metrics.csv",
        "summary.json",
        "log.txt",
        "checkpoints/last.ckpt",
        "parameter_groups.json",
    ):
        assert (run / name).is_file(), name
    saved = sorted(p.name for p in (run / "checkpoints").glob("digits-v1_epoch*_step*.ckpt"))
    # SAVE_FREQUENCY 4 over 12 epochs: after epochs 4, 8 and 12 (Lightning counts epochs from 0).
    assert [re.match(r"digits-v1_epoch(\d+)_step\d+\.ckpt", n).group(1) for n in saved] == ["11", "3", "7"]
    info = summary(run)
    assert info["checkpoints"]["last"].endswith("checkpoints/last.ckpt")
    assert len(info["checkpoints"]["saved"]) == 3
    assert "run folder:" in (run / "log.txt").read_text()


def test_metrics_csv_has_every_loss_term_metric_and_learning_rate(digits_run):
    _, run = digits_run
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in (
        "train/loss_step",
        "train/loss",
        "train/digit/SoftmaxLogitsLoss_step",
        "train/digit/SoftmaxLogitsLoss",
        "val/loss",
        "val/accuracy",
        "val/f1_micro",
        "val/f1_weighted",
        "test/accuracy",
        "lr/opt-1/weight",
        "lr/opt-1/bias",
    ):
        assert column in header, column


def test_config_yaml_is_the_resolved_config(digits_run):
    cwd, run = digits_run
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["EXECUTION"]["EPOCHS"] == saved["trainer"]["max_epochs"] == 12
    assert saved["seed_everything"] == 0
    assert saved["OPTIMIZER"][0]["BASE_LR"] == 0.003


def test_wandb_ran_offline_inside_the_run_folder_with_the_nested_config_and_metrics(digits_run):
    _, run = digits_run
    (log,) = run.glob("wandb/offline-run-*/run-*.wandb")
    assert summary(run)["wandb"]["id"] == run.name
    config = wandb_records.run_config(log)
    config.pop("_wandb")
    provenance = config.pop("provenance")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    flat = {key: config.pop(key) for key in list(config) if key not in saved}  # the list sections, also by key path
    assert config == saved
    assert flat["OPTIMIZER.0.BASE_LR"] == saved["OPTIMIZER"][0]["BASE_LR"] and flat["LOSS.digit.LABEL"] == "digit"
    recorded = json.loads((run / "provenance.json").read_text())
    assert provenance["components"] == recorded["components"] and provenance["data"] == recorded["data"]
    rows = wandb_records.history(log)
    tested = [r for r in rows if "test/accuracy" in r]
    assert tested and tested[-1]["test/accuracy"] == pytest.approx(summary(run)["final"]["test/accuracy"])


def test_test_on_the_checkpoint_reproduces_the_test_metrics_in_a_new_run(digits_run):
    cwd, run = digits_run
    result = run_ednaml("test", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_folders(cwd / "runs")
    assert len([r for r in runs if summary(r)["stage"] == "test"]) == 1  # a run of its own; the fit run is kept
    tested = summary(next(r for r in runs if summary(r)["stage"] == "test"))
    assert tested["stage"] == "test" and tested["status"] == "finished"
    for key in ("test/accuracy", "test/f1_micro", "test/f1_weighted", "test/loss"):
        assert tested["final"][key] == pytest.approx(summary(run)["final"][key], abs=1e-6), key


def test_predict_writes_one_prediction_per_test_sample(digits_run):
    cwd, run = digits_run
    result = run_ednaml(
        "predict", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), cwd=cwd, env={"WANDB_MODE": "disabled"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predicted = next(r for r in run_folders(cwd / "runs") if summary(r)["stage"] == "predict")
    rows = (predicted / "predictions.csv").read_text().splitlines()
    assert rows[0] == "index,input,prediction,confidence,target"
    assert len(rows) - 1 == 359  # the test split
    right = sum(r.split(",")[2] == r.split(",")[4] for r in rows[1:])
    assert right / 359 == pytest.approx(summary(run)["final"]["test/accuracy"], abs=1e-6)
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(359))  # each sample by its position in the split
    assert [r.split(",")[1] for r in rows[1:]] == [f"test[{i}]" for i in range(359)]  # in-memory images: their place

    two = run_ednaml(
        "predict",
        "--ckpt_path",
        str(run / "checkpoints" / "last.ckpt"),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        cwd=cwd,
        env={"WANDB_MODE": "disabled"},
    )
    assert two.returncode == 0, two.stderr[-3000:]
    (sharded,) = [r for r in run_folders(cwd / "runs") if summary(r)["stage"] == "predict" and r != predicted]
    rows_two = (sharded / "predictions.csv").read_text().splitlines()
    assert len(rows_two) == len(rows) and not (sharded / ".predictions").exists()  # one file, every sample once
    for one, other in zip(rows[1:], rows_two[1:]):
        (i, x, p, c, t), (j, y, q, d, u) = one.split(","), other.split(",")
        assert (i, x, p, t) == (j, y, q, u) and float(c) == pytest.approx(float(d), abs=1e-5)


def test_print_config_output_loads_again_as_the_same_run(tmp_path):
    first = run_ednaml(
        "fit", "--config", str(CONFIGS / "digits.yml"), "--EXECUTION.EPOCHS", "1", "--print_config", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    trainer = yaml.safe_load(first.stdout)["trainer"]  # all of the config that runs: every Trainer argument
    arguments = [name for name in inspect.signature(pl.Trainer.__init__).parameters if name != "self"]
    assert list(trainer) == arguments and trainer["max_epochs"] == 1
    assert (
        trainer["precision"] is None
        and trainer["gradient_clip_val"] is None
        and trainer["num_sanity_val_steps"] is None
    )
    printed = tmp_path / "printed.yaml"
    printed.write_text(first.stdout)
    again = run_ednaml("fit", "--config", str(printed), "--print_config", cwd=tmp_path)
    assert again.stdout == first.stdout
    result = run_ednaml("fit", "--config", str(printed), cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    assert yaml.safe_load((run / "config.yaml").read_text()) == yaml.safe_load(first.stdout)
    assert not list(run.glob("wandb"))  # WANDB_MODE=disabled starts nothing


def test_ddp_on_two_cpu_processes_leaves_one_run_folder(tmp_path):
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.max_epochs",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]  # no process failed
    (run,) = run_folders(tmp_path / "runs")
    info = summary(run)
    assert info["status"] == "finished" and info["epochs"] == 1
    assert len(list(run.glob("wandb/offline-run-*/run-*.wandb"))) == 1
    assert result.stdout.count(" finished: ") == 1  # only rank 0 reports
    # Each process evaluates its own share of the test split, none twice: the synced metrics are exact.
    single = run_ednaml(
        "test",
        "--ckpt_path",
        str(run / "checkpoints" / "last.ckpt"),
        "--trainer.devices",
        "1",
        "--trainer.strategy",
        "auto",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert single.returncode == 0, single.stderr[-3000:]
    tested = summary(next(r for r in run_folders(tmp_path / "runs") if r != run))
    for key in ("test/accuracy", "test/f1_micro", "test/f1_weighted"):
        assert tested["final"][key] == pytest.approx(info["final"][key], abs=1e-6), key


def test_the_legacy_mnist_config_runs_with_only_its_data_reader_changed(tmp_path):
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "mnist-legacy.yml"),
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "3",
        "--trainer.limit_val_batches",
        "2",
        "--trainer.limit_test_batches",
        "2",
        "--TRANSFORMATION.WORKERS",
        "0",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    assert run.parent.name == "mnist_resnet-v1-res18-mnist"
    assert summary(run)["status"] == "finished"


@pytest.fixture(scope="module")
def new_images(digits_run, tmp_path_factory) -> Path:
    """The digits run's test split as PNG files, in split order (the last 59 one folder down)."""
    from PIL import Image

    from ednaml.data.readers import DigitsCrawler

    _, run = digits_run
    config = yaml.safe_load((run / "config.yaml").read_text())
    crawl = DigitsCrawler(**config["EXECUTION"]["DATAREADER"]["CRAWLER_ARGS"]).crawl()
    folder = tmp_path_factory.mktemp("new") / "images"
    (folder / "more").mkdir(parents=True)
    for i, (array, _) in enumerate(crawl.splits["test"]):
        Image.fromarray(array).save(folder / ("more" if i >= 300 else "") / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def split_predictions(digits_run, tmp_path_factory) -> list[dict[str, str]]:
    """`ednaml predict RUN` on the test split: the run's best checkpoint's records."""
    cwd, run = digits_run
    path = tmp_path_factory.mktemp("split") / "split.csv"
    result = run_ednaml("predict", str(run), "--output", str(path), cwd=cwd, env={"WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-3000:]
    return list(csv.DictReader(path.open()))


def test_predict_on_new_images_gives_the_test_splits_predictions_in_input_order_on_one_or_two_processes(
    digits_run, new_images, split_predictions, tmp_path
):
    import hashlib

    import pyarrow.parquet

    cwd, run = digits_run
    quiet = {"WANDB_MODE": "disabled"}
    new = run_ednaml(
        "predict",
        str(run),
        "--data",
        str(new_images),
        "--output",
        str(tmp_path / "new.csv"),
        "--DEPLOYMENT.DEPLOYMENT_ARGS.top_k",
        "3",
        cwd=cwd,
        env=quiet,
    )
    assert new.returncode == 0, new.stderr[-3000:]
    expected = split_predictions
    rows = list(csv.DictReader((tmp_path / "new.csv").open()))
    assert len(rows) == len(expected) == 359
    assert [r["input"] for r in rows] == [
        str(new_images / ("more" if i >= 300 else "") / f"{i:04d}.png") for i in range(359)
    ]
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in expected]  # the same model on the same pixels
    assert "target" not in rows[0] and "target" in expected[0]  # new data has no labels
    for row in rows:
        top = json.loads(row["top_k"])
        assert len(top) == 3 and top[0] == {"class": row["prediction"], "probability": float(row["confidence"])}
        assert top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
    manifest = json.loads((tmp_path / "new.manifest.json").read_text())
    checkpoint = Path(manifest["checkpoint"]["path"])
    assert (
        checkpoint.parent == (run / "checkpoints").resolve() and "best" in checkpoint.name
    )  # the run's best, by SAVE.MONITOR
    assert manifest["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert manifest["checkpoint"]["run_id"] == run.name
    assert manifest["data"] == {"path": str(new_images.resolve()), "split": None, "inputs": 359, "skipped": 0}
    assert manifest["records"] == 359 and manifest["columns"] == ["index", "input", "prediction", "confidence", "top_k"]
    assert Path(manifest["config"]).is_file()

    two = run_ednaml(
        "predict",
        str(run),
        "--data",
        str(new_images),
        "--output",
        str(tmp_path / "two.parquet"),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        cwd=cwd,
        env=quiet,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    table = pyarrow.parquet.read_table(tmp_path / "two.parquet").to_pylist()
    assert [r["index"] for r in table] == list(range(359))  # every input once, in input order
    assert [r["input"] for r in table] == [r["input"] for r in rows] and [r["prediction"] for r in table] == [
        r["prediction"] for r in rows
    ]

    before = (tmp_path / "new.csv").read_bytes()
    again = run_ednaml(
        "predict", str(run), "--data", str(new_images), "--output", str(tmp_path / "new.csv"), cwd=cwd, env=quiet
    )
    assert again.returncode == 2 and "never overwrite" in again.stderr and "Traceback" not in again.stderr
    assert (tmp_path / "new.csv").read_bytes() == before


def test_the_python_api_returns_the_records_of_new_data(digits_run, new_images, tmp_path, monkeypatch):
    from ednaml import EdnaML

    cwd, run = digits_run
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    records = EdnaML(ckpt_path=str(run / "checkpoints" / "last.ckpt")).predict(
        new_images / "more", output=tmp_path / "more.jsonl"
    )
    assert [r["index"] for r in records] == list(range(59)) and all(r["input"].endswith(".png") for r in records)
    assert records == [json.loads(line) for line in (tmp_path / "more.jsonl").read_text().splitlines()]
    assert {r["prediction"] for r in records} <= {str(d) for d in range(10)}


EXPORTED = """
import json, sys
import numpy as np
from PIL import Image
import torch

folder, images = sys.argv[1], sys.argv[2:]
described = json.load(open(f"{folder}/model.json"))
args = described["preprocessing"]
pixels = np.stack([np.asarray(Image.open(path), dtype=np.float32) / 255.0 for path in images])[:, None]
x = ((pixels - args["normalization_mean"]) / args["normalization_std"]).astype(np.float32)
if described["format"] == "torchscript":
    logits = torch.jit.load(f"{folder}/{described['file']}")(torch.from_numpy(x)).detach().numpy()
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(f"{folder}/{described['file']}")
    (logits,) = session.run(None, {described["inputs"][0]["name"]: x})
probabilities = torch.from_numpy(logits).softmax(-1)
classes = described["outputs"][0]["classes"]
print(json.dumps({"predictions": [classes[i] for i in probabilities.argmax(-1).tolist()],
                  "confidences": probabilities.max(-1).values.tolist(), "ednaml_imported": "ednaml" in sys.modules}))
"""


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_an_exported_model_runs_without_ednaml_and_gives_the_checkpoints_predictions(
    digits_run, new_images, split_predictions, tmp_path, kind
):
    import subprocess
    import sys

    cwd, run = digits_run
    result = run_ednaml("export", str(run), "--format", kind, "--output", str(tmp_path / kind), cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    described = json.loads((tmp_path / kind / "model.json").read_text())
    assert (
        described["outputs"][0]["classes"] == [str(d) for d in range(10)]
        and described["check"]["max_abs_difference"] < 1e-4
    )
    assert "best" in Path(described["checkpoint"]["path"]).name  # the run's best checkpoint, as predict takes it
    images = sorted(str(p) for p in new_images.rglob("*.png"))
    ran = subprocess.run(
        [sys.executable, "-c", EXPORTED, str(tmp_path / kind), *images], capture_output=True, text=True, cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    out = json.loads(ran.stdout)
    assert not out["ednaml_imported"]
    assert out["predictions"] == [row["prediction"] for row in split_predictions]  # all 359, in one batch
    assert out["confidences"] == pytest.approx([float(row["confidence"]) for row in split_predictions], abs=2e-6)
    again = run_ednaml("export", str(run), "--format", kind, "--output", str(tmp_path / kind), cwd=cwd)
    assert again.returncode == 2 and "never overwrites" in again.stderr and "Traceback" not in again.stderr


def test_a_config_with_plugins_trains_and_predicting_new_images_gives_their_outputs_on_one_or_two_processes(
    digits_run, new_images, tmp_path
):
    from ednaml.data.readers import DigitsCrawler

    quiet = {"WANDB_MODE": "disabled"}
    fit = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--config",
        str(CONFIGS.parent / "examples" / "plugins.yml"),
        cwd=tmp_path,
        env=quiet,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    last = run / "checkpoints" / "last.ckpt"  # saved after the plugins' warm-up (the last two epochs)
    ddp = ("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp")
    fresh = (
        "--MODEL_PLUGIN",
        "[{PLUGIN_NAME: fresh, PLUGIN: LogitConfidence}]",
    )  # attached now: it warms up on the new images
    for name, extra in (("one", ()), ("two", ddp), ("fresh-one", fresh), ("fresh-two", fresh + ddp)):
        model = (
            run if name == "one" else last
        )  # the run: its best checkpoint where that holds the plugins ready, else its last
        result = run_ednaml(
            "predict",
            str(model),
            "--trust",
            "--data",
            str(new_images),
            "--output",
            str(tmp_path / f"{name}.csv"),
            *extra,
            cwd=tmp_path,
            env=quiet,
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    from ednaml.checkpoints import plugin_state

    chosen = json.loads((tmp_path / "one.manifest.json").read_text())["checkpoint"]["path"]
    assert all(bool(v) for k, v in plugin_state(chosen).items() if k.endswith(".is_activated"))
    one = list(csv.DictReader((tmp_path / "one.csv").open()))
    assert list(one[0]) == [
        "index",
        "input",
        "prediction",
        "confidence",
        "kmeans/cluster",
        "kmeans/label",
        "kmeans/distance",
        "confidence/confidence",
        "confidence/threshold",
        "confidence/confident",
        "norm/norm",
        "norm/unusual",
    ]
    assert [r["input"] for r in one] == sorted(str(p) for p in new_images.rglob("*.png"))
    two = list(csv.DictReader((tmp_path / "two.csv").open()))
    assert [(r["input"], r["prediction"], r["kmeans/label"], r["kmeans/cluster"]) for r in two] == [
        (r["input"], r["prediction"], r["kmeans/label"], r["kmeans/cluster"]) for r in one
    ]
    config = yaml.safe_load((run / "config.yaml").read_text())
    truth = [
        str(labels[0])
        for _, labels in DigitsCrawler(**config["EXECUTION"]["DATAREADER"]["CRAWLER_ARGS"]).crawl().splits["test"]
    ]
    agreement = sum(r["kmeans/label"] == t for r, t in zip(one, truth)) / len(truth)
    print(f"KMeansProxy (30 clusters, cosine) label agreement with the true digits: {agreement:.3f}")
    assert agreement >= 0.9

    fresh_one = list(csv.DictReader((tmp_path / "fresh-one.csv").open()))
    fresh_two = list(csv.DictReader((tmp_path / "fresh-two.csv").open()))
    assert "kmeans/label" not in fresh_one[0] and "fresh/threshold" in fresh_one[0]
    # what each of the two processes saw, combined: the same thresholds as one process over all the images
    assert [float(r["fresh/threshold"]) for r in fresh_two] == pytest.approx(
        [float(r["fresh/threshold"]) for r in fresh_one], abs=1e-6
    )
    by_class: dict[str, list[float]] = {}
    for row in fresh_one:
        by_class.setdefault(row["prediction"], []).append(float(row["fresh/confidence"]))
    assert {r["prediction"]: float(r["fresh/threshold"]) for r in fresh_one} == pytest.approx(
        {c: sum(v) / len(v) for c, v in by_class.items()}, abs=1e-5
    )
