"""Hostile inputs: an image, config, manifest or run folder made to hurt ends with exit 2 and a message
naming the file or key, never a traceback, a hang or a terminal taken over."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from helpers import CONFIGS

from ednaml.cli import main

DIGITS = str(CONFIGS / "digits.yml")


def ednaml(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """`ednaml ARGS...` in this process: its exit code and everything it printed."""
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


def image_folder(root: Path, suffix: str = ".png") -> None:
    from PIL import Image

    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            Image.effect_noise((32, 32), 40 + 10 * i).convert("RGB").save(root / label / f"{i}{suffix}")


def image_reader(folder: Path) -> list[str]:
    return [
        "--EXECUTION.DATAREADER.DATAREADER",
        "ImageFolder",
        "--EXECUTION.DATAREADER.CRAWLER_ARGS",
        f"{{data_folder: {folder}, label_name: digit, val_fraction: 0}}",
    ]


def png_header(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header says width x height."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


# ---- images, configs and manifests ----


@pytest.mark.parametrize("command", ["check", "fit"])
def test_a_decompression_bomb_png_is_named_as_a_bad_image(workdir, capsys, command):
    image_folder(workdir / "images")
    bomb = workdir / "images" / "a" / "bomb.png"
    bomb.write_bytes(png_header(30_000, 30_000))
    code, output = ednaml(
        capsys, command, "--config", DIGITS, *image_reader(workdir / "images"), "--EXECUTION.EPOCHS", "1"
    )
    assert code == 2, output
    assert (
        "EXECUTION.DATAREADER.CRAWLER_ARGS.data_folder: 1 of 9 images cannot be used: "
        f"{bomb} (its header claims more than" in output
    )
    assert not (workdir / "runs").exists()


def test_a_config_nested_700_levels_deep_is_refused_naming_the_file(workdir, capsys):
    (workdir / "deep.yml").write_text("EXECUTION:\n  EPOCHS: 1\nDEEP: " + "[" * 700 + "]" * 700 + "\n")
    code, output = ednaml(capsys, "check", "--config", "deep.yml")
    assert code == 2 and "'deep.yml': it nests more than 100 levels deep" in output, output


def test_aliases_that_nest_a_config_deeper_than_the_stack_are_refused():
    from ednaml.config.values import TooLarge, parse_yaml

    lines = ["a0: &a0 " + "[" * 60 + "]" * 60] + [
        f"a{i}: &a{i} " + "[" * 60 + f"*a{i - 1}" + "]" * 60 for i in range(1, 20)
    ]
    with pytest.raises(TooLarge, match="its aliases nest 1,201 levels deep; a config nests at most 100"):
        parse_yaml("\n".join(lines))


def test_a_manifest_that_is_not_utf8_is_named_at_its_key(workdir, capsys):
    image_folder(workdir / "images")
    rows = [f"images/{label}/{i}.png,{label}" for label in ("a", "b") for i in range(4)]
    (workdir / "latin1.csv").write_bytes(
        ("path,digit\n" + "\n".join(rows) + "\nimages/a/0.png,café\n").encode("latin-1")
    )
    code, output = ednaml(
        capsys,
        "check",
        "--config",
        DIGITS,
        "--EXECUTION.DATAREADER.DATAREADER",
        "CSVManifest",
        "--EXECUTION.DATAREADER.CRAWLER_ARGS",
        f"{{manifest: {workdir / 'latin1.csv'}, label_columns: [digit]}}",
    )
    assert code == 2, output
    assert f"EXECUTION.DATAREADER.CRAWLER_ARGS.manifest: '{workdir / 'latin1.csv'}' is not UTF-8 text" in output


def _truncated_jpeg(workdir: Path) -> Path:
    from PIL import Image

    image_folder(workdir / "images", ".jpg")
    damaged = workdir / "images" / "a" / "1.jpg"
    Image.effect_noise((64, 64), 60).convert("RGB").save(damaged, quality=90)
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])  # its header reads (the crawl accepts it), its pixels do not
    return damaged


def test_check_stops_at_a_truncated_image_naming_it(workdir, capsys):
    damaged = _truncated_jpeg(workdir)
    code, output = ednaml(capsys, "check", "--config", DIGITS, *image_reader(workdir / "images"))
    assert code == 2, output
    assert (
        f"EXECUTION.DATAREADER: image '{damaged}' cannot be read" in output and "BAD_SAMPLES: skip would drop" in output
    )
    assert "WithBadSamples" not in output


def test_check_skips_a_truncated_image_under_bad_samples_skip_as_fit_does(workdir, capsys):
    _truncated_jpeg(workdir)
    code, output = ednaml(
        capsys,
        "check",
        "--config",
        DIGITS,
        *image_reader(workdir / "images"),
        "--EXECUTION.DATAREADER.BAD_SAMPLES",
        "skip",
    )
    assert code == 0, output
    assert "1 sample(s) of it failed to load and were skipped (EXECUTION.DATAREADER.BAD_SAMPLES: skip)" in output
    assert "ready to train" in output


# ---- run folders ----


def run_folder(root: Path, run_id: str = "20250101-000000-abcdef", config: str | None = None, **summary) -> Path:
    """A run folder as `ednaml fit` leaves one (config.yaml, summary.json, checkpoints/last.ckpt), nothing trained."""
    path = root / "runs" / "digits-v1-smallcnn-all" / run_id
    (path / "checkpoints").mkdir(parents=True)
    (path / "checkpoints" / "last.ckpt").write_bytes(b"")
    (path / "config.yaml").write_text(config if config is not None else Path(DIGITS).read_text())
    (path / "summary.json").write_text(
        json.dumps(
            {"run_id": run_id, "status": "interrupted", "stage": "fit", "started": "2025-01-01T00:00:00", **summary}
        )
    )
    return path


ALIAS_BOMB = (
    "\n".join(
        ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    )
    + "\n"
)


@pytest.mark.parametrize(
    "command", [["runs"], ["diff", "RUN", "RUN"], ["fit", "--resume", "RUN"], ["reproduce", "RUN"]]
)
def test_an_alias_bomb_config_in_a_run_folder_is_refused_naming_it(workdir, capsys, command):
    run = run_folder(workdir, config=ALIAS_BOMB)
    code, output = ednaml(capsys, *[run.name if word == "RUN" else word for word in command])
    assert code == 2, output
    assert f"'runs/digits-v1-smallcnn-all/{run.name}/config.yaml': its aliases expand to" in output, output


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="/dev/zero is Unix's")
@pytest.mark.parametrize("command", [["runs"], ["diff", "RUN", "RUN"]])
def test_a_summary_linked_to_dev_zero_is_refused_not_read(workdir, capsys, command):
    run = run_folder(workdir)
    (run / "summary.json").unlink()
    (run / "summary.json").symlink_to("/dev/zero")
    code, output = ednaml(capsys, *[str(run) if word == "RUN" else word for word in command])
    assert code == 2 and f"{run.name}/summary.json' is not a regular file" in output, output


def test_a_summary_over_the_size_cap_is_refused_naming_it(workdir, capsys):
    run = run_folder(workdir)
    os.truncate(run / "summary.json", 200_000_000)  # sparse: no disk is spent
    code, output = ednaml(capsys, "runs")
    assert code == 2 and f"{run.name}/summary.json' is over 100,000,000 bytes" in output, output


def test_escape_sequences_in_run_names_config_values_and_wandb_names_are_printed_escaped(workdir, capsys):
    config = Path(DIGITS).read_text().replace("MODEL_BACKBONE: smallcnn", 'MODEL_BACKBONE: "smallcnn\\e[2J"')
    plain = run_folder(workdir)
    evil = run_folder(
        workdir, "run\x1b[2J", config=config, wandb={"project": "p", "group": "g", "name": "note\x1b]0;pwned\x07\u202e"}
    )
    code, listed = ednaml(capsys, "runs")
    assert code == 0 and "run\\x1b[2J" in listed and "note\\x1b]0;pwned\\x07\\u202e" in listed, listed
    code, compared = ednaml(capsys, "diff", str(plain), str(evil))
    assert code == 0 and "SAVE.MODEL_BACKBONE: smallcnn -> smallcnn\\x1b[2J" in compared, compared
    assert not any(c in listed + compared for c in "\x1b\x07\u202e")
