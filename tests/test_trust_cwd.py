"""Code from the working directory: `python -m ednaml` (and a sweep's trials) import nothing that merely lies
there, and `ednaml migrate` translates a config without importing any of the user's code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import CONFIGS

LEGACY = Path(__file__).parent / "legacy_configs" / "digits-original-style.yml"


def plant(folder: Path, name: str) -> Path:
    """A module `name` in `folder` that leaves a marker file when it is imported; the marker's path."""
    marker = folder / f"imported-{name}"
    (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    return marker


def python_m_ednaml(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m ednaml ARGS` run in `cwd`: Python puts `cwd` first on sys.path."""
    return subprocess.run(
        [sys.executable, "-m", "ednaml", *args],
        cwd=cwd,
        env={**os.environ, "WANDB_MODE": "disabled", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.e2e
def test_python_m_ednaml_imports_nothing_from_the_working_directory_unless_pythonpath_names_it(tmp_path):
    marker = plant(tmp_path, "inspect")  # a standard module the package's own import needs
    result = python_m_ednaml("--version", cwd=tmp_path)
    assert not marker.exists()
    assert result.returncode == 0 and "ednaml" in result.stdout, result.stderr[-2000:]
    pythonpath = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(tmp_path)]))
    python_m_ednaml("--version", cwd=tmp_path, env={"PYTHONPATH": pythonpath})  # asked for: then it is imported
    assert marker.exists()


@pytest.mark.e2e
def test_python_m_ednaml_sweep_imports_its_optuna_not_one_in_the_working_directory(tmp_path):
    marker = plant(tmp_path, "optuna")  # imported lazily, once the sweep starts
    space = tmp_path / "space.yml"
    space.write_text("SWEEP: {}\n")  # refused once optuna is imported, before any trial
    result = python_m_ednaml("sweep", "--config", str(CONFIGS / "digits.yml"), "--sweep", str(space), cwd=tmp_path)
    assert not marker.exists()
    assert result.returncode == 2 and "SWEEP" in result.stderr, result.stderr[-2000:]


@pytest.mark.e2e
def test_a_sweeps_trial_process_imports_ednaml_not_a_package_of_that_name_in_the_working_directory(
    tmp_path, monkeypatch
):
    from ednaml.sweeps.space import read_space
    from ednaml.sweeps.study import Sweep

    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yml"
    space.write_text("SWEEP: {OPTIMIZER.0.BASE_LR: {float: [0.001, 0.1]}}\n")
    command = Sweep("s", read_space(space), [str(CONFIGS / "digits.yml")], [], [], "").command({}, [])
    interpreter = command[
        : command.index("ednaml") + 1
    ]  # the trial's `python ... -m ednaml`, asked only for its version
    (tmp_path / "ednaml").mkdir()
    marker = tmp_path / "imported-ednaml"
    (tmp_path / "ednaml" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "ednaml" / "__main__.py").write_text("")
    result = subprocess.run([*interpreter, "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert not marker.exists()
    assert result.returncode == 0 and "ednaml" in result.stdout, result.stderr[-2000:]


# ---- migrate ----


def original_config(folder: Path, imports: list[str], replace: dict[str, str] | None = None, extra: str = "") -> Path:
    """The original-style digits config in `folder`, with EXECUTION.IMPORTS and some text replaced."""
    text = LEGACY.read_text().replace("EXECUTION:\n", f"EXECUTION:\n  IMPORTS: {imports}\n", 1)
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    config = folder / "old.yml"
    config.write_text(text + extra)
    return config


def test_migrate_imports_none_of_the_configs_imports(tmp_path, monkeypatch):
    from ednaml.migrate import migrate

    monkeypatch.syspath_prepend(str(tmp_path))  # importable, were anything to import them
    file_marker, module_marker = plant(tmp_path, "my_losses_for_migrate"), plant(tmp_path, "my_module_for_migrate")
    migrate(str(original_config(tmp_path, ["my_losses_for_migrate.py", "my_module_for_migrate"])))
    assert not file_marker.exists() and not module_marker.exists()
    assert "my_module_for_migrate" not in sys.modules
    assert not any(name.startswith("ednaml_user_my_losses_for_migrate") for name in sys.modules)


def test_migrate_imports_no_dotted_component_or_trainer_class_path(tmp_path, monkeypatch):
    from ednaml.migrate import migrate

    monkeypatch.syspath_prepend(str(tmp_path))
    arch_marker, callback_marker = plant(tmp_path, "my_arch_for_migrate"), plant(tmp_path, "my_callback_for_migrate")
    config = original_config(
        tmp_path,
        [],
        {"MODEL_ARCH: 'SmallCNN'": "MODEL_ARCH: my_arch_for_migrate.Net"},
        "trainer:\n  callbacks:\n    - class_path: my_callback_for_migrate.Stop\n",
    )
    text, _, problems = migrate(str(config))
    assert not arch_marker.exists() and not callback_marker.exists()
    assert "my_arch_for_migrate" not in sys.modules and "my_callback_for_migrate" not in sys.modules
    assert "MODEL.MODEL_ARCH: 'my_arch_for_migrate.Net': a dotted import path" in problems
    assert (
        "trainer.callbacks[0].class_path: 'my_callback_for_migrate.Stop': a dotted import path outside Lightning"
        in problems
    )


def test_migrate_leaves_a_component_its_imports_would_register_as_written_with_a_note(tmp_path):
    from ednaml.migrate import migrate

    (tmp_path / "my_loss_for_migrate.py").write_text(
        "import torch\nimport ednaml\n\n\n@ednaml.register.loss('MyLossForMigrate')\nclass MyLoss(torch.nn.Module):\n"
        "    def forward(self, logits, target):\n        return logits.sum() * 0\n"
    )
    config = original_config(tmp_path, ["my_loss_for_migrate.py"], {"'CenterLoss'": "'MyLossForMigrate'"})
    text, _, problems = migrate(str(config))
    note = (
        "LOSS[0].LOSSES[1]: 'MyLossForMigrate': not a registered loss; EXECUTION.IMPORTS ['my_loss_for_migrate.py'] "
        "may register it"
    )
    assert note in problems and f"#   - {note}" in text
    assert "# Left as written, not checked (migrate imports nothing; `ednaml check` does, and checks these):" in text
    migrated = yaml.safe_load(text)
    assert migrated["LOSS"][0]["LOSSES"] == ["SoftmaxLabelSmooth", "MyLossForMigrate"]
    assert migrated["EXECUTION"]["IMPORTS"] == ["my_loss_for_migrate.py"]
    assert not any(
        "MyLossForMigrate" in p and "not a known loss" in p for p in problems
    )  # not reported as a misspelling


@pytest.mark.e2e
def test_python_m_ednaml_migrate_imports_nothing(tmp_path):
    file_marker, module_marker = plant(tmp_path, "my_file_for_migrate"), plant(tmp_path, "my_module_for_migrate")
    config = original_config(tmp_path, ["my_file_for_migrate.py", "my_module_for_migrate"])
    result = python_m_ednaml("migrate", str(config), cwd=tmp_path)
    assert not file_marker.exists() and not module_marker.exists()
    assert result.returncode == 0 and "# Migrated from" in result.stdout, result.stderr[-2000:]
