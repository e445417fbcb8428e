"""Secrets never reach a run folder, a checkpoint, a log, an error message or W&B: the values of secret-looking
environment variables, config keys and flags with secret-looking names, values given to such names in text
(`api_key=...`, `{password: ...}`, `API_KEY = "..."`), and credentials in URLs.

One rule, `scrub_text`, masks a string wherever it is recorded or printed; `scrub` applies it to every string
of a config, a record or a command line, and masks whole values under secret-looking keys. Masking replaces
values, never keys and never short strings, so a recorded config keeps its shape: a masked value reads `***`,
and resuming or reproducing a run asks for it again.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

SECRET_NAME = re.compile(
    r"(_KEY|_TOKEN|_PASS)$|^(KEY|TOKEN)$|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|AUTH_?TOKEN|AUTHORIZATION|COOKIE",
    re.IGNORECASE,
)
# scheme://USERINFO@host, USERINFO being `user:password` (the password may hold `/` or `@`) or a token alone: up
# to the authority's last `@`, so that `u:p@ss@host` and `https://TOKEN@host/x` keep nothing of it.
URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)"
    r"(?P<credentials>[^\s/?#@:\"'<>]*:[^\s\"'<>]*?|[^\s/?#\"'<>]+?)"
    r"@(?![^\s/?#\"'<>]*@)"
)
# NAME=VALUE, NAME: VALUE, "NAME": "VALUE", --NAME=VALUE, NAME = "VALUE", NAME: type = "VALUE": a name and what
# separates it from its value, in a command line, YAML or JSON text, a URL's query, a log line or source code.
ASSIGNMENT = re.compile(
    r"(?<![\w.\[\]])(?P<name>[A-Za-z_][\w.\[\]-]*)[\"']?"
    r"(?P<sep>[ \t]*:[ \t]*[A-Za-z_][\w\[\]., |]*?[ \t]*=[ \t]*(?=[\"'])|[ \t]*:[ \t]*|=[ \t]*|[ \t]+=[ \t]*)"
)
FLOW = re.compile(r"\[[^\[\]\n]*\]|\{[^{}\n]*\}")
QUOTED = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'")
UNQUOTED = re.compile(r"(?:(?:Bearer|Basic|Token)[ \t]+)?[^\s,;&}\])\"'<>]+", re.IGNORECASE)
NOT_A_VALUE = {"None", "null", "Null", "NULL", "~", "true", "false", "True", "False"}
FLAG = re.compile(r"^(?P<flag>--?[\w.\[\]-]+)(?:=(?P<value>.*))?$", re.S)
FLAG_TEXT = re.compile(r"(?<!\S)--?(?P<name>[A-Za-z_][\w.\[\]-]*)[ \t]+(?P<value>[^\s\-\"'][^\s]*)")
# After ` = ` (source code): a literal token (a key pasted in), not an expression (`os.environ["KEY"]`, `read()`).
LITERAL = re.compile(r"[A-Za-z0-9+/_\-]{8,}(?![\w.(\[])")
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
    """Any text (a recorded string, a log line, an error message, a diff): every secret environment value, every
    value given to a secret-looking name and URL credentials masked, wherever they occur."""
    secrets = secret_values() if secrets is None else secrets
    for secret in secrets:
        text = text.replace(secret, MASK)
    if "=" in text or ":" in text:
        text = _mask_assignments(text)
    if "-" in text:  # --db.password VALUE in a command line written out as text
        text = FLAG_TEXT.sub(
            lambda m: (
                m[0][: m.start("value") - m.start()] + MASK if secret_name(m["name"]) and m["value"] != MASK else m[0]
            ),
            text,
        )
    return URL_CREDENTIALS.sub(rf"\g<scheme>{MASK}@", text) if "://" in text else text


def _mask_assignments(text: str) -> str:
    """Each value given to a secret-looking name masked. Only a name and its separator are matched, so a value
    is read for names of its own (`note: password=...`)."""
    kept, done = [], 0
    for match in ASSIGNMENT.finditer(text):
        if match.start() < done or not secret_name(match["name"]):
            continue
        if span := _value_after(text, match):
            kept += [text[done : span[0]], MASK]
            done = span[1]
    return "".join(kept) + text[done:] if kept else text


def _value_after(text: str, match: re.Match[str]) -> tuple[int, int] | None:
    """Where the value after `NAME=` starts and ends (a quoted one without its quotes). After ` = ` (source
    code) only a string literal is a value: `API_KEY = os.environ[...]` holds no secret."""
    if quoted := QUOTED.match(text, match.end()):
        start, end = quoted.start() + 1, quoted.end() - 1
    elif flow := FLOW.match(text, match.end()):  # [a, b] or {k: v}: all of it
        start, end = flow.start() + 1, flow.end() - 1
    elif match["sep"][:1] in " \t" and match["sep"].strip(" \t") == "=":
        if not (literal := LITERAL.match(text, match.end())):
            return None
        start, end = literal.span()
    elif unquoted := UNQUOTED.match(text, match.end()):
        start, end = unquoted.span()
    else:
        return None
    return None if text[start:end] in NOT_A_VALUE | {"", MASK} else (start, end)


def _flag(value: Any) -> re.Match[str] | None:
    """`value` read as a command-line flag (`--db.password`, `--db.password=...`); only a string that
    starts with `-` can be one, so no other string pays for the regular expression."""
    return FLAG.match(value) if isinstance(value, str) and value.startswith("-") else None


def scrub(value: Any, secrets: list[str] | None = None, key: Any = None) -> Any:
    """`value` with its secrets masked, at any depth of dicts and lists; keys are never changed."""
    secrets = secret_values() if secrets is None else secrets
    if secret_name(key) and isinstance(value, (Mapping, list, tuple)):  # everything under a secret's name
        return _all_masked(value)
    if secret_name(key) and value not in (None, "", [], {}) and not isinstance(value, bool):
        return MASK
    if isinstance(value, str):
        return MASK if value in secrets else scrub_text(value, secrets)
    if isinstance(value, Mapping):  # a dict, or a config section (read-only)
        return {k: scrub(v, secrets, k) for k, v in value.items()}
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and isinstance(value[0], str)
        and "=" not in value[0]
        and secret_name(value[0])
        and isinstance(value[1], str)
    ):
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


def _all_masked(value: Any) -> Any:
    """Every value at any depth masked (keys kept; null and booleans, which hold nothing, kept)."""
    if isinstance(value, Mapping):
        return {k: _all_masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_all_masked(v) for v in value)
    return value if value is None or isinstance(value, bool) or value == "" else MASK


def masked_paths(config: Any, path: tuple = ()) -> list[tuple]:
    """The key paths of a recorded config whose values were masked (to be given again to resume a run)."""
    if isinstance(config, dict):
        return [p for k, v in config.items() for p in masked_paths(v, path + (k,))]
    if isinstance(config, list):
        return [p for i, v in enumerate(config) for p in masked_paths(v, path + (i,))]
    return [path] if isinstance(config, str) and MASK in config else []


class ScrubFilter(logging.Filter):
    """Masks secrets in log records, their tracebacks included, before a handler writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets = secret_values()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub_text(record.getMessage(), self.secrets)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub_text(logging.Formatter().formatException(record.exc_info), self.secrets)
        return True
