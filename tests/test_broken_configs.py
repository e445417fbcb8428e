"""The broken-config corpus: each case exits 2 with a message that names its key or file, never a traceback.

Each file in tests/broken_configs/ is merged over tests/broken_base.yml and checked with `ednaml check`;
its first line says what the message must contain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ednaml.cli import main

CORPUS = Path(__file__).parent / "broken_configs"
BASE = Path(__file__).parent / "broken_base.yml"
CASES = sorted(CORPUS.glob("*.yml"))


def expectation(path: Path) -> str:
    head = path.read_bytes()[:300]
    if b"\x00" in head:
        return "is a binary file"
    first = head.decode().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <part of the message>'"
    return first[len("# expect: ") :]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_a_broken_config_exits_2_with_a_message_naming_its_key_or_file(path, capfd, monkeypatch):
    monkeypatch.chdir(CORPUS)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    code = main(["check", "--config", str(BASE), "--config", path.name])
    err = capfd.readouterr().err
    assert code == 2, err
    assert expectation(path) in err, err
    assert "Traceback" not in err
    assert path.name in err or any(
        key in err
        for key in (
            "EXECUTION",
            "MODEL",
            "LOSS",
            "OPTIMIZER",
            "SCHEDULER",
            "SAVE",
            "TRANSFORMATION",
            "LOGGING",
            "trainer",
            "OPTIMISER",
            "trainr",
        )
    )


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_fit_stops_on_a_broken_config_as_check_does(path, capfd, monkeypatch, tmp_path):
    monkeypatch.chdir(CORPUS)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    code = main(
        [
            "fit",
            "--config",
            str(BASE),
            "--config",
            path.name,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=2",
            "--trainer.limit_test_batches=2",
        ]
    )
    err = capfd.readouterr().err
    assert code == 2, err
    assert expectation(path) in err, err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*/*/summary.json"))  # refused before a run folder is made
