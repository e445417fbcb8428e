"""The docs cover every config key, and the examples run."""

from __future__ import annotations

import pytest
from helpers import CONFIGS, ROOT, run_ednaml, run_folders, summary

from ednaml.config.schema import LIGHTNING_KEYS, SCHEMA, ListOf, Section


def keys(section: Section, prefix: str = "") -> list[str]:
    out = []
    for name, sub in section.keys.items():
        out += keys(sub, f"{prefix}{name}.") if isinstance(sub, Section) else [f"{prefix}{name}"]
    return out


def test_the_config_reference_documents_every_section_and_key():
    text = (ROOT / "docs" / "config.md").read_text()
    for name, spec in SCHEMA.items():
        assert name in text, name
        section = spec.entry if isinstance(spec, ListOf) else spec
        for key in keys(section):
            assert f"`{key}`" in text, f"{name}: {key}"
    for key in LIGHTNING_KEYS:
        assert f"`{key}`" in text


@pytest.mark.e2e
def test_the_custom_component_example_trains(tmp_path):
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--config",
        str(ROOT / "examples" / "focal.yml"),
        "--EXECUTION.EPOCHS",
        "2",
        cwd=tmp_path,
        env={"WANDB_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    assert "train/digit/FocalLoss" in summary(run)["final"]


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    commands = [line for line in text.splitlines() if line.startswith("python3 -m venv")]
    assert commands[0].endswith("ednaml fit --config configs/digits.yml")
    assert commands[1].endswith("python -m pytest -q")
    assert "python -m pytest -q" in (ROOT / ".ci" / "run").read_text()
