"""Every config in configs/ learns: trained at its own settings, each of its outputs beats the majority-class
baseline by the margin its `# Learns:` line promises, and the figure that line quotes is what a run measures."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from helpers import EDNAML, run_folders

from bench import examples

EXAMPLES = examples.examples()


def test_every_example_states_what_it_learns_and_a_margin_worth_the_name():
    assert len(EXAMPLES) >= 10 and all(p.name != "digits-sweep.yml" for p in EXAMPLES)
    for config in EXAMPLES:
        assert examples.claimed_margin(config) >= examples.SMALLEST_MARGIN, config.name


def test_a_missing_or_unkept_promise_is_found(tmp_path):
    config = tmp_path / "c.yml"
    config.write_text("# An example.\nEXECUTION: {EPOCHS: 1}\n")
    with pytest.raises(ValueError, match="no `# Learns:` line"):
        examples.claimed_margin(config)
    line = examples.claim({"test/accuracy": (0.9, 0.1)}, 5.0)
    examples.write_claim(config, line)
    assert config.read_text().splitlines()[1] == line and examples.claimed_margin(config) == 0.4
    run = {"final": {"test/accuracy": 0.45}, "majority_baseline": {"test/accuracy": 0.1}}
    assert examples.shortfalls(config, run) == [
        "c.yml: test/accuracy 0.4500 is not 0.4 above the majority baseline 0.1000"
    ]


@pytest.mark.e2e
@pytest.mark.parametrize("config", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_example_beats_its_majority_baseline_by_its_stated_margin(config, tmp_path):
    done = subprocess.run(
        [str(EDNAML), *examples.arguments(config, tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = run_folders(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert examples.shortfalls(config, summary) == []
    quoted = dict(re.findall(r"(\S+) ([0-9.]+) against", examples.CLAIM.search(config.read_text())["results"]))
    measured = examples.results(summary)
    assert set(quoted) == set(measured)
    for key, (accuracy, _) in measured.items():  # the header is this run's figure, not a stale one
        assert accuracy == pytest.approx(float(quoted[key]), abs=0.05), key
