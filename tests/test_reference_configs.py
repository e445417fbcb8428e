"""Every config written for the original EdnaML validates, or fails naming only what it needs that is missing.

Missing means a component (data reader, model, trainer, ...) that is not here, or an option of a
component that this version of it does not have (e.g. MultiBranchResnet's `soft_targets`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ednaml.api import prepare
from ednaml.config import ConfigError, format_path

REFERENCE = Path(__file__).parent / "reference_configs"


# Each reference config: the key paths of exactly the problems it has here, all of the missing kind.
EXPECTED = {
    "attention/ccars-micro-att-part.yml": [
        "EXECUTION.DATAREADER.DATAREADER",
        "MODEL.MODEL_KWARGS.input_attention",
        "MODEL.MODEL_KWARGS.part_attention",
        "MODEL.MODEL_KWARGS.secondary_attention",
    ],
    "attention/ccars-micro-att.yml": [
        "EXECUTION.DATAREADER.DATAREADER",
        "MODEL.MODEL_KWARGS.attention",
        "MODEL.MODEL_KWARGS.input_attention",
    ],
    "basics/cnn/cifar.yml": ["EXECUTION.DATAREADER.DATAREADER"],
    "basics/cnn/cifar100.yml": ["EXECUTION.DATAREADER.DATAREADER"],
    "basics/cnn/mnist.yml": ["EXECUTION.DATAREADER.DATAREADER"],
    "config-full.yml": ["EXECUTION.DATAREADER.DATAREADER", "MODEL.MODEL_ARCH", "DEPLOYMENT.DATAREADER.DATAREADER"],
    "datasets/config-compcars-50.yml": ["EXECUTION.DATAREADER.DATAREADER"],
    "datasets/config-compcars-70.yml": ["EXECUTION.DATAREADER.DATAREADER"],
    "datasets/config-compcars-micro-make.yml": ["EXECUTION.DATAREADER.DATAREADER"],
    "datasets/config-compcars-micro.yml": ["EXECUTION.DATAREADER.DATAREADER"],
    "datasets/config-vehicleid.yml": ["EXECUTION.DATAREADER.DATAREADER"],
    "datasets/config-veri.yml": ["EXECUTION.DATAREADER.DATAREADER"],
    "text/nela-covid-v0.yml": ["EXECUTION.DATAREADER.DATAREADER", "MODEL.MODEL_ARCH"],
    "trainers/multibranch-compcars.yml": [
        "EXECUTION.DATAREADER.DATAREADER",
        "EXECUTION.DATAREADER.GENERATOR",
        "MODEL.MODEL_KWARGS.soft_targets",
    ],
    "trainers/multibranch-veri.yml": [
        "EXECUTION.DATAREADER.DATAREADER",
        "EXECUTION.DATAREADER.GENERATOR",
        "MODEL.MODEL_KWARGS.soft_targets",
    ],
    "trainers/multiclassification-veri.yml": ["EXECUTION.DATAREADER.DATAREADER", "EXECUTION.DATAREADER.GENERATOR"],
}
MISSING = (
    "is not a known",
    " takes no argument ",
    "not supported in this version",
    "is not part of EdnaML: register it with IMPORTS",
    "is the original's base class",
    "which EdnaML does not ship",
)


def test_every_reference_config_is_listed():
    assert sorted(EXPECTED) == sorted(str(p.relative_to(REFERENCE)) for p in REFERENCE.rglob("*.yml"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_config_validates_or_names_its_missing_components(name: str):
    try:
        prepare([REFERENCE / name])
        found = []
    except ConfigError as err:
        found = err.problems
    assert [format_path(p.path) for p in found] == EXPECTED[name], [str(p) for p in found]
    for problem in found:
        assert any(words in problem.message for words in MISSING), f"not a missing-component error: {problem}"
