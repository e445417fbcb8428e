"""The Python API: `EdnaML("cfg.yml", {"EXECUTION.EPOCHS": 3}).fit()` does what `ednaml fit` does."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ednaml.checkpoints import check_restorable, checkpoint_mismatch, config_from_checkpoint, read_checkpoint
from ednaml.config import resolve
from ednaml.errors import ConfigError, Problem, locate

if TYPE_CHECKING:
    from ednaml.registry import Trust
    from ednaml.tracking.run_folder import RunFolder
from ednaml.config.load import as_recorded_now, config_warning, noted
from ednaml.config.schema import PLACEMENT_KEYS
from ednaml.migrate import default_loss_optimizers

# What may change when a run is resumed: where it runs, not what it computes.
RESUMABLE_CHANGES = {"ckpt_path", "trainer.default_root_dir", *PLACEMENT_KEYS, "trainer.enable_progress_bar"}


def prepare(
    files: Sequence[str | os.PathLike] = (),
    overrides: Iterable[tuple[str, Any]] = (),
    imports: Sequence[str] = (),
    base: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    origins: dict[tuple, str] | None = None,
    base_label: str = "the given config",
    trusted: bool = True,
    recorded: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """Resolve, import the user's components, validate: the config a run will use, or a ConfigError.
    `origins`, where given, is filled with the file or flag each key path came from. A config that is not
    `trusted` (one a checkpoint or run folder carries: data, not code) may not import files or modules,
    except those the user's own `imports` stand for: the same module, or a file with the content `recorded`
    (the run's provenance: each import -> its file's SHA-256)."""
    from ednaml import registry
    from ednaml.adapters.trainer import fill_machine_precision
    from ednaml.config.paths import anchor
    from ednaml.validation import path_keys, validate

    origins = {} if origins is None else origins
    config = resolve(files, list(overrides), base, origins, base_label)
    fill_machine_precision(config)
    anchor(config, [("EXECUTION", "IMPORTS")], origins, files, config_warning)  # relative to the file that set it
    carried = list(config["EXECUTION"].get("IMPORTS") or []) if isinstance(config.get("EXECUTION"), dict) else []
    trust = registry.Trust.given(trusted, origins)
    if not trust.of(("EXECUTION", "IMPORTS")):  # what the run recorded is data too: only a mapping of hashes is read
        carried = _not_given_again(carried, imports, recorded if isinstance(recorded, Mapping) else {})
    try:
        imported = registry.import_sources(imports)  # --import: the user's own, relative to the working directory
        imported += registry.import_sources(carried, trust.of(("EXECUTION", "IMPORTS")))
    except registry.RegistryError as err:
        raise ConfigError(
            [Problem(("EXECUTION", "IMPORTS"), str(err).replace("a checkpoint or run folder", base_label))]
        ) from None
    except (ImportError, FileNotFoundError, SyntaxError) as err:
        raise ConfigError([Problem(("EXECUTION", "IMPORTS"), f"cannot import: {err}")]) from None
    _runs_root_of(config, trust, base_label)
    default_loss_optimizers(config, config_warning)
    anchor(config, path_keys(config, trust), origins, files, config_warning)
    validate(config, source=", ".join(map(str, files)) or None, origins=origins, trusted=trust)
    if config.get("ckpt_path"):  # readable, and EdnaML's, before anything is built
        try:
            check_restorable(config["ckpt_path"])
        except ConfigError as err:
            problems = [Problem(("ckpt_path",), p.message.removeprefix("ckpt_path: ")) for p in err.problems]
            raise ConfigError(locate(problems, origins), ", ".join(map(str, files)) or None) from None
    if isinstance(config.get("EXECUTION"), dict):  # recorded as found, so the run can be reproduced from anywhere
        config["EXECUTION"]["IMPORTS"] = list(dict.fromkeys(imported))
    return config


def _not_given_again(carried: list[str], imports: Sequence[str], recorded: Mapping[str, str | None]) -> list[str]:
    """The carried IMPORTS that none of the user's own `imports` stands for: a module of the same name, or a
    file whose content is the one the run recorded. A file named like one the run imported but with other
    content is a ConfigError: the run's code is imported only as it was."""
    from ednaml.tracking.provenance import imported_files

    given = {Path(source).name: digest for source, digest in imported_files(list(imports)).items() if digest}
    left, problems = [], []
    for source in carried:
        wanted = recorded.get(source)
        if source in imports or (wanted is not None and wanted in given.values()):
            continue
        name = Path(source).name
        if name in given and wanted is not None:
            problems.append(
                Problem(
                    ("EXECUTION", "IMPORTS"),
                    f"--import {name}: its content (sha256 {given[name][:12]}) is not the "
                    f"{name} the run imported (sha256 {wanted[:12]}); EdnaML imports a run's "
                    "code only as it was (or with --trust)",
                )
            )
        left.append(source)
    if problems:
        raise ConfigError(problems)
    return left


