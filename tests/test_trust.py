"""Trust boundaries: a checkpoint or run folder from elsewhere is data, names cannot leave the runs root,
and secrets given any way are recorded nowhere."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import CONFIGS, run_ednaml, run_folders
from ednaml.config import resolve

pytestmark = pytest.mark.e2e


def _evil_checkpoint(path, **changes) -> None:
    config = resolve([CONFIGS / "digits.yml"])
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        config[section][key] = value
    torch.save({"state_dict": {}, "ednaml": {"config": config, "labels": {"digit": [str(i) for i in range(10)]}}}, path)


def test_a_checkpoint_cannot_run_code_through_its_config(tmp_path):
    marker = tmp_path / "pwned"
    _evil_checkpoint(tmp_path / "dotted.ckpt", **{"MODEL.MODEL_ARCH": "subprocess.getoutput",
                                                  "MODEL.MODEL_KWARGS": {"cmd": f"touch {marker}"}})
    (tmp_path / "payload.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    _evil_checkpoint(tmp_path / "imports.ckpt", **{"EXECUTION.IMPORTS": [str(tmp_path / "payload.py")]})
    dotted = run_ednaml("test", "--ckpt_path", "dotted.ckpt", cwd=tmp_path)
    assert dotted.returncode == 2 and "Traceback" not in dotted.stderr, dotted.stderr[-2000:]
    assert "MODEL.MODEL_ARCH: 'subprocess.getoutput' is a dotted import path in a config from a checkpoint" in dotted.stderr
    trusted = run_ednaml("test", "--ckpt_path", "dotted.ckpt", "--trust", cwd=tmp_path)
    assert trusted.returncode == 2 and "'subprocess.getoutput' is not a model: a dotted path must name a subclass of torch.nn" in trusted.stderr
    imports = run_ednaml("test", "--ckpt_path", "imports.ckpt", cwd=tmp_path)
    assert imports.returncode == 2 and "EXECUTION.IMPORTS" in imports.stderr and "--trust" in imports.stderr, imports.stderr[-2000:]
    assert not marker.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs-escape", "x" * 235, "two words"])
def test_a_name_that_would_leave_the_runs_root_stops_before_anything_is_written(tmp_path, name):
    work = tmp_path / "work"
    work.mkdir()
    for command in ("check", "fit"):
        result = run_ednaml(command, "--config", str(CONFIGS / "digits.yml"), "--SAVE.MODEL_CORE_NAME", name, cwd=work)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert "SAVE.MODEL_CORE_NAME:" in result.stderr and "is not a safe name" in result.stderr
    assert list(tmp_path.rglob("*")) == [work]  # nothing written anywhere


def test_secrets_given_three_ways_are_in_no_file_and_the_config_keeps_its_keys(tmp_path):
    secrets = {"env": "envsecret-7f3a9c1d", "flag": "flagsecret-2b8e4d6f", "url": "urlpass-9c1d7f3a"}
    env = {"WANDB_MODE": "offline", "SERVICE_TOKEN": secrets["env"], "MY_SERVICE_TOKEN": "test"}  # short: never masked
    result = run_ednaml("fit", "--config", str(CONFIGS / "digits.yml"), "--EXECUTION.EPOCHS", "1",
                        "--SERVICE.api_token", secrets["flag"], "--SERVICE.note", secrets["env"],
                        "--SERVICE.endpoint", f"https://user:{secrets['url']}@example.com/data", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = run_folders(tmp_path / "runs")
    for path in [p for p in run.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        for how, secret in secrets.items():
            assert secret.encode() not in data, (how, path)
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["EXECUTION"]["DATAREADER"]["CRAWLER_ARGS"]["test_fraction"] == 0.2  # keys as written
    assert recorded["SERVICE"] == {"api_token": "***", "note": "***", "endpoint": "https://***@example.com/data"}
    again = run_ednaml("reproduce", run.name, cwd=tmp_path, env=env)  # the recorded config still runs
    assert again.returncode == 0, again.stderr[-2000:]

