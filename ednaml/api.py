"""The Python API: `EdnaML("cfg.yml", {"EXECUTION.EPOCHS": 3}).fit()` does what `ednaml fit` does."""

from __future__ import annotations

import copy
import functools
import os
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ednaml.config import ConfigError, Problem, resolve
from ednaml.config.errors import locate
from ednaml.config.load import deep_merge, normalize_legacy


# What may change when a run is resumed: where it runs, not what it computes.
RESUMABLE_CHANGES = {"ckpt_path", "trainer.devices", "trainer.accelerator", "trainer.strategy", "trainer.num_nodes",
                     "trainer.enable_progress_bar"}


class BuildError(Exception):
    """A config that validated but whose data or components could not be built (missing folder, ...)."""


def prepare(
    files: Sequence[str | os.PathLike] = (),
    overrides: Iterable[tuple[str, Any]] = (),
    imports: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
    origins: dict[tuple, str] | None = None,
    base_label: str = "the given config",
    trusted: bool = True,
) -> dict[str, Any]:
    """Resolve, import the user's components, validate: the config a run will use, or a ConfigError.
    `origins`, where given, is filled with the file or flag each key path came from. A config that is not
    `trusted` (one a checkpoint or run folder carries: data, not code) may not import files or modules."""
    from ednaml import registry
    from ednaml.config.validate import validate

    origins = {} if origins is None else origins
    config = resolve(files, list(overrides), dict(base) if base else None, origins, base_label)
    search_dirs = [Path(f).parent for f in reversed(files)]
    carried = list(config["EXECUTION"].get("IMPORTS") or []) if isinstance(config.get("EXECUTION"), dict) else []
    if carried and not trusted:
        raise ConfigError([Problem(("EXECUTION", "IMPORTS"), f"{carried} come from {base_label}, which is data, not code: "
                                   "EdnaML imports them only with --trust (read them first)")])
    sources = list(imports) + carried
    try:
        imported = registry.import_sources(sources, search_dirs)
    except (ImportError, FileNotFoundError, SyntaxError) as err:
        raise ConfigError([Problem(("EXECUTION", "IMPORTS"), f"cannot import: {err}")]) from None
    validate(config, source=", ".join(map(str, files)) or None, origins=origins, trusted=trusted)
    if config.get("ckpt_path"):  # readable, and EdnaML's, before anything is built
        try:
            read_checkpoint(config["ckpt_path"])
        except ConfigError as err:
            problems = [Problem(("ckpt_path",), p.message.removeprefix("ckpt_path: ")) for p in err.problems]
            raise ConfigError(locate(problems, origins), ", ".join(map(str, files)) or None) from None
    if isinstance(config.get("EXECUTION"), dict):  # recorded as found, so the run can be reproduced from anywhere
        config["EXECUTION"]["IMPORTS"] = list(dict.fromkeys(imported))
    return config


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """What an EdnaML checkpoint carries (config, labels, provenance); a clear error for anything else."""
    if not Path(path).is_file():
        raise ConfigError(f"ckpt_path: {str(path)!r} does not exist")
    return copy.deepcopy(_read_checkpoint(str(path), Path(path).stat().st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _read_checkpoint(path: str, mtime_ns: int) -> dict[str, Any]:
    """Read once per file version: validation, the config and the run's data state all need it."""
    import torch

    if not zipfile.is_zipfile(path):
        raise ConfigError(f"ckpt_path: {str(path)!r} is not a checkpoint (corrupted, truncated or another kind of file)")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # every member against its CRC: flipped bytes are found, not loaded
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        damaged = str(err)
    if damaged:
        raise ConfigError(f"ckpt_path: {str(path)!r} is corrupted ({damaged} fails its checksum); use another checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"ckpt_path: {str(path)!r} is not a readable checkpoint (corrupted or not a torch file: {first})") from None
    if not isinstance(checkpoint, dict) or "ednaml" not in checkpoint or "state_dict" not in checkpoint:
        raise ConfigError(f"ckpt_path: {str(path)!r} was not written by EdnaML (it carries no EdnaML config and model)")
    return checkpoint["ednaml"]


def config_from_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The resolved config a checkpoint carries."""
    return read_checkpoint(path)["config"]


def checkpoint_mismatch(path: str | os.PathLike, config: dict[str, Any]) -> None:
    """A checkpoint must hold the model (and learnable losses) that `config` builds; say which keys differ."""
    from ednaml.tracking.browse import flatten

    saved = read_checkpoint(path)["config"]
    parts = {"MODEL": lambda c: {k: v for k, v in c["MODEL"].items() if k != "WEIGHTS"},
             "LOSS": lambda c: [{k: e[k] for k in ("NAME", "LOSSES", "KWARGS")} for e in c["LOSS"]]}
    differing = []
    for section, pick in parts.items():
        a, b = flatten(pick(saved), (section,)), flatten(pick(config), (section,))
        differing += [k for k in list(a) + [k for k in b if k not in a] if a.get(k) != b.get(k)]
    if differing:
        shown = "; ".join(differing[:8])
        raise ConfigError(f"ckpt_path: {str(path)!r} holds a different model than this config ({shown}); "
                          "use the checkpoint's own config (omit --config) or a matching checkpoint")


class EdnaML:
    """One experiment from config files (or mappings) and overrides by dotted key path."""

    def __init__(
        self,
        *configs: str | os.PathLike | Mapping[str, Any],
        overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        imports: Sequence[str] = (),
        ckpt_path: str | None = None,
        trust: bool | None = None,
    ):
        """`trust`: whether the config may import code (EXECUTION.IMPORTS, dotted component paths). By default
        a config from files or mappings may, the config a checkpoint carries (`ckpt_path` alone) may not."""
        files = [c for c in configs if not isinstance(c, Mapping)]
        base: dict[str, Any] = {}
        for c in configs:
            if isinstance(c, Mapping):
                base = deep_merge(normalize_legacy(base), normalize_legacy(dict(c)))
        label = "the given config"
        if ckpt_path and not configs:
            base, label = config_from_checkpoint(ckpt_path), f"the config in {ckpt_path}"
        pairs = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
        if ckpt_path:
            pairs.append(("ckpt_path", str(ckpt_path)))
        self.origins: dict[tuple, str] = {}
        trusted = trust if trust is not None else not (ckpt_path and not configs)
        self.config = prepare(files, pairs, imports, base or None, self.origins, label, trusted)
        if ckpt_path and configs:
            checkpoint_mismatch(ckpt_path, self.config)
        self.resume = None
        self.invocation = {"argv": None, "overrides": [[k, v] for k, v in pairs]}

    @classmethod
    def resume(
        cls,
        run: str | os.PathLike,
        *configs: str | os.PathLike | Mapping[str, Any],
        overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        imports: Sequence[str] = (),
        root: str | os.PathLike = "runs",
        trust: bool = False,
    ) -> "EdnaML":
        """Continue an interrupted run in its own folder from its last checkpoint (`.fit()` runs it).

        A config given here must be the run's own: any difference except where it runs
        (trainer.devices, accelerator, strategy, num_nodes, progress bar) is refused, naming the keys.
        """
        from ednaml.config.errors import format_path
        from ednaml.config.load import get_path, set_path
        from ednaml.tracking.browse import flatten, read_run, resolve_run
        from ednaml.tracking.run_folder import RunFolder, load_yaml
        from ednaml.tracking.secrets import MASK, masked_paths

        path = resolve_run(str(run), root)
        if not (path / "checkpoints" / "last.ckpt").exists():
            raise ConfigError(f"run {path.name} has no checkpoint to resume from yet ({path / 'checkpoints' / 'last.ckpt'})")
        status = (read_run(path).summary or {}).get("status")
        if status == "finished":
            raise ConfigError(f"--resume {path.name}: the run finished; resuming would train and test it again. Start a new "
                              f"run from its config with `ednaml reproduce {path.name}`, or from its weights with --ckpt_path")
        saved = load_yaml(path / "config.yaml")
        experiment = cls(*(configs or (saved,)), overrides=overrides, imports=imports, trust=trust or bool(configs))
        masked = masked_paths(saved)  # secrets the run folder does not keep: given again, or the run cannot go on
        missing = [p for p in masked if MASK in str(get_path(experiment.config, p))]
        if missing:
            raise ConfigError([Problem(p, "held a secret, masked in the run folder: give it again to resume "
                                          f"(--{format_path(p)} VALUE)") for p in missing])
        for p in masked:
            set_path(saved, list(p), get_path(experiment.config, p), format_path(p))
        given, ran = flatten(experiment.config), flatten(saved)
        changed = [k for k in list(ran) + [k for k in given if k not in ran]
                   if given.get(k) != ran.get(k) and k not in RESUMABLE_CHANGES]
        if changed:
            shown = "; ".join(f"{k}: the run has {ran.get(k)!r}, given {given.get(k)!r}" for k in changed[:10])
            raise ConfigError(f"--resume {path.name}: the config differs from the run's ({shown}). Resume with the run's "
                              "own config (no --config), or start a new run with `ednaml fit`.")
        experiment.config = {**saved, "trainer": experiment.config["trainer"]}
        experiment.resume = RunFolder.open(path)
        return experiment

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


def reproduce(run: str | os.PathLike, root: str | os.PathLike = "runs", trust: bool = False) -> tuple[dict[str, Any], str]:
    """A new run from RUN's resolved config and seed; returns its summary and `ednaml diff` of the two.
    The run folder's config imports code only with `trust`."""
    from ednaml.tracking.browse import diff, format_diff, resolve_run, side
    from ednaml.tracking.run_folder import load_yaml

    path = resolve_run(str(run), root)
    experiment = EdnaML(load_yaml(path / "config.yaml"), trust=trust)
    summary = experiment.fit()
    return summary, format_diff(diff(side(str(path)), side(summary["run_dir"])))