def _same_code(imported: list[str], recorded: Mapping[str, str | None]) -> bool:
    """Whether the sources just imported are the code a run recorded: the same modules, and files with the
    same contents (wherever they are now)."""
    from ednaml.tracking.provenance import imported_files

    now = imported_files(imported)
    return sorted(map(str, now.values())) == sorted(map(str, recorded.values())) and {
        k for k, v in now.items() if v is None
    } == {k for k, v in recorded.items() if v is None}


def _runs_root_of(config: dict[str, Any], trust: Trust, source: str) -> None:
    """A `trainer.default_root_dir` outside the working directory is followed only where the config may name
    code: a checkpoint's or run folder's would choose where this machine writes, so its runs go under ./runs."""
    from ednaml.adapters.trainer import leaves

    trainer = config.get("trainer")
    root = trainer.get("default_root_dir") if isinstance(trainer, dict) else None
    if isinstance(root, str) and leaves(root) and not trust.of(("trainer", "default_root_dir")):
        config_warning(
            f"trainer.default_root_dir {root!r} comes from {source}, which is data: not followed, this run goes "
            "under ./runs (--trainer.default_root_dir DIR chooses, or --trust)"
        )
        del trainer["default_root_dir"]


def prepare_noted(*args: Any, **kwargs: Any) -> tuple[dict[str, Any], list[str]]:
    """prepare(), and the config notes it made on the way: shown as warnings, and recorded in provenance.json."""
    with noted() as notes:
        config = prepare(*args, **kwargs)
    return config, notes


