"""One masking rule for every secret form, wherever a value is recorded or printed: a Hydra override and a
mapping on the command line, W&B notes, a token-only URL, a password holding `@`, a sweep storage's URL in
error text and `API_KEY = "..."` in the recorded git diff. Each test reads the bytes that were written."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from helpers import CONFIGS, run_ednaml, run_folders

from ednaml.tracking.run_folder import RunFolder
from ednaml.tracking.secrets import MASK, ScrubFilter, scrub, scrub_text

HYDRA = "hydrasecret-1a2b3c4d"
MAPPING = "mapsecret-4d5e6f7a"
TOKEN = "tokensecret-7a8b9c0d"
AT_PASSWORD = "p@ss-atsecret-5e6f"
ENVIRONMENT = "envsecret-0e1f2a3b"
LITERAL = "diffsecret-9c8b7a6d"
STORAGE_PASSWORD = "dbsecret-3c4d5e6f"

COMMAND_LINE = [
    "fit",
    "--config",
    "c.yml",
    f"SERVICE.api_key={HYDRA}",
    "--SERVICE",
    f"{{password: {MAPPING}, host: db}}",
    "--SERVICE.url",
    f"https://{TOKEN}@git.example/org/repo",
    "--SERVICE.db",
    f"postgresql://u:{AT_PASSWORD}@db.example/x",
]
EVERY_SECRET = [HYDRA, MAPPING, TOKEN, AT_PASSWORD, "atsecret", ENVIRONMENT, LITERAL, STORAGE_PASSWORD]


def assert_no_secret(data: bytes | str, where: object) -> None:
    data = data.encode() if isinstance(data, str) else data
    for secret in EVERY_SECRET:
        assert secret.encode() not in data, (secret, where)


def every_file(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def digits_config(*overrides: tuple[str, str]) -> dict:
    from ednaml.api import EdnaML

    return EdnaML(str(CONFIGS / "digits.yml"), overrides=list(overrides)).config


# ---- the rule ----


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"SERVICE.api_key={HYDRA}", f"SERVICE.api_key={MASK}"),
        (f"{{password: {MAPPING}, host: db}}", f"{{password: {MASK}, host: db}}"),
        (f"clone https://{TOKEN}@git.example/org/repo", f"clone https://{MASK}@git.example/org/repo"),
        (f"postgresql://u:{AT_PASSWORD}@db.example/x", f"postgresql://{MASK}@db.example/x"),
        (f'+API_KEY = "{LITERAL}"\n', f'+API_KEY = "{MASK}"\n'),
        (f"+    db_password: str = '{LITERAL}'\n", f"+    db_password: str = '{MASK}'\n"),
        (f'{{"api_token": "{LITERAL}", "epochs": 3}}', f'{{"api_token": "{MASK}", "epochs": 3}}'),
        (f"Authorization: Bearer {TOKEN}", f"Authorization: {MASK}"),
        (f"note: password={MAPPING}", f"note: password={MASK}"),
        # only the secret goes: names that merely contain `token` or `key`, code and paths with `@` stay
        (
            f"token_count: 3, keys: [a, b], api_key={HYDRA}, test_fraction=0.2",
            f"token_count: 3, keys: [a, b], api_key={MASK}, test_fraction=0.2",
        ),
        (
            f'API_KEY = os.environ["API_KEY"]\n+API_KEY = "{LITERAL}"',
            f'API_KEY = os.environ["API_KEY"]\n+API_KEY = "{MASK}"',
        ),
        (f"https://host.example/a@b and https://{TOKEN}@host/x", f"https://host.example/a@b and https://{MASK}@host/x"),
        (f"password: null, api_key: ***, secret={MAPPING}", f"password: null, api_key: ***, secret={MASK}"),
        (f"db_password: [{MAPPING}, {HYDRA}]", f"db_password: [{MASK}]"),
        (
            f"ednaml fit --SERVICE.api_token {HYDRA} --EXECUTION.EPOCHS 3 --trust",
            f"ednaml fit --SERVICE.api_token {MASK} --EXECUTION.EPOCHS 3 --trust",
        ),
        (
            f"+aws_secret_access_key = {LITERAL}\n+TOKEN = read_token()\n",
            f"+aws_secret_access_key = {MASK}\n+TOKEN = read_token()\n",
        ),
    ],
)
def test_a_value_given_to_a_secret_name_or_a_url_credential_is_masked_in_text_and_nothing_else(text, expected):
    assert scrub_text(text, []) == expected


def test_a_recorded_command_line_masks_hydra_overrides_mappings_and_urls():
    recorded = scrub(COMMAND_LINE, [])
    assert recorded[3] == f"SERVICE.api_key={MASK}" and recorded[5] == f"{{password: {MASK}, host: db}}"
    assert recorded[:3] == COMMAND_LINE[:3] and recorded[4] == "--SERVICE"
    assert_no_secret(repr(recorded), "command line")


def test_an_environment_secret_inside_a_longer_value_is_masked(monkeypatch):
    monkeypatch.setenv("SERVICE_TOKEN", ENVIRONMENT)
    assert scrub({"LOGGING": {"WANDB_NOTES": f"trained with {ENVIRONMENT} against https://{TOKEN}@host/x"}}) == {
        "LOGGING": {"WANDB_NOTES": f"trained with {MASK} against https://{MASK}@host/x"}
    }


# ---- the writers ----


def test_provenance_and_the_git_diff_keep_no_secret(tmp_path):
    repo = tmp_path / "code"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    (repo / "settings.py").write_text("API_KEY = None\n")
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "settings.py"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], cwd=repo, check=True)
    (repo / "settings.py").write_text(f'API_KEY = "{LITERAL}"\n')
    from ednaml.tracking.provenance import git_state

    state, diff = git_state(repo)
    assert state["dirty"] and LITERAL in diff
    run = RunFolder.create(tmp_path / "runs", digits_config())
    run.write_text("git.diff", diff)
    run.write_json(
        "provenance.json",
        {
            "command": ["ednaml", *COMMAND_LINE],
            "overrides": [("SERVICE.api_key", HYDRA), ("SERVICE", f"{{password: {MAPPING}}}")],
            "git": state,
        },
    )
    assert f'+API_KEY = "{MASK}"' in (run.path / "git.diff").read_text()
    for path in every_file(run.path):
        assert_no_secret(path.read_bytes(), path)


def test_a_checkpoints_config_and_provenance_keep_no_secret(tmp_path):
    import torch

    record = {
        "config": scrub({"SERVICE": {"url": f"https://{TOKEN}@host/x", "db": f"mysql://u:{AT_PASSWORD}@h/d"}}, []),
        "provenance": scrub({"command": COMMAND_LINE}, []),
    }
    torch.save({"ednaml": record}, tmp_path / "last.ckpt")
    assert_no_secret((tmp_path / "last.ckpt").read_bytes(), "checkpoint")


def test_a_tokenizers_vocabulary_is_written_as_it_is(tmp_path):
    vocabulary = '{"model": {"vocab": {"[PAD]": 0, "key": 5, "token": 6, "password": 7}}}'
    run = RunFolder.create(tmp_path / "runs", digits_config())
    run.write_data("tokenizer.json", vocabulary)
    assert (run.path / "tokenizer.json").read_text() == vocabulary


def test_a_logged_exceptions_message_and_traceback_keep_no_secret(tmp_path):
    handler = logging.FileHandler(tmp_path / "log.txt", encoding="utf-8")
    handler.addFilter(ScrubFilter())
    logger = logging.getLogger("ednaml.test_trust_secrets")
    logger.addHandler(handler)
    try:
        raise ConnectionError(f"cannot reach postgresql://u:{AT_PASSWORD}@db.example/x with password={MAPPING}")
    except ConnectionError:
        logger.exception("storage failed for https://%s@host/x", TOKEN)
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / "log.txt").read_text()
    assert "ConnectionError: cannot reach postgresql://***@db.example/x" in text
    assert_no_secret(text, "log.txt")


def test_wandb_notes_keep_no_secret(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from ednaml.adapters.loggers import wandb_logger

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("SERVICE_TOKEN", ENVIRONMENT)
    monkeypatch.delenv("WANDB_NOTES", raising=False)
    notes = f"data from https://{TOKEN}@host/x, key {ENVIRONMENT}, db mysql://u:{AT_PASSWORD}@h/d"
    config = digits_config(("LOGGING.WANDB_NOTES", notes))
    run = RunFolder.create(tmp_path / "runs", config)
    logger, _ = wandb_logger(run, config, {"command": COMMAND_LINE})
    assert logger.experiment.notes == f"data from https://{MASK}@host/x, key {MASK}, db mysql://{MASK}@h/d"
    import wandb

    wandb.finish()
    files = every_file(run.path / "wandb")
    assert any(p.suffix == ".wandb" for p in files)
    for path in files:
        assert_no_secret(path.read_bytes(), path)


# ---- what is printed ----


def test_the_commands_error_output_keeps_no_secret(capsys):
    from ednaml.cli import main

    assert main(["fit", "--config", str(CONFIGS / "digits.yml"), f"https://{TOKEN}@host/x"]) == 2
    assert main(["fit", "--config", str(CONFIGS / "digits.yml"), "--EXECUTION.EPOCHS", f"{{password: {MAPPING}}}"]) == 2
    out, err = capsys.readouterr()
    assert "unexpected argument 'https://***@host/x'" in err and "EXECUTION.EPOCHS" in err
    assert_no_secret(out + err, "stderr")


def test_a_sweep_storage_that_cannot_be_opened_is_named_without_its_credentials(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from ednaml.errors import UsageError
    from ednaml.sweeps.space import read_space
    from ednaml.sweeps.study import Sweep
    from ednaml.tracking.trial import shown_storage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yml").write_text("SWEEP: {OPTIMIZER.0.BASE_LR: {float: [0.001, 0.1]}}\n")
    for address in (
        f"nosuchdb://u:{AT_PASSWORD}@db.example/optuna",
        f"nosuchdb://{TOKEN}@db.example/optuna",
        f"postgresql://ednaml:{STORAGE_PASSWORD}@db.example/optuna?sslpassword={MAPPING}",
    ):
        assert shown_storage(address).startswith(("nosuchdb://***@db.example", "postgresql://***@db.example")), address
        sweep = Sweep("s", read_space(tmp_path / "space.yml"), [str(CONFIGS / "digits.yml")], [], [], address)
        with pytest.raises(UsageError) as stopped:
            sweep.open()
        assert_no_secret(str(stopped.value), address)
    error_text = (
        f"(psycopg2.OperationalError) could not connect to postgresql://ednaml:{AT_PASSWORD}@db.example/optuna\n"
        "(Background on this error at: https://sqlalche.me/e/20/e3q8)"
    )
    assert scrub_text(error_text, []).startswith(
        "(psycopg2.OperationalError) could not connect to postgresql://***@db.example/optuna"
    )


# ---- end to end ----


@pytest.mark.e2e
def test_a_fit_given_every_secret_form_records_none_of_them(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    (tmp_path / "settings.py").write_text("API_KEY = None\n")
    for command in (["init", "-q"], ["add", "settings.py"], ["commit", "-q", "-m", "x"]):
        subprocess.run(git + command, cwd=tmp_path, check=True)
    (tmp_path / "settings.py").write_text(f'API_KEY = "{LITERAL}"\n')  # the run's git diff
    env = {"WANDB_MODE": "offline", "SERVICE_TOKEN": ENVIRONMENT}
    (tmp_path / "services.yml").write_text("SERVICE: {}\nSERVICE2: {}\n")  # custom sections, set in a file
    result = run_ednaml(
        "fit",
        "--config",
        str(CONFIGS / "digits.yml"),
        "--config",
        "services.yml",
        "--EXECUTION.EPOCHS",
        "1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "2",
        "--trainer.limit_test_batches",
        "2",
        f"SERVICE.api_key={HYDRA}",
        "--SERVICE2",
        f"{{password: {MAPPING}}}",
        "--SERVICE.url",
        f"https://{TOKEN}@git.example/org/repo",
        "--SERVICE.db",
        f"postgresql://u:{AT_PASSWORD}@db/x",
        "--LOGGING.WANDB_NOTES",
        f"see https://{TOKEN}@host/x with {ENVIRONMENT}",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = run_folders(tmp_path / "runs")
    files = every_file(run)
    names = {p.name for p in files}
    assert {"provenance.json", "git.diff", "log.txt", "report.html", "last.ckpt"} <= names and any(
        n.endswith(".wandb") for n in names
    )
    for path in files:
        assert_no_secret(path.read_bytes(), path)
    assert_no_secret(result.stdout + result.stderr, "output")
    assert f'+API_KEY = "{MASK}"' in (run / "git.diff").read_text()


def test_the_help_is_printed_as_written(capsys):
    from ednaml.cli import main

    assert main(["--help"]) == 0 and main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.count("SECTION.KEY=VALUE") == 2 and MASK not in out


def test_everything_under_a_secret_name_is_masked_however_deep_and_its_keys_kept():
    recorded = scrub(
        {
            "db_password": [MAPPING],
            "credentials": {"user": "alice-the-user", "pw": [LITERAL, 7]},
            "epochs": 3,
            "api_key": None,
        },
        [],
    )
    assert recorded == {
        "db_password": [MASK],
        "credentials": {"user": MASK, "pw": [MASK, MASK]},
        "epochs": 3,
        "api_key": None,
    }
