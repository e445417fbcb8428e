"""The registry: decorator registration, dotted paths, user files, entry points, `ednaml list`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import CONFIGS, run_ednaml

import ednaml
from ednaml import kinds, registry
from ednaml.api import prepare


def test_decorator_registers_under_the_given_name():
    @ednaml.register.loss("ZeroLossForTest")
    class Zero(torch.nn.Module):
        def forward(self, logits, target):
            return logits.sum() * 0

    assert registry.get("loss", "ZeroLossForTest") is Zero
    assert "ZeroLossForTest" in registry.names("loss")


def test_every_torch_optimizer_and_scheduler_resolves_by_name():
    assert registry.get("optimizer", "AdamW") is torch.optim.AdamW
    assert registry.get("scheduler", "CosineAnnealingLR") is torch.optim.lr_scheduler.CosineAnnealingLR


def test_a_dotted_import_path_resolves():
    assert registry.get("loss", "torch.nn.CrossEntropyLoss") is torch.nn.CrossEntropyLoss


def test_an_unknown_name_suggests_the_closest():
    with pytest.raises(registry.RegistryError, match="'SmallCN' is not a known model; did you mean 'SmallCNN'"):
        registry.get("model", "SmallCN")


def test_components_from_a_user_file_named_in_imports(tmp_path):
    (tmp_path / "my_losses.py").write_text(
        textwrap.dedent("""
        import torch
        import ednaml

        @ednaml.register.loss("DoubledCrossEntropy")
        class DoubledCrossEntropy(torch.nn.Module):
            \"\"\"Twice the cross-entropy.\"\"\"
            def __init__(self, factor: float = 2.0):
                super().__init__()
                self.factor = factor
            def forward(self, logits, target):
                return self.factor * torch.nn.functional.cross_entropy(logits, target)
    """)
    )
    config = prepare(
        [CONFIGS / "digits.yml"],
        [
            ("EXECUTION.IMPORTS", f"[{tmp_path / 'my_losses.py'}]"),
            ("LOSS.0.LOSSES", "[DoubledCrossEntropy]"),
            ("LOSS.0.KWARGS", "[{factor: 3}]"),
        ],
    )
    assert config["LOSS"][0]["LOSSES"] == ["DoubledCrossEntropy"]
    assert registry.describe(registry.get("loss", "DoubledCrossEntropy")) == "Twice the cross-entropy."


def test_installed_extensions_register_through_the_entry_point_group(tmp_path, monkeypatch):
    package = tmp_path / "ednaml_ext_demo"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import torch, ednaml\n"
        "@ednaml.register.model('EntryPointNet')\n"
        "class EntryPointNet(torch.nn.Linear):\n"
        "    '''A model from an installed extension.'''\n"
    )
    dist = tmp_path / "ednaml_ext_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ednaml-ext-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\ndemo = ednaml_ext_demo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    assert registry.get("model", "EntryPointNet").__doc__ == "A model from an installed extension."
    sys.modules.pop("ednaml_ext_demo", None)


@pytest.mark.e2e
def test_ednaml_list_prints_the_catalogue_by_kind(tmp_path):
    result = run_ednaml("list", "loss", cwd=tmp_path)
    assert result.returncode == 0
    assert "loss:" in result.stdout
    assert re.search(r"^  SoftmaxLabelSmooth +Cross-entropy against label-smoothed targets", result.stdout, re.M)
    everything = run_ednaml("list", cwd=tmp_path).stdout
    for kind in ("datareader:", "model:", "step_logic:", "optimizer:", "scheduler:", "metric:"):
        assert kind in everything
    assert "Digits" in everything and "ClassificationResnet" in everything


@pytest.mark.e2e
def test_ednaml_list_filters_with_a_wildcard(tmp_path):
    result = run_ednaml("list", "model", "*Resnet*", cwd=tmp_path)
    assert result.returncode == 0
    assert "ClassificationResnet" in result.stdout and "SmallCNN" not in result.stdout


@pytest.mark.parametrize("kind", kinds.registered())
def test_the_catalogue_read_from_source_is_what_the_registry_resolves(kind):
    # `ednaml list` reads the @register decorators and torch's __all__ without importing them
    listed = dict(registry.declared(kind))
    assert set(listed) == set(registry.names(kind))
    for name, description in listed.items():
        if not description.startswith("torch."):
            assert description == registry.describe(registry.get(kind, name)), name


@pytest.mark.e2e
def test_ednaml_list_imports_neither_torch_nor_the_components(tmp_path):
    probe = "import sys; from ednaml.cli import main; main(['list']); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "False", result.stderr[-2000:]
    assert "SmallCNN" in result.stdout and "AdamW" in result.stdout


@pytest.mark.e2e
def test_ednaml_list_shows_the_users_components_and_one_components_arguments(tmp_path):
    (tmp_path / "my_losses.py").write_text(
        "import torch, ednaml\n"
        "@ednaml.register.loss('HalfCrossEntropy')\n"
        "class HalfCrossEntropy(torch.nn.Module):\n"
        "    '''Half the cross-entropy.'''\n"
        "    def __init__(self, smoothing: float, scale: float = 0.5):\n"
        "        super().__init__()\n"
    )
    listed = run_ednaml("list", "loss", "--import", "my_losses.py", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert re.search(r"^  HalfCrossEntropy +Half the cross-entropy\.", listed.stdout, re.M)
    (tmp_path / "cfg.yml").write_text("EXECUTION:\n  IMPORTS: [my_losses.py]\n")
    one = run_ednaml("list", "loss", "HalfCrossEntropy", "--config", "cfg.yml", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    assert one.stdout.splitlines() == [
        "loss HalfCrossEntropy: Half the cross-entropy.",
        "  LOSS[i].KWARGS[j]:",
        "    smoothing: float  (required)",
        "    scale: float = 0.5",
    ]
    reader = run_ednaml("list", "datareader", "Digits", cwd=tmp_path).stdout
    assert (
        "  EXECUTION.DATAREADER.CRAWLER_ARGS:" in reader and "  TRANSFORMATION.ARGS:" in reader and "i_shape" in reader
    )
    missing = run_ednaml("list", "loss", "--import", "nowhere.py", cwd=tmp_path)
    assert missing.returncode == 2 and "nowhere.py" in missing.stderr and "Traceback" not in missing.stderr


def test_a_component_registered_in_one_test_is_gone_in_the_next_part_1_registers():
    @registry.register("model", "OnlyForThisTest")
    class OnlyForThisTest(torch.nn.Module):
        pass

    assert registry.get("model", "OnlyForThisTest") is OnlyForThisTest


def test_a_component_registered_in_one_test_is_gone_in_the_next_part_2_finds_nothing():
    # runs after part 1 (pytest keeps a file's order): conftest's fixture undid its registration
    assert "OnlyForThisTest" not in registry.names("model")
    with pytest.raises(registry.RegistryError, match="'OnlyForThisTest' is not a known model"):
        registry.get("model", "OnlyForThisTest")
    assert "SmallCNN" in registry.names("model")  # the built-ins stay


@pytest.mark.e2e  # two fresh Python processes
def test_a_component_from_a_user_file_is_named_by_the_file_the_same_in_every_process(tmp_path):
    (tmp_path / "my_parts.py").write_text(
        "import torch\nimport ednaml\n\n\n@ednaml.register.loss('PartsLoss')\n"
        "class PartsLoss(torch.nn.Module):\n    pass\n"
    )
    probe = (
        "import sys; from pathlib import Path; from ednaml import registry; "
        "from ednaml.tracking.provenance import describe_component;"
        f"registry.import_sources([{str(tmp_path / 'my_parts.py')!r}]);"
        "obj = registry.get('loss', 'PartsLoss'); print(obj.__module__, describe_component(obj)['class'])"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    (line,) = seen  # the same module and class in both processes, whatever Python's hash seed
    module, described = line.split()
    assert module.startswith("ednaml_user_my_parts_") and described == "my_parts.py:PartsLoss"


def _builtin_of_each_kind() -> list[tuple[str, str]]:
    return [(kind, registry.declared(kind)[0][0]) for kind in kinds.registered() if registry.declared(kind)]


@pytest.mark.parametrize(("kind", "name"), [*_builtin_of_each_kind(), ("optimizer", "Adam"), ("scheduler", "StepLR")])
def test_a_component_registered_under_a_name_its_kind_already_has_is_refused(kind, name):
    original = registry.get(kind, name)

    with pytest.raises(registry.RegistryError, match=rf"{kind.replace('_', ' ')} '{name}' is already .*override=True"):

        @registry.register(kind, name)
        class Shadow:
            pass

    assert registry.get(kind, name) is original  # nothing replaced


def test_a_component_registered_with_override_replaces_the_built_in_and_only_then():
    @registry.register("loss", "TripletLoss", override=True)
    class MyTriplet(torch.nn.Module):
        pass

    assert registry.get("loss", "TripletLoss") is MyTriplet


def test_two_users_components_under_one_name_are_refused_too():
    @ednaml.register.model("TwiceForTest")
    class First(torch.nn.Module):
        pass

    with pytest.raises(registry.RegistryError, match="model 'TwiceForTest' is already .*First"):

        @ednaml.register.model("TwiceForTest")
        class Second(torch.nn.Module):
            pass


SHADOWING_LOSS = """
import torch
import ednaml

