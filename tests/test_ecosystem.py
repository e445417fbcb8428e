"""Models from timm and torchvision by name, data from torchvision datasets and Hugging Face `datasets`:
local files only, and real runs from configs/."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CONFIGS, run_ednaml, run_folders, summary

from bench.examples import digits_as_mnist
from ednaml.errors import DataError

SHORT = [
    "--EXECUTION.EPOCHS",
    "1",
    "--trainer.limit_train_batches",
    "4",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.limit_test_batches",
    "2",
]


def reviews(count: int = 300, seed: int = 0) -> dict[str, list]:
    words = {"pos": ["great", "wonderful", "superb", "lovely"], "neg": ["awful", "terrible", "dreadful", "poor"]}
    rng = np.random.default_rng(seed)
    labels = [str(rng.choice(["pos", "neg"])) for _ in range(count)]
    return {"text": [" ".join(rng.choice(words[y], 3)) + " film" for y in labels], "label": labels}


# ---- models ----


@pytest.mark.parametrize("base", ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "densenet121"])
def test_a_torchvision_model_by_name_gives_logits_and_features(base):
    from ednaml.models.backbones import TorchvisionModel

    model = TorchvisionModel(base, softmax_dimensions=7, initial_channels=1, embedding_dimensions=32)
    logits, features = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 7) and features.shape == (2, 32)


def test_a_timm_model_by_name_with_one_head_per_output():
    pytest.importorskip("timm", reason="the timm extra")
    from ednaml.models.backbones import TimmModel

    model = TimmModel(
        "resnet10t",
        outputs=[
            {"name": "digit", "label": "digit", "dimensions": 10},
            {"name": "parity", "label": "parity", "dimensions": 2},
        ],
        initial_channels=1,
    )
    out = model(torch.randn(3, 1, 16, 16))
    assert {name: logits.shape for name, (logits, _) in out.items()} == {"digit": (3, 10), "parity": (3, 2)}


def test_wrong_model_names_are_named_with_the_nearest():
    from ednaml.models.backbones import TimmModel, TorchvisionModel

    with pytest.raises(
        ValueError,
        match=r"MODEL.MODEL_BASE: 'resnet19' is not a torchvision classification model; did you mean 'resnet18'",
    ):
        TorchvisionModel("resnet19", softmax_dimensions=3)
    pytest.importorskip("timm", reason="the timm extra")
    with pytest.raises(ValueError, match=r"'convnext_atoo' is not a timm model; did you mean 'convnext_atto'"):
        TimmModel("convnext_atoo", softmax_dimensions=3)


def test_weights_come_from_a_local_file_or_the_hugging_face_cache_never_the_network(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm", reason="the timm extra")
    hub = pytest.importorskip("huggingface_hub")
    from ednaml.models.backbones import TimmModel, TorchvisionModel
    from ednaml.models.weights import load_weights

    donor = __import__("torchvision").models.resnet18(weights=None)  # a backbone state dict, as torchvision saves one
    torch.save(donor.state_dict(), tmp_path / "resnet18.pth")
    model = TorchvisionModel("resnet18", softmax_dimensions=4, weights=str(tmp_path / "resnet18.pth"))
    assert torch.equal(model.backbone.layer1[0].conv1.weight, donor.layer1[0].conv1.weight)
    fresh = TorchvisionModel("resnet18", softmax_dimensions=4)
    report = load_weights(fresh, str(tmp_path / "resnet18.pth"))  # MODEL.WEIGHTS: the same file fits the backbone
    assert "backbone.layer4.1.bn2.weight" in report["loaded"] and torch.equal(
        fresh.backbone.conv1.weight, donor.conv1.weight
    )
    with pytest.raises(ValueError, match="only 0 of this backbone.s .* weights are in"):
        TorchvisionModel("mobilenet_v3_small", softmax_dimensions=4, weights=str(tmp_path / "resnet18.pth"))

    cache = tmp_path / "hub"  # a Hugging Face cache holding timm's resnet10t weights, as a download leaves them
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(ValueError, match="not in the Hugging Face cache here.*a run never downloads"):
        TimmModel("resnet10t", softmax_dimensions=4, pretrained=True)
    repo = timm.models.get_pretrained_cfg("resnet10t").hf_hub_id
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (cache / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (cache / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("abc123")
    source = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    __import__("safetensors.torch").torch.save_file(source.state_dict(), str(snapshot / "model.safetensors"))
    model = TimmModel("resnet10t", softmax_dimensions=4, pretrained=True)
    assert torch.equal(model.backbone.conv1[0].weight, source.conv1[0].weight)


# ---- data ----


def test_a_torchvision_dataset_is_read_from_its_local_root(tmp_path):
    from ednaml.data.ecosystem import TorchvisionCrawler

    digits_as_mnist(tmp_path / "root")
    crawl = TorchvisionCrawler("MNIST", str(tmp_path / "root"), label_name="digit").crawl()
    assert {k: len(v) for k, v in crawl.splits.items()} == {"train": 1260, "val": 140, "test": 397}
    assert crawl.labels["digit"][3] == "3 - three" and crawl.splits["test"][0][0].shape == (28, 28)
    with pytest.raises(DataError, match=r"CRAWLER_ARGS.root: FashionMNIST is not under .*set download: true"):
        TorchvisionCrawler("FashionMNIST", str(tmp_path / "root")).crawl()
    with pytest.raises(DataError, match=r"'MINST' is not a torchvision dataset; did you mean 'MNIST'"):
        TorchvisionCrawler("MINST", str(tmp_path / "root")).crawl()


def test_a_hugging_face_dataset_is_read_from_parquet_csv_json_or_a_saved_folder(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the datasets extra")
    from ednaml.data.ecosystem import HFCrawler, HFImageCrawler

    table = datasets.Dataset.from_dict(reviews(200))
    table.to_parquet(tmp_path / "r.parquet")
    table.to_csv(tmp_path / "r.csv", index=False)
    table.to_json(tmp_path / "r.jsonl")
    table.class_encode_column("label").save_to_disk(str(tmp_path / "saved"))
    for path in ("r.parquet", "r.csv", "r.jsonl", "saved"):
        crawl = HFCrawler(str(tmp_path / path)).crawl()
        assert crawl.labels == {"label": ["neg", "pos"]}, path
        assert sum(len(v) for v in crawl.splits.values()) == 200 and isinstance(crawl.splits["train"][0][0], str)
    with pytest.raises(DataError, match=r"CRAWLER_ARGS.input_column: column 'body' is not in"):
        HFCrawler(str(tmp_path / "r.parquet"), input_column="body").crawl()
    with pytest.raises(DataError, match=r"CRAWLER_ARGS.path: .*missing.parquet' does not exist"):
        HFCrawler(str(tmp_path / "missing.parquet")).crawl()
    pictures = datasets.Dataset.from_dict(
        {"image": [np.full((8, 8), i * 20, dtype=np.uint8) for i in range(12)], "label": [i % 3 for i in range(12)]}
    ).cast_column("image", datasets.Image())
    pictures.to_parquet(tmp_path / "images.parquet")
    crawl = HFImageCrawler(str(tmp_path / "images.parquet"), val_fraction=0.0, test_fraction=0.25).crawl()
    image, (label,) = crawl.splits["train"][0]
    assert (
        image.shape == (8, 8) and crawl.labels == {"label": ["0", "1", "2"]} and (int(image[0, 0]) // 20) % 3 == label
    )


def test_streaming_leaves_the_rows_on_disk_and_finds_the_same_samples(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the datasets extra")
    import pickle

    from ednaml.data.base import Stored, loaded
    from ednaml.data.ecosystem import HFCrawler, HFImageCrawler

    table = datasets.Dataset.from_dict(reviews(200))
    table.to_parquet(tmp_path / "r.parquet")
    table.class_encode_column("label").save_to_disk(str(tmp_path / "saved"))
    for path in ("r.parquet", "saved"):
        memory = HFCrawler(str(tmp_path / path)).crawl()
        disk = HFCrawler(str(tmp_path / path), streaming=True, cache_dir=str(tmp_path / "cache")).crawl()
        assert disk.labels == memory.labels == {"label": ["neg", "pos"]}
        assert all(isinstance(x, Stored) for split in disk.splits.values() for x, _ in split)
        assert {s: [(loaded(x), y) for x, y in v] for s, v in disk.splits.items()} == memory.splits, path
        shipped = pickle.loads(pickle.dumps(disk.splits["test"]))  # as a spawned worker receives them
        assert [loaded(x) for x, _ in shipped] == [x for x, _ in memory.splits["test"]]
    assert list((tmp_path / "cache").iterdir())  # the parquet file's Arrow copy; the saved folder is read where it is
    pictures = datasets.Dataset.from_dict(
        {"image": [np.full((8, 8), i * 20, dtype=np.uint8) for i in range(12)], "label": [i % 3 for i in range(12)]}
    ).cast_column("image", datasets.Image())
    pictures.save_to_disk(str(tmp_path / "pictures"))
    memory = HFImageCrawler(str(tmp_path / "pictures"), val_fraction=0.0).crawl()
    disk = HFImageCrawler(str(tmp_path / "pictures"), val_fraction=0.0, streaming=True).crawl()
    for (a, y), (b, z) in zip(memory.splits["train"], disk.splits["train"]):
        assert np.array_equal(a, loaded(b)) and loaded(b).dtype == np.uint8 and y == z
    datasets.Dataset.from_dict({"text": ["a b", "c d"], "label": [["x"], ["x", "y"]]}).save_to_disk(
        str(tmp_path / "lists")
    )
    with pytest.raises(
        DataError, match=r"CRAWLER_ARGS.label_columns: column 'label' holds list<item: string> values: a label"
    ):
        HFCrawler(str(tmp_path / "lists"), streaming=True).crawl()
    with pytest.raises(
        DataError, match=r"CRAWLER_ARGS.cache_dir: '.*r.parquet' is a file: give a folder for the Arrow copy"
    ):
        HFCrawler(str(tmp_path / "r.parquet"), streaming=True, cache_dir=str(tmp_path / "r.parquet")).crawl()
    with pytest.raises(DataError, match=r"CRAWLER_ARGS.cache_dir: is used only with streaming: true"):
        HFCrawler(str(tmp_path / "r.parquet"), cache_dir=str(tmp_path / "cache"))
    paths = datasets.Dataset.from_dict({"image": [{"path": "/etc/hostname", "bytes": None}], "label": [0]})
    paths.save_to_disk(str(tmp_path / "paths"))
    damaged = datasets.Dataset.from_dict({"image": [{"path": None, "bytes": b"GIF89a, then nothing"}], "label": [0]})
    damaged.save_to_disk(str(tmp_path / "damaged"))
    for streaming in (False, True):  # found at the crawl either way, never as a traceback from a worker
        with pytest.raises(
            DataError, match=r"CRAWLER_ARGS.input_column: row 0: images stored as file paths are not read"
        ):
            HFImageCrawler(str(tmp_path / "paths"), streaming=streaming, val_fraction=0.0, test_fraction=0.0).crawl()
        with pytest.raises(
            DataError, match=r"CRAWLER_ARGS.input_column: row 0: an image cannot be read: cannot identify"
        ):
            HFImageCrawler(str(tmp_path / "damaged"), streaming=streaming, val_fraction=0.0, test_fraction=0.0).crawl()


# ---- runs from configs/ ----


@pytest.mark.e2e
@pytest.mark.parametrize("config", ["digits-timm.yml", "digits-torchvision.yml"])
def test_a_timm_and_a_torchvision_model_train_on_digits(config, tmp_path):
    if config == "digits-timm.yml":
        pytest.importorskip("timm", reason="the timm extra")
    result = run_ednaml("fit", "--config", str(CONFIGS / config), *SHORT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    record = summary(run)
    assert record["status"] == "finished" and 0.0 <= record["final"]["test/accuracy"] <= 1.0
    components = json.loads((run / "provenance.json").read_text())["components"]
    assert (
        components["MODEL.MODEL_ARCH"]["class"]
        == f"ednaml.models.backbones.{'TimmModel' if 'timm' in config else 'TorchvisionModel'}"
    )


@pytest.mark.e2e
def test_hugging_face_and_torchvision_datasets_train_from_local_files_writing_nothing_home(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the datasets extra")
    datasets.Dataset.from_dict(reviews(300)).to_parquet(tmp_path / "reviews.parquet")
    digits_as_mnist(tmp_path / "mnist")
    home = tmp_path / "home"
    home.mkdir()
    caches = home / ".cache"  # where Hugging Face and torch would cache: under this home, so the check sees them
    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(caches),
        "HF_HOME": str(caches / "huggingface"),
        "HF_DATASETS_CACHE": str(caches / "huggingface" / "datasets"),
        "TORCH_HOME": str(caches / "torch"),
    }
    runs = []
    for config, override in (
        ("hf-text-parquet.yml", ["--EXECUTION.DATAREADER.CRAWLER_ARGS.path", str(tmp_path / "reviews.parquet")]),
        ("mnist-torchvision.yml", ["--EXECUTION.DATAREADER.CRAWLER_ARGS.root", str(tmp_path / "mnist")]),
    ):
        result = run_ednaml("fit", "--config", str(CONFIGS / config), *override, *SHORT, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        (run,) = [r for r in run_folders(tmp_path / "runs") if r not in runs]
        runs.append(run)
        assert summary(run)["status"] == "finished"
    assert [p for p in home.rglob("*")] == []  # no dataset cache, no downloads
    data = json.loads((runs[0] / "provenance.json").read_text())["data"]
    assert str(tmp_path / "reviews.parquet") in json.dumps(data)


def peak_memory_of_ednaml(args: list[str], cwd: Path) -> tuple[int, int]:
    """`ednaml ARGS...` run to its end: its exit status and its own peak resident memory in bytes."""
    import os

    from helpers import EDNAML

    from bench.peak import wait_for_peak

    with open(cwd / "out.txt", "w") as out, open(cwd / "err.txt", "w") as err:
        process = subprocess.Popen(
            [str(EDNAML), *args], cwd=cwd, stdout=out, stderr=err, env={**os.environ, "WANDB_MODE": "offline"}
        )
        return wait_for_peak(process)


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="a process's peak memory is read from /proc (Linux)")
def test_a_streamed_dataset_trains_the_same_without_being_held_in_memory(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the datasets extra")
    from ednaml.data.text import train_tokenizer

    rows = reviews(5000)
    padding = " ".join(["plot"] * 4000)  # 20 KB a row: 100 MB of text
    rows["text"] = [f"{text} {padding}" for text in rows["text"]]
    datasets.Dataset.from_dict(rows).to_parquet(tmp_path / "big.parquet", batch_size=250)  # row groups of 5 MB
    held = sum(len(text) for text in rows["text"])
    del rows
    train_tokenizer(reviews(300)["text"] + [padding[:200]], "wordpiece", 200, True).save(
        str(tmp_path / "tokenizer.json")
    )
    args = [
        "fit",
        "--config",
        str(CONFIGS / "hf-text-parquet.yml"),
        "--EXECUTION.DATAREADER.CRAWLER_ARGS.path",
        "big.parquet",
        "--TRANSFORMATION.ARGS.tokenizer_file",
        "tokenizer.json",
        *SHORT,
    ]
    peaks, results = {}, {}
    for mode, extra in (
        ("memory", []),
        (
            "streaming",
            [
                "--EXECUTION.DATAREADER.CRAWLER_ARGS.streaming",
                "true",
                "--EXECUTION.DATAREADER.CRAWLER_ARGS.cache_dir",
                "hf-cache",
            ],
        ),
    ):
        before = set(run_folders(tmp_path / "runs")) if (tmp_path / "runs").exists() else set()
        status, peaks[mode] = peak_memory_of_ednaml(args + extra, tmp_path)
        assert status == 0, (tmp_path / "err.txt").read_text()[-3000:]
        (run,) = set(run_folders(tmp_path / "runs")) - before
        results[mode] = (json.loads((run / "provenance.json").read_text())["data"]["samples"], summary(run)["final"])
    assert results["streaming"][0] == results["memory"][0] == {"train": 3600, "val": 400, "test": 1000}
    assert results["streaming"][1]["test/loss"] == pytest.approx(results["memory"][1]["test/loss"], rel=1e-5)
    # in memory the rows are held (as Arrow and as Python strings); streamed, only a row group at a time
    assert peaks["memory"] - peaks["streaming"] > held, (peaks, held)
