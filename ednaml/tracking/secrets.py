"""Secrets never reach a run folder, a checkpoint, a log or W&B: the values of secret-looking environment
variables, config keys and flags with secret-looking names, and credentials in URLs.

Masking replaces whole values, never keys and never short strings, so a recorded config keeps its shape:
a masked value reads `***`, and resuming or reproducing a run asks for it again.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

SECRET_NAME = re.compile(r"(_KEY|_TOKEN|_PASS)$|^(KEY|TOKEN)$|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|AUTH_?TOKEN|AUTHORIZATION|COOKIE",
                         re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<credentials>[^/@\s:]*:[^/@\s]*)@")
FLAG = re.compile(r"^(?P<flag>--?[\w.\[\]-]+)(?:=(?P<value>.*))?$", re.S)
MASK = "***"
SHORTEST = 8  # a shorter environment value (`test`, `1`) is too likely to occur by chance to be masked


def secret_name(name: Any) -> bool:
    """A key or flag whose last part looks secret (`api_key`, `WANDB_API_KEY`, `--db.password`)."""
    return isinstance(name, str) and _secret_string(name)


@functools.lru_cache(maxsize=4096)  # a config's keys recur in every checkpoint a run writes
def _secret_string(name: str) -> bool:
    return bool(SECRET_NAME.search(re.split(r"[.\[\]]+", name.strip("-[]"))[-1] or name))


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret, longest first (so overlaps mask fully)."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if secret_name(k) and len(v) >= SHORTEST}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    """Free text (a log line, a report): URL credentials and every secret value masked wherever they occur."""
    secrets = secret_values() if secrets is None else secrets
    for secret in secrets:
        text = text.replace(secret, MASK)
    return URL_CREDENTIALS.sub(rf"\g<scheme>{MASK}@", text)


def _flag(value: Any) -> re.Match[str] | None:
    """`value` read as a command-line flag (`--db.password`, `--db.password=...`); only a string that
    starts with `-` can be one, so no other string pays for the regular expression."""
    return FLAG.match(value) if isinstance(value, str) and value.startswith("-") else None


def _scrub_string(value: str, secrets: list[str]) -> str:
    if value in secrets:
        return MASK
    flag = _flag(value)
    if flag and flag["value"] and secret_name(flag["flag"]):  # --db.password=...
        return f"{flag['flag']}={MASK}"
    return URL_CREDENTIALS.sub(rf"\g<scheme>{MASK}@", value) if "://" in value else value


def scrub(value: Any, secrets: list[str] | None = None, key: Any = None) -> Any:
    """`value` with its secrets masked, at any depth of dicts and lists; keys are never changed."""
    secrets = secret_values() if secrets is None else secrets
    if secret_name(key) and value not in (None, "", [], {}) and not isinstance(value, (bool, Mapping, list, tuple)):
        return MASK
    if isinstance(value, str):
        return _scrub_string(value, secrets)
    if isinstance(value, Mapping):  # a dict, or a config section (read-only)
        return {k: scrub(v, secrets, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str) and "=" not in value[0] \
            and secret_name(value[0]) and isinstance(value[1], str):
        return type(value)([value[0], MASK])  # an override pair: (key path, value)
    if isinstance(value, (list, tuple)):
        out, previous = [], None
        for item in value:  # a command line: the value after `--db.password` is a secret too
            flag = _flag(previous)
            hidden = flag is not None and flag["value"] is None and secret_name(flag["flag"]) and isinstance(item, str)
            out.append(MASK if hidden else scrub(item, secrets))
            previous = item
        return type(value)(out)
    return value


def masked_paths(config: Any, path: tuple = ()) -> list[tuple]:
    """The key paths of a recorded config whose values were masked (to be given again to resume a run)."""
    if isinstance(config, dict):
        return [p for k, v in config.items() for p in masked_paths(v, path + (k,))]
    if isinstance(config, list):
        return [p for i, v in enumerate(config) for p in masked_paths(v, path + (i,))]
    return [path] if isinstance(config, str) and MASK in config else []


class ScrubFilter(logging.Filter):
    """Masks secrets in log records before a handler writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets = secret_values()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub_text(record.getMessage(), self.secrets)
        record.args = ()
        return True
