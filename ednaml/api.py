"""The Python API: `EdnaML("cfg.yml", {"EXECUTION.EPOCHS": 3}).fit()` does what `ednaml fit` does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ednaml.config import ConfigError, Problem, resolve
from ednaml.config.load import deep_merge, normalize_legacy


class BuildError(Exception):
    """A config that validated but whose data or components could not be built (missing folder, ...)."""


def prepare(
    files: Sequence[str | os.PathLike] = (),
    overrides: Iterable[tuple[str, Any]] = (),
    imports: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve, import the user's components, validate: the config a run will use, or a ConfigError."""
    from ednaml import registry
    from ednaml.config.validate import validate

    config = resolve(files, list(overrides), dict(base) if base else None)
    search_dirs = [Path(f).parent for f in reversed(files)]
    sources = list(imports) + list(config["EXECUTION"].get("IMPORTS") or []) if isinstance(config.get("EXECUTION"), dict) else list(imports)
    try:
        registry.import_sources(sources, search_dirs)
    except (ImportError, FileNotFoundError, SyntaxError) as err:
        raise ConfigError([Problem(("EXECUTION", "IMPORTS"), f"cannot import: {err}")]) from None
    validate(config, source=", ".join(map(str, files)) or None)
    return config


def config_from_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The resolved config a checkpoint carries."""
    import torch

    if not Path(path).is_file():
        raise ConfigError(f"ckpt_path: {str(path)!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise ConfigError(f"ckpt_path: {str(path)!r} is not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or "ednaml" not in checkpoint:
        raise ConfigError(f"ckpt_path: {str(path)!r} was not written by EdnaML (it carries no config); pass --config too")
    return checkpoint["ednaml"]["config"]


class EdnaML:
    """One experiment from config files (or mappings) and overrides by dotted key path."""

    def __init__(
        self,
        *configs: str | os.PathLike | Mapping[str, Any],
        overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        imports: Sequence[str] = (),
        ckpt_path: str | None = None,
    ):
        files = [c for c in configs if not isinstance(c, Mapping)]
        base: dict[str, Any] = {}
        for c in configs:
            if isinstance(c, Mapping):
                base = deep_merge(normalize_legacy(base), normalize_legacy(dict(c)))
        if ckpt_path and not configs:
            base = config_from_checkpoint(ckpt_path)
        pairs = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
        if ckpt_path:
            pairs.append(("ckpt_path", str(ckpt_path)))
        self.config = prepare(files, pairs, imports, base or None)
        self.resume = None
        self.invocation = {"argv": None, "overrides": [[k, v] for k, v in pairs]}

    def _run(self, stage: str) -> dict[str, Any]:
        from ednaml.adapters.runner import run_stage

        return run_stage(stage, self.config, self.config["ckpt_path"], self.resume, self.invocation)

    def fit(self) -> dict[str, Any]:
        """Train (with a validation pass first unless SKIPEVAL), then test; returns the run's summary."""
        return self._run("fit")

    def validate(self) -> dict[str, Any]:
        return self._run("validate")

    def test(self) -> dict[str, Any]:
        return self._run("test")

    def predict(self) -> dict[str, Any]:
        return self._run("predict")
