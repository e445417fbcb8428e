"""What `scrub` masks before anything is written: values under secret-looking keys, flags and the value
after them, URL credentials and the values of secret environment variables; nothing else changes."""

from __future__ import annotations

import pytest

from ednaml.tracking.secrets import MASK, scrub, scrub_text

TOKEN = "sk-live-0123456789abcdef"


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"db": {"password": "hunter22", "host": "db.local"}}, {"db": {"password": MASK, "host": "db.local"}}),
        ({"WANDB_API_KEY": 12345}, {"WANDB_API_KEY": MASK}),
        (["--db.password=hunter22", "--epochs=3"], ["--db.password=" + MASK, "--epochs=3"]),
        (["fit", "--db.password", "hunter22", "--epochs", "3"], ["fit", "--db.password", MASK, "--epochs", "3"]),
        (("--auth_token", "abc"), ("--auth_token", MASK)),
        ({"url": "https://user:pa55@host.example/data"}, {"url": f"https://{MASK}@host.example/data"}),
        ({"url": "https://host.example/a@b"}, {"url": "https://host.example/a@b"}),
        ({"note": TOKEN, "flag": "-x", "plain": "a://b"}, {"note": MASK, "flag": "-x", "plain": "a://b"}),
        ({"KEY": None, "token_count": 3, "keys": ["a", "b"]}, {"KEY": None, "token_count": 3, "keys": ["a", "b"]}),
        (
            {"storage_options": {"headers": {"Authorization": "Bearer abc", "Cookie": "id=1"}, "author": "me"}},
            {"storage_options": {"headers": {"Authorization": MASK, "Cookie": MASK}, "author": "me"}},
        ),
    ],
)
def test_scrub_masks_secrets_and_keeps_everything_else(value, expected):
    assert scrub(value, [TOKEN]) == expected


def test_scrub_reads_the_environment_when_given_no_secrets(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", TOKEN)
    assert scrub({"a": [TOKEN, "ok"]}) == {"a": [MASK, "ok"]}
    assert scrub_text(f"token {TOKEN} at https://me:pw@host/x") == f"token {MASK} at https://{MASK}@host/x"