class EdnaML:
    """One experiment from config files (or mappings) and overrides by dotted key path."""

    def __init__(
        self,
        *configs: str | os.PathLike | Mapping[str, Any],
        overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        imports: Sequence[str] = (),
        ckpt_path: str | None = None,
        trust: bool | None = None,
        recorded_imports: Mapping[str, str | None] | None = None,
    ):
        """`trust`: whether the config may import code (EXECUTION.IMPORTS, dotted component paths). By default
        a config from files or mappings may, the config a checkpoint carries (`ckpt_path` alone) may not; a
        file in `imports` with the content its run recorded (`recorded_imports`, a checkpoint's own by
        default) stands for that run's import of it."""
        files = [c for c in configs if not isinstance(c, Mapping)]
        base: list[Mapping[str, Any]] = [c for c in configs if isinstance(c, Mapping)]  # below the files, in order
        label, recorded = "the given config", recorded_imports
        if ckpt_path and not configs:
            base, label = [config_from_checkpoint(ckpt_path)], f"the config in {ckpt_path}"
            provenance = read_checkpoint(ckpt_path).get("provenance")
            recorded = provenance.get("imports") if isinstance(provenance, Mapping) else None
        pairs = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
        if ckpt_path:
            pairs.append(("ckpt_path", str(ckpt_path)))
        self.origins: dict[tuple, str] = {}
        trusted = trust if trust is not None else not (ckpt_path and not configs)
        self.config, notes = prepare_noted(files, pairs, imports, base or None, self.origins, label, trusted, recorded)
        from ednaml.registry import Trust

        self.trust = Trust.given(trusted, self.origins)  # what the config may name when the run builds it
        if ckpt_path and configs:
            checkpoint_mismatch(ckpt_path, self.config)
        self.resumed: RunFolder | None = None  # the run folder `EdnaML.resume` continues
        self.invocation = {"argv": None, "overrides": [[k, v] for k, v in pairs], "config_notes": notes}
        from ednaml.adapters.given import Given

        self.given = Given()

    # ---- components handed in from Python, used instead of building the ones the config names ----

    def add_model(self, model: Any) -> EdnaML:
        """Train (or evaluate) this model instance instead of building MODEL. It must give what the step logic
        expects (logits, or (logits, features); a dict per output for multi-output step logic)."""
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"add_model takes a torch.nn.Module, not {type(model).__name__}")
        self.given.model = model
        return self

    def add_crawler(self, crawler: Any) -> EdnaML:
        """Find the samples with this crawler instance (an ednaml.data.base.Crawler) instead of the reader's."""
        from ednaml.data.base import Crawler

        if not isinstance(crawler, Crawler):
            raise TypeError(f"add_crawler takes an ednaml.data.base.Crawler, not {type(crawler).__name__}")
        self.given.crawler = crawler
        return self

    def add_loss(self, name: str, loss: Any) -> EdnaML:
        """Use this loss module for the LOSS entry NAMEd `name`, instead of its LOSSES."""
        import torch

        if not isinstance(loss, torch.nn.Module):
            raise TypeError(f"add_loss takes a torch.nn.Module, not {type(loss).__name__}")
        names = [entry["NAME"] for entry in self.config["LOSS"]]
        if name not in names:
            raise ConfigError([Problem(("LOSS",), f"add_loss: {name!r} is not a LOSS entry NAME; they are {names}")])
        self.given.losses[name] = loss
        return self

    @classmethod
    def resume(
        cls,
        run: str | os.PathLike,
        *configs: str | os.PathLike | Mapping[str, Any],
        overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        imports: Sequence[str] = (),
        root: str | os.PathLike = "runs",
        trust: bool = False,
    ) -> EdnaML:
        """Continue an interrupted run in its own folder from its last checkpoint (`.fit()` runs it).

        A config given here must be the run's own: any difference except where it runs
        (trainer.devices, accelerator, strategy, num_nodes, progress bar) is refused, naming the keys.
        """
        from ednaml.config.load import get_path, set_path
        from ednaml.errors import format_path
        from ednaml.tracking.browse import changes, flatten, read_run, resolve_run
        from ednaml.tracking.run_folder import RunFolder, load_yaml
        from ednaml.tracking.secrets import MASK, masked_paths

        path = resolve_run(str(run), root)
        folder = RunFolder.open(path)  # a link planted in the folder is refused before any file of it is read
        if not (path / "checkpoints" / "last.ckpt").exists():
            raise ConfigError(
                f"run {path.name} has no checkpoint to resume from yet ({path / 'checkpoints' / 'last.ckpt'})"
            )
        status = (read_run(path).summary or {}).get("status")
        saved = as_recorded_now(load_yaml(path / "config.yaml"))  # a run folder an earlier version wrote, too
        recorded = (read_run(path).provenance or {}).get("imports")
        experiment = cls(
            *(configs or (saved,)),
            overrides=overrides,
            imports=imports,
            trust=trust or bool(configs),
            recorded_imports=recorded if isinstance(recorded, dict) else None,
        )
        masked = masked_paths(saved)  # secrets the run folder does not keep: given again, or the run cannot go on
        missing = [p for p in masked if MASK in str(get_path(experiment.config, p))]
        if missing:
            raise ConfigError(
                [
                    Problem(
                        p,
                        f"held a secret, masked in the run folder: give it again to resume (--{format_path(p)} VALUE)",
                    )
                    for p in missing
                ]
            )
        for p in masked:
            set_path(saved, list(p), get_path(experiment.config, p), format_path(p))
        trained, horizon = saved["EXECUTION"]["EPOCHS"], experiment.config["EXECUTION"]["EPOCHS"]
        longer = isinstance(trained, int) and isinstance(horizon, int) and horizon > trained
        if status == "finished" and not longer:
            raise ConfigError(
                f"--resume {path.name}: the run finished its {trained} epochs; resuming would train and test it "
                f"again. Train it longer with --EXECUTION.EPOCHS N (more than {trained}), start a new run from its "
                f"config with `ednaml reproduce {path.name}`, or from its weights with --ckpt_path"
            )
        if longer:  # a continuation: the same run, trained to a later horizon (its schedule goes on as configured)
            saved["EXECUTION"]["EPOCHS"] = horizon
            if "max_epochs" in saved.get("trainer", {}):
                saved["trainer"]["max_epochs"] = horizon
        if isinstance(recorded, dict) and _same_code(experiment.config["EXECUTION"]["IMPORTS"], recorded):
            saved["EXECUTION"]["IMPORTS"] = experiment.config["EXECUTION"][
                "IMPORTS"
            ]  # the run's files, found elsewhere
        changed = [
            (key, had, now)
            for key, had, now in changes(flatten(saved), flatten(experiment.config))
            if key not in RESUMABLE_CHANGES
        ]
        if changed:
            shown = "; ".join(f"{key}: the run has {had!r}, given {now!r}" for key, had, now in changed[:10])
            raise ConfigError(
                f"--resume {path.name}: the config differs from the run's ({shown}). Resume with the run's "
                "own config (no --config), or start a new run with `ednaml fit`."
            )
        experiment.config = {**saved, "trainer": experiment.config["trainer"]}
        experiment.resumed = folder
        if longer:
            experiment.invocation["continued"] = {"EXECUTION.EPOCHS": [trained, horizon]}
        return experiment

    def run(self, stage: str, request: Any = None) -> dict[str, Any]:
        """Run `stage` (fit, validate, test or predict; a PredictRequest says what predict predicts on) and
        return the run's summary."""
        from ednaml.adapters.runner import run_stage

        try:
            return run_stage(
                stage,
                self.config,
                self.config["ckpt_path"],
                self.resumed,
                self.invocation,
                request,
                self.given,
                self.trust,
            )
        except (
            ConfigError
        ) as err:  # found while building (the first batch, a monitor): said with where each value came from
            raise ConfigError(locate(err.problems, self.origins), err.source) from err.__cause__

    def fit(self) -> dict[str, Any]:
        """Train (with a validation pass first unless SKIPEVAL), then test; returns the run's summary."""
        return self.run("fit")

    def validate(self) -> dict[str, Any]:
        return self.run("validate")

    def test(self) -> dict[str, Any]:
        return self.run("test")

    def predict(self, data: str | os.PathLike | None = None, output: str | os.PathLike | None = None) -> Any:
        """Without `data`: predictions for the test split in a new run folder; returns the run's summary.
        With `data` (an image, text or video file, or a folder of them; labels not needed): returns the
        records, one per input in input order, also written to `output` (.csv, .jsonl or .parquet) or to
        predictions.<DEPLOYMENT.OUTPUT_ARGS.format> in the run folder, with a manifest beside them."""
        from ednaml.adapters.predictions import PredictRequest

        request = PredictRequest(str(data) if data is not None else None, str(output) if output is not None else None)
        summary = self.run("predict", request)
        return request.records if data is not None else summary


def reproduce(
    run: str | os.PathLike, root: str | os.PathLike = "runs", trust: bool = False, imports: Sequence[str] = ()
) -> tuple[dict[str, Any], str]:
    """A new run from RUN's resolved config and seed; returns its summary and `ednaml diff` of the two.
    The run folder's config imports code only with `trust`, or the files in `imports` it recorded as imported."""
    from ednaml.tracking.browse import diff, format_diff, read_run, resolve_run, side
    from ednaml.tracking.run_folder import load_yaml

    path = resolve_run(str(run), root)
    recorded = (read_run(path).provenance or {}).get("imports")
    experiment = EdnaML(
        load_yaml(path / "config.yaml"),
        imports=imports,
        trust=trust,
        recorded_imports=recorded if isinstance(recorded, dict) else None,
    )
    summary = experiment.fit()
    return summary, format_diff(diff(side(str(path)), side(summary["run_dir"])))