@ednaml.register.loss("TripletLoss"{override})
class TripletLoss(torch.nn.Module):
    def forward(self, *args):
        raise RuntimeError("the user's TripletLoss ran")
"""


@pytest.mark.e2e
@pytest.mark.parametrize("command", ["check", "fit"])
def test_a_users_file_that_shadows_a_built_in_is_a_config_error_naming_both(tmp_path, command):
    (tmp_path / "custom_component.py").write_text(SHADOWING_LOSS.format(override=""))
    config = tmp_path / "cfg.yml"
    config.write_text(
        "EXECUTION:\n  EPOCHS: 1\n  IMPORTS: [custom_component.py]\n"
        "LOSS:\n  - LOSSES: [SoftmaxLogitsLoss, TripletLoss]\n    KWARGS: [{}, {}]\n    LAMBDAS: [1.0, 1.0]\n"
    )
    result = run_ednaml(command, "--config", str(CONFIGS / "digits.yml"), "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "EXECUTION.IMPORTS: loss 'TripletLoss' is already ednaml.losses.metric_learning.TripletLoss" in result.stderr
    assert f"{tmp_path / 'custom_component.py'} registers" in result.stderr and "override=True" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.e2e
def test_a_users_component_with_override_is_the_one_that_runs(tmp_path):
    (tmp_path / "custom_component.py").write_text(SHADOWING_LOSS.format(override=", override=True"))
    config = tmp_path / "cfg.yml"
    config.write_text(
        "EXECUTION:\n  IMPORTS: [custom_component.py]\n"
        "LOSS:\n  - LOSSES: [SoftmaxLogitsLoss, TripletLoss]\n    KWARGS: [{}, {}]\n    LAMBDAS: [1.0, 1.0]\n"
    )
    result = run_ednaml("check", "--config", str(CONFIGS / "digits.yml"), "--config", str(config), cwd=tmp_path)
    assert result.returncode != 0 and "the user's TripletLoss ran" in result.stdout + result.stderr


def test_a_kind_declared_once_is_listed_validated_and_gated(monkeypatch, capsys):
    from ednaml.cli import main
    from ednaml.config import resolve
    from ednaml.config.schema import SCHEMA, Key
    from ednaml.errors import ConfigError
    from ednaml.validation import validate

    kinds.declare(kinds.Kind("augmenter", "a batch augmentation", bases=("torch.nn.Module",)))
    monkeypatch.setitem(
        SCHEMA["EXECUTION"].keys, "AUGMENTER", Key(None, (str,), "batch augmentation", optional=True, names="augmenter")
    )

    @ednaml.register.augmenter("Flip")
    class Flip(torch.nn.Module):
        """Flips a batch."""

    assert main(["list", "augmenter"]) == 0
    assert re.search(r"^augmenter:\n  Flip +Flips a batch\.$", capsys.readouterr().out, re.M)

    def problems(name: str, trusted: bool = True) -> str:
        cfg = resolve([CONFIGS / "digits.yml"], [("EXECUTION.AUGMENTER", name)])
        try:
            validate(cfg, trusted=trusted)
        except ConfigError as err:
            return str(err)
        return ""

    assert problems("Flip") == ""
    assert "EXECUTION.AUGMENTER: 'Flp' is not a known augmenter; did you mean 'Flip'?" in problems("Flp")
    assert "'torch.nn.Identity' is a dotted import path in a config from a checkpoint" in problems(
        "torch.nn.Identity", trusted=False
    )
    assert problems("torch.nn.Identity") == ""
    assert "'torch.optim.SGD' is not an augmenter: a dotted path must name a subclass of torch.nn.Module" in problems(
        "torch.optim.SGD"
    )
    with pytest.raises(registry.RegistryError, match="augmenter 'Flip' is already"):
        ednaml.register.augmenter("Flip")(type("Flip", (torch.nn.Module,), {}))


def test_docs_components_holds_the_kinds_table_the_declarations_make():
    text = (CONFIGS.parent / "docs" / "components.md").read_text(encoding="utf-8")
    table = text.split("<!-- kinds table -->\n", 1)[1].split("<!-- end kinds table -->", 1)[0]
    assert table.strip() == registry.kinds_table()
    assert "| `loss` | a loss on outputs or features | `LOSS[i].LOSSES[j]` | `torch.nn.Module` |" in table


def test_every_key_the_schema_marks_names_a_declared_kind_and_every_registered_kind_has_a_key():
    from ednaml.config.schema import component_keys

    marked = component_keys()
    assert set(marked) <= set(kinds.KINDS)
    assert set(kinds.registered()) == set(marked)


def test_lightning_kinds_are_listed_and_take_no_registrations(capsys):
    from ednaml.cli import main

    assert main(["list", "callback", "Early*"]) == 0
    assert "  EarlyStopping  lightning.pytorch.callbacks.EarlyStopping" in capsys.readouterr().out
    assert registry.get("callback", "EarlyStopping").__name__ == "EarlyStopping"
    with pytest.raises(registry.RegistryError, match="callback components are Lightning's classes"):
        registry.register("callback", "Mine")
