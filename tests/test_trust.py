"""Trust boundaries: a checkpoint or run folder from elsewhere is data, names cannot leave the runs root,
and secrets given any way are recorded nowhere."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import CONFIGS, ROOT, run_ednaml, run_folders, summary

from ednaml.config import resolve

pytestmark = pytest.mark.e2e
EXAMPLES = ROOT / "examples"


def _evil_checkpoint(path, **changes) -> None:
    config = resolve([CONFIGS / "digits.yml"])
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        config[section][key] = value
    torch.save({"state_dict": {}, "ednaml": {"config": config, "labels": {"digit": [str(i) for i in range(10)]}}}, path)


def test_a_checkpoint_cannot_run_code_through_its_config(tmp_path):
    marker = tmp_path / "pwned"
    _evil_checkpoint(
        tmp_path / "dotted.ckpt",
        **{"MODEL.MODEL_ARCH": "subprocess.getoutput", "MODEL.MODEL_KWARGS": {"cmd": f"touch {marker}"}},
    )
    (tmp_path / "payload.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    _evil_checkpoint(tmp_path / "imports.ckpt", **{"EXECUTION.IMPORTS": [str(tmp_path / "payload.py")]})
    dotted = run_ednaml("test", "--ckpt_path", "dotted.ckpt", cwd=tmp_path)
    assert dotted.returncode == 2 and "Traceback" not in dotted.stderr, dotted.stderr[-2000:]
    assert (
        "MODEL.MODEL_ARCH: 'subprocess.getoutput' is a dotted import path in a config from a checkpoint"
        in dotted.stderr
    )
    trusted = run_ednaml("test", "--ckpt_path", "dotted.ckpt", "--trust", cwd=tmp_path)
    assert (
        trusted.returncode == 2
        and "'subprocess.getoutput' is not a model: a dotted path must name a subclass of torch.nn" in trusted.stderr
    )
    imports = run_ednaml("test", "--ckpt_path", "imports.ckpt", cwd=tmp_path)
    assert imports.returncode == 2 and "EXECUTION.IMPORTS" in imports.stderr and "--trust" in imports.stderr, (
        imports.stderr[-2000:]
    )
    assert not marker.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs-escape", "x" * 235, "two words"])
def test_a_name_that_would_leave_the_runs_root_stops_before_anything_is_written(tmp_path, name):
    work = tmp_path / "work"
    work.mkdir()
    for command in ("check", "fit"):
        result = run_ednaml(command, "--config", str(CONFIGS / "digits.yml"), "--SAVE.MODEL_CORE_NAME", name, cwd=work)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert "SAVE.MODEL_CORE_NAME:" in result.stderr and "is not a safe name" in result.stderr
    assert list(tmp_path.rglob("*")) == [work]  # nothing written anywhere


def test_secrets_given_three_ways_are_in_no_file_and_the_config_keeps_its_keys(tmp_path):
    secrets = {"env": "envsecret-7f3a9c1d", "flag": "flagsecret-2b8e4d6f", "url": "urlpass-9c1d7f3a"}
    env = {"WANDB_MODE": "offline", "SERVICE_TOKEN": secrets["env"], "MY_SERVICE_TOKEN": "test"}  # short: never masked
    (tmp_path / "service.yml").write_text("SERVICE:\n  api_token: null\n")  # a custom section, set in a file
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--config",
        "service.yml",
        "--EXECUTION.EPOCHS",
        "1",
        "--SERVICE.api_token",
        secrets["flag"],
        "--SERVICE.note",
        secrets["env"],
        "--SERVICE.endpoint",
        f"https://user:{secrets['url']}@example.com/data",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = run_folders(tmp_path / "runs")
    for path in [p for p in run.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        for how, secret in secrets.items():
            assert secret.encode() not in data, (how, path)
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["EXECUTION"]["DATAREADER"]["CRAWLER_ARGS"]["test_fraction"] == 0.2  # keys as written
    assert recorded["SERVICE"] == {"api_token": "***", "note": "***", "endpoint": "https://***@example.com/data"}
    again = run_ednaml("reproduce", run.name, cwd=tmp_path, env=env)  # the recorded config still runs
    assert again.returncode == 0, again.stderr[-2000:]


# ---- oversized input ----


def test_an_alias_bomb_and_an_oversized_config_are_refused_quickly(tmp_path):
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yml").write_text("\n".join(bomb) + "\n")
    (tmp_path / "huge.yml").write_text("EXECUTION:\n  EPOCHS: 1\n" + "# padding\n" * 200_000)
    for name, expected in (("bomb.yml", "its aliases expand to"), ("huge.yml", "a config is at most 1,000,000")):
        result = run_ednaml("check", "--config", name, cwd=tmp_path, timeout=60)
        assert result.returncode == 2 and expected in result.stderr and name in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr


# ---- run folder integrity ----


def one_epoch_run(cwd):
    """The run folder of a one-epoch digits fit in `cwd`."""
    trained = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--EXECUTION.EPOCHS",
        "1",
        cwd=cwd,
        env={"WANDB_MODE": "disabled"},
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = run_folders(cwd / "runs")
    return run


def test_a_checkpoint_with_flipped_bytes_and_a_bad_weights_file_are_named(tmp_path):
    from ednaml.checkpoints import read_checkpoint

    run = one_epoch_run(tmp_path)
    data = bytearray((run / "checkpoints" / "last.ckpt").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    (tmp_path / "flipped.ckpt").write_bytes(bytes(data))
    with pytest.raises(Exception, match="is corrupted .* fails its checksum"):
        read_checkpoint(tmp_path / "flipped.ckpt")
    tested = run_ednaml("test", "--ckpt_path", "flipped.ckpt", cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert tested.returncode == 2 and "fails its checksum" in tested.stderr and "Traceback" not in tested.stderr
    (tmp_path / "weights.pt").write_bytes(b"\x80\x04not a pickle at all")
    for command in ("check", "fit"):
        bad = run_ednaml(
            command,
            "--config",
            str(CONFIGS / "digits.yml"),
            "--MODEL.WEIGHTS",
            "weights.pt",
            cwd=tmp_path,
            env={"WANDB_MODE": "disabled"},
        )
        assert (
            bad.returncode == 2
            and f"MODEL.WEIGHTS: '{tmp_path / 'weights.pt'}' is not a readable weights file" in bad.stderr
        ), bad.stderr[-2000:]
        assert "Traceback" not in bad.stderr


def test_a_finished_run_is_not_resumed_a_busy_one_is_refused_and_a_dead_one_is_shown(tmp_path):
    import fcntl

    from ednaml.tracking.run_folder import LOCK_FILE

    run = one_epoch_run(tmp_path)
    finished = run_ednaml("fit", "--resume", run.name, cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert finished.returncode == 2 and "the run finished" in finished.stderr
    summary_path = run / "summary.json"
    summary_path.write_text(summary_path.read_text().replace('"finished"', '"interrupted"'))
    with (run / LOCK_FILE).open("a") as handle:  # another process is running this run
        fcntl.flock(handle, fcntl.LOCK_EX)
        busy = run_ednaml("fit", "--resume", run.name, cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert busy.returncode == 2 and "is running in another process" in busy.stderr, busy.stderr[-2000:]
    summary_path.write_text(summary_path.read_text().replace('"interrupted"', '"running"'))  # killed with no word
    listed = run_ednaml("runs", cwd=tmp_path)
    assert f"{run.name}  " in listed.stdout and " dead " in listed.stdout, listed.stdout


# ---- bad data is found when it is crawled; a full disk is said plainly ----


def _image_folder(root) -> None:
    from PIL import Image

    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (8, 8), color=40 * i).save(root / label / f"{i}.png")


def test_a_corrupt_and_an_empty_image_are_reported_by_check_and_fit_with_their_paths(tmp_path):
    _image_folder(tmp_path / "images")
    (tmp_path / "images" / "a" / "0.png").write_bytes(b"")
    (tmp_path / "images" / "b" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage, not an image")
    overrides = [
        "--EXECUTION.DATAREADER.DATAREADER",
        "ImageFolder",
        "--EXECUTION.DATAREADER.CRAWLER_ARGS",
        f"{{data_folder: {tmp_path / 'images'}}}",
        "--EXECUTION.EPOCHS",
        "1",
    ]
    for command in ("check", "fit"):
        result = run_ednaml(
            command, "--config", str(CONFIGS / "digits.yml"), *overrides, cwd=tmp_path, env={"WANDB_MODE": "disabled"}
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert "EXECUTION.DATAREADER.CRAWLER_ARGS.data_folder: 2 of 12 images cannot be used" in result.stderr
        assert f"{tmp_path / 'images' / 'a' / '0.png'} (empty)" in result.stderr
        assert f"{tmp_path / 'images' / 'b' / '1.png'} (not a readable image)" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_sample_that_fails_mid_run_stops_the_run_by_default_or_is_skipped_and_counted(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for label in ("a", "b"):
            (tmp_path / "images" / split / label).mkdir(parents=True)
            for i in range(8):
                Image.new("L", (32, 32), color=20 * i + 60 * (label == "b")).save(
                    tmp_path / "images" / split / label / f"{i}.png"
                )
    damaged = [tmp_path / "images" / "train" / "b" / "3.png", tmp_path / "images" / "test" / "a" / "5.png"]
    for path in damaged:  # the header reads (the crawl accepts it), the pixels do not
        path.write_bytes(path.read_bytes()[:60])
    data = [
        "--EXECUTION.DATAREADER.DATAREADER",
        "ImageFolder",
        "--EXECUTION.DATAREADER.CRAWLER_ARGS",
        f"{{data_folder: {tmp_path / 'images'}, label_name: digit}}",
        "--EXECUTION.EPOCHS",
        "2",
        "--TRANSFORMATION.BATCH_SIZE",
        "4",
        "--TRANSFORMATION.WORKERS",
        "2",
        "--trainer.enable_progress_bar",
        "false",
    ]
    stopped = run_ednaml(
        "fit", "--config", str(CONFIGS / "digits.yml"), *data, cwd=tmp_path, env={"WANDB_MODE": "disabled"}
    )
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr, stopped.stderr[-2000:]
    assert f"image '{damaged[0]}' cannot be read" in stopped.stderr and "BAD_SAMPLES: skip would drop" in stopped.stderr
    (failed,) = run_folders(tmp_path / "runs")
    assert summary(failed)["status"] == "failed"

    skip = [*data, "--EXECUTION.DATAREADER.BAD_SAMPLES", "skip"]
    trained = run_ednaml(
        "fit", "--config", str(CONFIGS / "digits.yml"), *skip, cwd=tmp_path, env={"WANDB_MODE": "disabled"}
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = [r for r in run_folders(tmp_path / "runs") if r != failed]
    skipped = summary(run)["skipped_samples"]
    assert (
        skipped["samples"] == 2 and skipped["times"] == 3
    )  # the training image in each of 2 epochs, the test image once
    assert all(any(str(path) in line for line in skipped["first"]) for path in damaged)
    assert "2 sample(s) failed to load and were skipped (EXECUTION.DATAREADER.BAD_SAMPLES: skip)" in trained.stderr
    assert "2 sample(s) failed to load and were skipped 3 time(s)" in (run / "log.txt").read_text()
    assert summary(run)["final"]["test/accuracy"] is not None

    predicted = run_ednaml(
        "predict",
        "--ckpt_path",
        str(run / "checkpoints" / "last.ckpt"),
        "--EXECUTION.DATAREADER.BAD_SAMPLES",
        "skip",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (prediction,) = [r for r in run_folders(tmp_path / "runs") if summary(r)["stage"] == "predict"]
    rows = list(csv.DictReader((prediction / "predictions.csv").open()))
    assert [int(row["index"]) for row in rows] == [
        i for i in range(16) if i != 5
    ]  # test/a/5.png is the sixth test sample
    assert [row["target"] for row in rows] == ["a"] * 7 + ["b"] * 8


def test_a_manifest_with_a_missing_file_and_a_blank_label_is_reported(tmp_path):
    from ednaml.data.readers import CSVManifestCrawler
    from ednaml.errors import DataError

    _image_folder(tmp_path / "images")
    rows = [f"images/{label}/{i}.png,{label}" for label in ("a", "b") for i in range(6)]
    (tmp_path / "blank.csv").write_text("path,label\n" + "\n".join(rows[:-1] + ["images/b/5.png,"]) + "\n")
    with pytest.raises(DataError, match=r"label_columns: 1 blank label cells in .*line 13 \(label\)"):
        CSVManifestCrawler(str(tmp_path / "blank.csv")).crawl()
    (tmp_path / "missing.csv").write_text("path,label\n" + "\n".join(rows + ["images/a/404.png,a"]) + "\n")
    with pytest.raises(DataError, match=r"manifest: 1 of 13 images cannot be used: .*404\.png \(missing\)"):
        CSVManifestCrawler(str(tmp_path / "missing.csv")).crawl()


@pytest.mark.parametrize("command", ["check", "fit"])
def test_every_problem_of_a_manifest_is_reported_at_once_by_check_and_fit(tmp_path, command):
    _image_folder(tmp_path / "images")
    rows = [f"images/{label}/{i}.png,{label},{'test' if i == 0 else 'train'}" for label in ("a", "b") for i in range(6)]
    rows[3] = "images/a/3.png,,train"  # a blank label
    rows[7] = "images/b/1.png,b,training"  # not a split
    rows[9] = "images/b/404.png,b,train"  # no such image
    (tmp_path / "manifest.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    data = [
        "--EXECUTION.DATAREADER.DATAREADER",
        "CSVManifest",
        "--EXECUTION.DATAREADER.CRAWLER_ARGS",
        '{"manifest": "manifest.csv", "label_columns": ["label", "colour"], "split_column": "split"}',
        "--MODEL.MODEL_KWARGS",
        "{}",
    ]
    result = run_ednaml(
        command, "--config", str(CONFIGS / "digits.yml"), *data, cwd=tmp_path, env={"WANDB_MODE": "disabled"}
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    manifest = tmp_path / "manifest.csv"  # given on the command line: the working directory's
    for found in (
        f"CRAWLER_ARGS.label_columns: column 'colour' is not in '{manifest}'",
        f"CRAWLER_ARGS.label_columns: 1 blank label cells in '{manifest}': line 5 (label)",
        "CRAWLER_ARGS.split_column: 1 values of column 'split' are not train, val or test: line 9 ('training')",
        "CRAWLER_ARGS.manifest: 1 of 12 images cannot be used:",
    ):
        assert found in result.stderr, result.stderr[-2000:]
    assert ("4 config errors" if command == "check" else "4 data errors") in result.stderr  # said together, as four
    assert not (tmp_path / "runs").exists()  # before any run folder


def test_every_missing_text_file_and_column_is_reported_at_once(tmp_path):
    from ednaml.data.text import TextFilesCrawler
    from ednaml.errors import DataError

    (tmp_path / "train.csv").write_text("sentence,label\nhello,a\nworld,b\n")
    with pytest.raises(DataError) as raised:
        TextFilesCrawler(
            str(tmp_path / "train.csv"), val_file=str(tmp_path / "val.csv"), label_columns=["label", "topic"]
        ).crawl()
    assert [key.rsplit(".", 1)[1] for key, _ in raised.value.problems] == ["val_file", "text_column", "label_columns"]
    assert str(raised.value).startswith("3 data errors:\n  1. EXECUTION.DATAREADER.CRAWLER_ARGS.val_file: file ")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="/dev/full (a device that is always full) is Linux's")
def test_a_full_disk_during_a_checkpoint_save_is_said_plainly_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    from ednaml.adapters import trainer
    from ednaml.adapters.trainer import AtomicCheckpointIO
    from ednaml.faults import explain
    from ednaml.tracking.run_folder import open_no_link

    target, io = tmp_path / "last.ckpt", AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, target)
    good = target.read_bytes()

    def full_disk(path: Path, mode: str, **kwargs):  # the next save's temporary file is made, on a full disk
        open_no_link(path, mode, **kwargs).close()
        return open("/dev/full", mode, **kwargs)

    monkeypatch.setattr(trainer, "open_no_link", full_disk)
    with pytest.raises(
        BaseException
    ) as caught:  # torch reports it as a RuntimeError around the OSError, or the reverse
        io.save_checkpoint({"step": 2, "weights": torch.zeros(100_000)}, target)
    assert (
        explain(caught.value)
        == "no space left on the device writing the run folder; the last complete checkpoint is kept"
    )
    assert target.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_run_s_own_import_is_taken_from_the_file_the_user_names_with_the_content_the_run_recorded(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(EXAMPLES / "custom_component.py", work)
    shutil.copy(EXAMPLES / "focal.yml", work)
    trained = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--config",
        "focal.yml",
        "--EXECUTION.EPOCHS",
        "1",
        "--trainer.limit_train_batches",
        "3",
        cwd=work,
        env={"WANDB_MODE": "disabled"},
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = run_folders(work / "runs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = shutil.copy(work / "custom_component.py", elsewhere / "custom_component.py")
    refused = run_ednaml("export", str(run), "--format", "torchscript", cwd=elsewhere, env={"WANDB_MODE": "disabled"})
    assert refused.returncode == 2 and "EXECUTION.IMPORTS" in refused.stderr and "--import" in refused.stderr, (
        refused.stderr[-2000:]
    )
    exported = run_ednaml(
        "export", str(run), "--format", "torchscript", "--import", copy, cwd=elsewhere, env={"WANDB_MODE": "disabled"}
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    (elsewhere / "custom_component.py").write_text(
        (elsewhere / "custom_component.py").read_text() + "\nprint('changed')\n"
    )
    changed = run_ednaml("predict", str(run), "--import", copy, cwd=elsewhere, env={"WANDB_MODE": "disabled"})
    assert changed.returncode == 2 and "--import custom_component.py: its content" in changed.stderr, changed.stderr[
        -2000:
    ]
    assert "changed" not in changed.stdout  # the changed file did not run
