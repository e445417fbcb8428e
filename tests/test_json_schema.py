"""`ednaml schema`: the config's JSON Schema for the editor, checked with the jsonschema library. It admits every
config EdnaML accepts (configs/, the original's configs, their spellings), rejects only what `check` rejects too,
and catches in the editor a typo'd key, an unknown component, a wrong type and an argument a component does not
take, per component and per position of a list of losses."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers import CONFIGS, ROOT, run_ednaml

from ednaml.config.schema import SCHEMA, ListOf, Section
from ednaml.errors import ConfigError

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).parent
MODELINE = "# yaml-language-server: $schema=../ednaml.schema.json"


@pytest.fixture(scope="module")
def validator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema")
    result = run_ednaml("schema", "-o", "ednaml.schema.json", cwd=folder)
    assert result.returncode == 0 and "wrote ednaml.schema.json" in result.stdout, result.stderr[-3000:]
    schema = json.loads((folder / "ednaml.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(validator, config) -> list[str]:
    """Each error as KEY.PATH: message, the key path as EdnaML writes it."""
    found = []
    for error in validator.iter_errors(config):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        found.append(f"{path}: {error.message}")
    return found


def experiment_configs() -> list[Path]:
    """The configs of configs/ (a sweep's search space is another kind of file)."""
    return [p for p in sorted(CONFIGS.glob("*.yml")) if "SWEEP" not in yaml.safe_load(p.read_text())]


@pytest.mark.parametrize("path", experiment_configs(), ids=lambda p: p.name)
def test_every_shipped_config_validates_and_names_the_schema_for_its_editor(validator, path):
    text = path.read_text()
    assert text.splitlines()[0] == MODELINE
    assert errors(validator, yaml.safe_load(text)) == []


def test_a_config_in_the_originals_spellings_validates(validator):
    config = yaml.safe_load((TESTS / "legacy_configs" / "digits-original-style.yml").read_text())
    assert errors(validator, config) == []


REFERENCE = sorted((TESTS / "reference_configs").rglob("*.yml"))


@pytest.mark.parametrize("path", REFERENCE, ids=lambda p: str(p.relative_to(TESTS / "reference_configs")))
def test_the_schema_rejects_an_original_config_only_where_validation_does(validator, path):
    from ednaml.api import prepare

    config = yaml.safe_load(path.read_text())
    try:
        prepare([path])
        refused = set()
    except ConfigError as err:
        refused = {p.path for p in err.problems}
    wrong = errors(validator, config)
    named = {".".join(map(str, p)) for p in refused}
    for error in wrong:
        where = error.split(": ", 1)[0].replace("[", ".").replace("]", "")
        # the same key, or one inside the other (an argument not taken is an error at its kwargs mapping here)
        assert any(where == n or where.startswith(n + ".") or n.startswith(where + ".") for n in named), (
            error,
            sorted(named),
        )


@pytest.mark.parametrize(
    ("mistake", "said"),
    [
        ({"MODEL": {"MODEL_ARHC": "SmallCNN"}}, "MODEL: Additional properties are not allowed ('MODEL_ARHC'"),
        ({"EXECUTION": {"EPOCHS": "ten"}}, "EXECUTION.EPOCHS: 'ten' is not of type 'integer'"),
        ({"LOSS": [{"LOSSES": ["FocalLos"]}]}, "LOSS[0].LOSSES[0]: 'FocalLos' is not valid"),
        ({"MODEL": {"MODEL_ARCH": "SmallCNN", "MODEL_KWARGS": {"widht": 8}}}, "('widht' was unexpected)"),
        (
            {"LOSS": [{"LOSSES": ["SoftmaxLogitsLoss", "CenterLoss"], "KWARGS": [{}, {"alfa": 0.1}]}]},
            "LOSS[0].KWARGS[1]: Additional properties are not allowed ('alfa'",
        ),
        ({"OPTIMIZER": [{"OPTIMIZER": "Adam", "OPTIMIZER_KWARGS": {"betas2": 1}}]}, "('betas2' was unexpected)"),
        ({"SCHEDULER": [{"LR_SCHEDULER": "StepLR", "LR_KWARGS": {"step": 2}}]}, "('step' was unexpected)"),
        ({"trainer": {"max_epoch": 2}}, "trainer: Additional properties are not allowed ('max_epoch'"),
        ({"trainer": {"max_epochs": "two"}}, "trainer.max_epochs: 'two' is not valid"),
        ({"SAVE": {"MONITOR_MODE": "maximum"}}, "SAVE.MONITOR_MODE: 'maximum' is not one of"),
        ({"modle": {}}, "'modle' does not match any of the regexes"),  # a section of one's own is upper-case
    ],
)
def test_the_editor_catches_a_typo_an_unknown_name_a_wrong_type_and_an_argument_not_taken(validator, mistake, said):
    found = errors(validator, mistake)
    assert any(said in error for error in found), found


def test_a_file_merged_over_another_may_set_kwargs_of_a_component_it_does_not_name(validator):
    assert errors(validator, {"MODEL": {"MODEL_KWARGS": {"width": 8, "attention": "cbam"}}}) == []


def test_a_dotted_class_path_and_the_originals_names_are_admitted(validator):
    assert errors(validator, {"MODEL": {"MODEL_ARCH": "my_models.Net", "MODEL_KWARGS": {"anything": 1}}}) == []
    assert (
        errors(validator, {"EXECUTION": {"TRAINER": "BaseTrainer", "OPTIMIZER_BUILDER": "ReIDOptimizerBuilder"}}) == []
    )


def test_every_key_of_the_config_is_in_the_schema_with_its_description(validator):
    schema = validator.schema

    def walk(spec, node, at):
        if isinstance(spec, ListOf):
            node = node["items"]
            spec = spec.entry
        for name, sub in spec.keys.items():
            assert name in node["properties"], f"{at}.{name}"
            if isinstance(sub, Section):
                walk(sub, node["properties"][name], f"{at}.{name}")
            else:
                assert node["properties"][name]["description"] == sub.doc, f"{at}.{name}"

    for name, spec in SCHEMA.items():
        walk(spec, schema["properties"][name], name)
    trainer = schema["properties"]["trainer"]["properties"]
    assert trainer["max_epochs"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}


# The broken-config corpus as the editor sees each file (each is merged over tests/broken_base.yml): what the
# schema already catches while typing. The rest is `check`'s: the data, what Lightning refuses, rules between
# keys, a component's own rules, and what spans files (kwargs of a component the base file names).
CAUGHT_IN_THE_EDITOR = {
    "bad_samples_policy", "epochs_not_integer", "interval_choice",
    "loss_kwarg_typo", "loss_not_list", "lowercase_unknown_key", "metric_unknown",
    "normalization_choice", "optimizer_kwarg_typo", "scheduler_kwarg_typo", "section_not_mapping",
    "top_level_list", "trainer_key_typo", "trainer_precision", "unknown_datareader", "unknown_key", "unknown_loss",
    "unknown_model", "unknown_optimizer", "unknown_scheduler", "unknown_step_logic", "wandb_mode_choice",
}  # fmt: skip


def test_which_mistakes_of_the_broken_config_corpus_the_editor_catches(validator):
    caught = set()
    for path in sorted((TESTS / "broken_configs").glob("*.yml")):
        try:
            config = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            continue  # not YAML: the editor says so itself
        if config is not None and errors(validator, config):
            caught.add(path.stem)
    assert caught == CAUGHT_IN_THE_EDITOR


def test_a_file_that_is_not_an_ednaml_schema_is_never_written_over(tmp_path):
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": true}')
    result = run_ednaml("schema", "-o", str(mine), cwd=tmp_path)
    assert result.returncode == 2 and "is not an EdnaML schema" in result.stderr
    assert mine.read_text() == '{"mine": true}'


def test_the_users_own_components_and_their_arguments_are_in_their_schema(tmp_path):
    (tmp_path / "focal.py").write_text((ROOT / "examples" / "custom_component.py").read_text())
    result = run_ednaml("schema", "--import", "focal.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    validator = jsonschema.Draft7Validator(json.loads(result.stdout))
    assert errors(validator, yaml.safe_load((ROOT / "examples" / "focal.yml").read_text())) == []
    assert errors(validator, {"LOSS": [{"LOSSES": ["FocalLoss"], "KWARGS": [{"gamma": 2.0}]}]}) == []
    assert any(
        "'gama' was unexpected" in e
        for e in errors(validator, {"LOSS": [{"LOSSES": ["FocalLoss"], "KWARGS": [{"gama": 2.0}]}]})
    )
