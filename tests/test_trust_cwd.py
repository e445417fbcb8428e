"""Code from the working directory: `python -m ednaml` (and a sweep's trials) import nothing that merely lies
there, and `ednaml migrate` translates a config without importing any of the user's code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import CONFIGS

def plant(folder: Path, name: str) -> Path:
    """A module `name` in `folder` that leaves a marker file when it is imported; the marker's path."""
    marker = folder / f"imported-{name}"
    (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    return marker


def python_m_ednaml(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m ednaml ARGS` run in `cwd`: Python puts `cwd` first on sys.path."""
    return subprocess.run([sys.executable, "-m", "ednaml", *args], cwd=cwd, env={**os.environ, "WANDB_MODE": "disabled", **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_python_m_ednaml_imports_nothing_from_the_working_directory_unless_pythonpath_names_it(tmp_path):
    marker = plant(tmp_path, "inspect")  # a standard module the package's own import needs
    result = python_m_ednaml("--version", cwd=tmp_path)
    assert not marker.exists()
    assert result.returncode == 0 and "ednaml" in result.stdout, result.stderr[-2000:]
    pythonpath = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(tmp_path)]))
    python_m_ednaml("--version", cwd=tmp_path, env={"PYTHONPATH": pythonpath})  # asked for: then it is imported
    assert marker.exists()


def test_python_m_ednaml_sweep_imports_its_optuna_not_one_in_the_working_directory(tmp_path):
    marker = plant(tmp_path, "optuna")  # imported lazily, once the sweep starts
    space = tmp_path / "space.yml"
    space.write_text("SWEEP: {}\n")  # refused once optuna is imported, before any trial
    result = python_m_ednaml("sweep", "--config", str(CONFIGS / "digits.yml"), "--sweep", str(space), cwd=tmp_path)
    assert not marker.exists()
    assert result.returncode == 2 and "SWEEP" in result.stderr, result.stderr[-2000:]


def test_a_sweeps_trial_process_imports_ednaml_not_a_package_of_that_name_in_the_working_directory(tmp_path, monkeypatch):
    from ednaml.sweeps.space import read_space
    from ednaml.sweeps.study import Sweep

    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yml"
    space.write_text("SWEEP: {OPTIMIZER.0.BASE_LR: {float: [0.001, 0.1]}}\n")
    command = Sweep("s", read_space(space), [str(CONFIGS / "digits.yml")], [], [], "").command({}, [])
    interpreter = command[:command.index("ednaml") + 1]  # the trial's `python ... -m ednaml`, asked only for its version
    (tmp_path / "ednaml").mkdir()
    marker = tmp_path / "imported-ednaml"
    (tmp_path / "ednaml" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "ednaml" / "__main__.py").write_text("")
    result = subprocess.run([*interpreter, "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert not marker.exists()
    assert result.returncode == 0 and "ednaml" in result.stdout, result.stderr[-2000:]

