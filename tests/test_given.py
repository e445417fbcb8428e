"""Components handed in from Python (EdnaML.add_model / add_crawler / add_loss): used, and recorded."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import CONFIGS, run_ednaml, run_folders
from torch import nn

from ednaml import EdnaML
from ednaml.config import ConfigError
from ednaml.data.readers import DigitsCrawler

pytestmark = pytest.mark.e2e


class FewDigits(DigitsCrawler):
    """The digits, with only the first 300 training images."""

    def find(self):
        found = super().find()
        found.splits["train"] = found.splits["train"][:300]
        return found


class Flat(nn.Module):
    """A linear model over the 64 pixels."""

    feature_dimensions = 64

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        features = x.flatten(1)
        return self.head(features), features


def test_a_given_model_crawler_and_loss_are_used_and_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    experiment = EdnaML(CONFIGS / "digits.yml", overrides={"EXECUTION.EPOCHS": 4, "OPTIMIZER.0.BASE_LR": 0.05})
    with pytest.raises(ConfigError, match="'digits' is not a LOSS entry NAME; they are \\['digit'\\]"):
        experiment.add_loss("digits", nn.CrossEntropyLoss())
    with pytest.raises(TypeError, match="add_model takes a torch.nn.Module, not str"):
        experiment.add_model("SmallCNN")
    model = Flat()
    summary = (
        experiment.add_model(model)
        .add_crawler(FewDigits())
        .add_loss("digit", nn.CrossEntropyLoss(label_smoothing=0.1))
        .fit()
    )
    assert summary["status"] == "finished" and summary["final"]["test/accuracy"] > 0.6
    assert "train/digit/CrossEntropyLoss" in summary["final"]  # the given loss's term

    (run,) = run_folders(tmp_path / "runs")
    provenance = json.loads((run / "provenance.json").read_text())
    assert (
        provenance["data"]["samples"]["train"] == 270
    )  # the given crawler's 300, less the 10 % held out for validation
    components = provenance["components"]
    assert components["MODEL.MODEL_ARCH"]["class"] == "test_given.Flat" and components["MODEL.MODEL_ARCH"]["given"]
    assert components["LOSS[0].LOSSES[0]"]["class"] == "torch.nn.modules.loss.CrossEntropyLoss"
    assert components["EXECUTION.DATAREADER.DATAREADER"]["parts"]["crawler"]["class"] == "test_given.FewDigits"
    assert provenance["parameters"]["model"] == sum(p.numel() for p in model.parameters())  # that instance was trained
    report = (run / "report.html").read_text()
    assert "Flat (given from Python)" in report and "CrossEntropyLoss (given from Python)" in report

    checkpoint = run / "checkpoints" / "last.ckpt"
    assert set(torch.load(checkpoint, weights_only=True)["ednaml"]["given"]) == {
        "MODEL.MODEL_ARCH",
        "EXECUTION.DATAREADER.CRAWLER_ARGS",
        "LOSS[0].LOSSES",
    }
    tested = run_ednaml("test", "--ckpt_path", str(checkpoint), cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert (
        tested.returncode == 2
        and "trained with components given from Python" in tested.stderr
        and "test_given.Flat" in tested.stderr
    )
    again = EdnaML(ckpt_path=str(checkpoint))
    again.add_model(Flat()).add_crawler(FewDigits()).add_loss("digit", nn.CrossEntropyLoss(label_smoothing=0.1))
    assert again.test()["final"]["test/accuracy"] == pytest.approx(summary["final"]["test/accuracy"], abs=1e-6)
