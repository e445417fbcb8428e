"""Fixtures and hooks shared by the tests; the plain helpers and constants they import live in helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _log_handlers_write_to_this_tests_stderr():
    """Lightning's log handler keeps the stderr of the moment it was imported; pytest swaps stderr per test."""
    import logging

    for name in [n for n in logging.root.manager.loggerDict if n.startswith("lightning")]:  # rank_zero's too
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.stream = sys.stderr  # not setStream: it flushes the old stream, which pytest may have closed


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    return tmp_path


@pytest.fixture(autouse=True)
def _registry_as_it_was():
    """Components and kinds a test registers or declares are gone after it (built-ins it happened to load first
    stay)."""
    from ednaml import kinds, registry

    saved = {kind: dict(found) for kind, found in registry._components.items()}
    declared = dict(kinds.KINDS)
    yield
    kinds.KINDS.clear()
    kinds.KINDS.update(declared)
    for kind in [k for k in registry._components if k not in declared]:
        del registry._components[kind]
    for kind, found in registry._components.items():
        for name in [
            n
            for n, obj in found.items()
            if n not in saved.get(kind, {}) and getattr(obj, "__module__", None) not in kinds.KINDS[kind].builtins
        ]:
            del found[name]
        found.update(saved.get(kind, {}))
