"""Config sections: typed, read-only views generated from the schema; `registry.build` checks kwargs as validation
does."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch
from helpers import CONFIGS
from torch import nn

from ednaml import registry
from ednaml.adapters.module import EdnaModule
from ednaml.config import resolve
from ednaml.config.schema import SCHEMA, Key, ListOf
from ednaml.config.sections import FrozenDict, LossEntry, ModelSection, section_class, sections
from ednaml.errors import ConfigError
from ednaml.optim.optimizers import build_optimizers
from ednaml.validation import validate


@pytest.fixture(scope="module")
def digits() -> dict:
    return resolve([CONFIGS / "digits.yml"])


def test_every_live_schema_key_is_a_typed_field_and_no_dead_key_is():
    for name, spec in SCHEMA.items():
        section = spec.entry if isinstance(spec, ListOf) else spec
        if not section.keys:
            continue
        fields = {f.name: f.type for f in dataclasses.fields(section_class(name, section))}
        for key, item in section.keys.items():
            if isinstance(item, Key) and item.dead:
                assert key not in fields, f"{name}.{key} is accepted for old configs, never read"
            else:
                assert key in fields, f"{name}.{key}"
        assert set(fields) <= set(section.keys)
    assert (
        section_class("MODEL", SCHEMA["MODEL"]) is ModelSection
        and section_class("LOSS", SCHEMA["LOSS"].entry) is LossEntry
    )
    assert dataclasses.fields(ModelSection)[1].type is str  # MODEL_ARCH, typed from the schema


def test_a_section_reads_like_the_yaml_and_gives_the_plain_config_back(digits):
    view = sections(digits)
    assert (
        view.EXECUTION.DATAREADER.DATAREADER
        == digits["EXECUTION"]["DATAREADER"]["DATAREADER"]
        == view["EXECUTION"]["DATAREADER"]["DATAREADER"]
    )
    assert view.TRAIN_TRANSFORMATION.BATCH_SIZE == digits["TRAIN_TRANSFORMATION"]["BATCH_SIZE"]
    assert view.LOSS[0].LOSSES == tuple(digits["LOSS"][0]["LOSSES"])
    assert dict(view.MODEL.MODEL_KWARGS) == digits["MODEL"]["MODEL_KWARGS"]
    assert view.as_dict() == digits and view.as_dict() is not view.as_dict()
    assert sections(view) is view


def test_nothing_can_be_changed_through_a_section(digits):
    view = sections(digits)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.EXECUTION.EPOCHS = 1
    with pytest.raises(TypeError, match="read-only"):
        view.MODEL.MODEL_KWARGS["width"] = 1
    with pytest.raises(TypeError, match="read-only"):
        view.trainer.update(max_epochs=1)
    with pytest.raises(TypeError):
        view["SAVE"] = {}
    kwargs = dict(view.MODEL.MODEL_KWARGS)  # a component's copy is its own
    kwargs["width"] = 1
    assert view.MODEL.MODEL_KWARGS["width"] == digits["MODEL"]["MODEL_KWARGS"]["width"] != 1


def test_a_section_holds_its_own_copy_of_the_config():
    config = resolve([CONFIGS / "digits.yml"])
    view = sections(config)
    config["MODEL"]["MODEL_KWARGS"]["width"] = 3
    config["OPTIMIZER"][0]["BASE_LR"] = 7.0
    assert view.MODEL.MODEL_KWARGS["width"] != 3 and view.OPTIMIZER[0].BASE_LR != 7.0
    assert view.as_dict()["MODEL"]["MODEL_KWARGS"]["width"] != 3


def test_sections_copy_and_pickle_as_themselves(digits):
    view = sections(digits)
    for twin in (copy.deepcopy(view), pickle.loads(pickle.dumps(view))):
        assert type(twin) is type(view) and twin == view and twin.as_dict() == digits
        assert type(twin.MODEL.MODEL_KWARGS) is FrozenDict
        with pytest.raises(TypeError):
            twin.MODEL.MODEL_KWARGS["width"] = 1


def test_build_refuses_a_kwarg_with_the_message_validation_gives():
    config = resolve(
        [CONFIGS / "digits.yml"],
        [("OPTIMIZER.0.OPTIMIZER", "SGD"), ("OPTIMIZER.0.OPTIMIZER_KWARGS", "{momentun: 0.9}")],
    )
    with pytest.raises(ConfigError) as validated:
        validate(config)
    with pytest.raises(ConfigError) as built:  # the same config, past validation: refused as it is built
        build_optimizers(nn.Linear(2, 2), ("opt-1",), sections(config).OPTIMIZER)
    assert (
        [str(p) for p in built.value.problems]
        == [str(p) for p in validated.value.problems]
        == ["OPTIMIZER[0].OPTIMIZER_KWARGS.momentun: SGD takes no argument 'momentun'; did you mean 'momentum'?"]
    )


def test_build_refuses_an_argument_ednaml_passes_itself_and_a_missing_required_one():
    params = [nn.Parameter(torch.zeros(1))]
    with pytest.raises(
        ConfigError, match=r"OPTIMIZER\[0\]\.OPTIMIZER_KWARGS\.lr: is set by EdnaML for SGD; remove it here"
    ):
        registry.build("optimizer", "SGD", {"lr": 0.1}, at=("OPTIMIZER", 0, "OPTIMIZER_KWARGS"), params=params, lr=0.2)
    optimizer = torch.optim.SGD(params, lr=0.1)
    with pytest.raises(ConfigError, match=r"SCHEDULER\[0\]\.LR_KWARGS\.step_size: is missing: StepLR needs it"):
        registry.build("scheduler", "StepLR", {}, at=("SCHEDULER", 0, "LR_KWARGS"), optimizer=optimizer)
    built = registry.build(
        "scheduler", "StepLR", FrozenDict(step_size=2), at=("SCHEDULER", 0, "LR_KWARGS"), optimizer=optimizer
    )
    assert built.step_size == 2 and built.optimizer is optimizer


def test_a_config_that_skipped_validation_is_still_refused_by_key_when_built(digits):
    config = copy.deepcopy(digits)
    config["MODEL"]["MODEL_KWARGS"]["widht"] = 16
    with pytest.raises(
        ConfigError, match=r"MODEL\.MODEL_KWARGS\.widht: SmallCNN takes no argument 'widht'; did you mean 'width'\?"
    ):
        EdnaModule(config, {"digit": [str(i) for i in range(10)]})


def test_a_component_that_changes_its_kwargs_changes_only_its_own_copy():
    class Greedy:
        def __init__(self, sizes: list, options: dict):
            sizes.append(99)
            options["added"] = True
            self.sizes, self.options = sizes, options

    kwargs = sections(resolve([], [("MODEL.MODEL_KWARGS", "{sizes: [1, 2], options: {a: 1}}")])).MODEL.MODEL_KWARGS
    first = registry.build("model", Greedy, kwargs, at=("MODEL", "MODEL_KWARGS"))
    second = registry.build("model", Greedy, kwargs, at=("MODEL", "MODEL_KWARGS"))
    assert first.sizes == second.sizes == [1, 2, 99] and type(first.sizes) is list and first.sizes is not second.sizes
    assert kwargs == {"sizes": [1, 2], "options": {"a": 1}}


def test_an_argument_ednaml_passes_is_refused_even_where_a_component_takes_any_kwargs():
    class Loose(torch.optim.SGD):
        def __init__(self, params, lr: float = 0.1, **kwargs):
            super().__init__(params, lr=lr, **kwargs)

    registry.register("optimizer", "Loose")(Loose)
    config = resolve(
        [CONFIGS / "digits.yml"],
        [("OPTIMIZER.0.OPTIMIZER", "Loose"), ("OPTIMIZER.0.OPTIMIZER_KWARGS", "{lr: 0.5, momentum: 0.9}")],
    )
    with pytest.raises(ConfigError) as refused:
        validate(config)
    assert [str(p) for p in refused.value.problems] == [
        "OPTIMIZER[0].OPTIMIZER_KWARGS.lr: is set by EdnaML for Loose; remove it here"
    ]


def test_dataset_kwargs_past_validation_are_refused_at_their_own_key(digits):
    from ednaml.adapters.datamodule import EdnaDataModule

    config = copy.deepcopy(digits)
    config["EXECUTION"]["DATAREADER"]["GENERATOR_ARGS"] = {"bogus": 1}
    with pytest.raises(
        ConfigError, match=r"EXECUTION\.DATAREADER\.GENERATOR_ARGS\.bogus: ImageDataset takes no argument 'bogus'"
    ):
        EdnaDataModule(config)
