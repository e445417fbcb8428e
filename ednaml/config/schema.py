"""The canonical config: every section, key, type and default (the contract in docs/config.md)."""

from __future__ import annotations

import ast
import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANY = object  # a key that accepts any YAML value
OUTPUT_FORMATS = ("csv", "jsonl", "parquet")  # DEPLOYMENT.OUTPUT_ARGS.format: how predictions are written


@dataclass(frozen=True)
class Key:
    """One config key: its default, the types it accepts and a one-line description."""

    default: Any
    types: tuple[type, ...]
    doc: str
    dead: bool = False  # accepted for old configs, warned about, not used
    choices: tuple[Any, ...] = ()
    optional: bool = False  # may be null
    names: str | None = None  # the kind of component the key names (ednaml/kinds.py); a list key names one per entry
    kwargs: tuple[str, ...] = ()  # the keys beside it that hold its component's kwargs


@dataclass(frozen=True)
class Section:
    keys: dict[str, Key | Section]
    doc: str = ""
    used_when_set: tuple[str, ...] = ()  # sections in it that count only where a config changes one of their values


@dataclass(frozen=True)
class ListOf:
    """A list section (LOSS, OPTIMIZER, ...): each entry is `entry`, the default list is `default`."""

    entry: Section
    default: list[dict[str, Any]] = field(default_factory=list)
    doc: str = ""


def _k(default: Any, types: Any, doc: str, **kw: Any) -> Key:
    return Key(default, types if isinstance(types, tuple) else (types,), doc, **kw)


def _opt(default: Any, types: Any, doc: str, **kw: Any) -> Key:
    return _k(default, types, doc, optional=True, **kw)


def _dead(doc: str) -> Key:
    return Key(None, (ANY,), doc, dead=True, optional=True)


DATAREADER = Section(
    {
        "DATAREADER": _k(
            "Digits",
            str,
            "data reader (crawler + dataset + transforms for one source)",
            names="datareader",
            kwargs=("CRAWLER_ARGS", "DATASET_ARGS"),
        ),
        "CRAWLER_ARGS": _k({}, dict, "kwargs of the reader's crawler (where the data is, how it splits)"),
        "DATASET_ARGS": _k({}, dict, "kwargs of the reader's dataset"),
        "GENERATOR": _opt(
            None, str, "dataset class replacing the reader's own", names="dataset", kwargs=("GENERATOR_ARGS",)
        ),
        "GENERATOR_ARGS": _k({}, dict, "more dataset kwargs, merged over DATASET_ARGS"),
        "DATALOADER_ARGS": _k({}, dict, "kwargs passed to every torch DataLoader"),
        "BAD_SAMPLES": _k(
            "stop",
            str,
            "a sample that fails to load during a run: stop the run naming it, or skip it and count it in summary.json",
            choices=("stop", "skip"),
        ),
    },
    "the data source",
)

PLUGIN_HOOKS = Section(
    {
        "HOOKS": _k("always", str, "when plugins run", choices=("always", "warmup", "activated")),
        "RESET": _dead("unused in the original"),
    }
)

EXECUTION = Section(
    {
        "EPOCHS": _k(10, int, "train exactly this many epochs (linked to trainer.max_epochs)"),
        "TEST_FREQUENCY": _k(1, int, "validate every N epochs (trainer.check_val_every_n_epoch)"),
        "SKIPEVAL": _k(False, bool, "when false, one full validation pass runs before training"),
        "STEP_LOGIC": _k(
            "ClassificationTrainer",
            str,
            "step logic: how a batch becomes outputs, losses, metrics (the original's EXECUTION.TRAINER)",
            names="step_logic",
        ),
        "STEP_LOGIC_ARGS": _k(
            {"accumulation_steps": 1},
            dict,
            "kwargs of the step logic (the original's TRAINER_ARGS); "
            "accumulation_steps -> trainer.accumulate_grad_batches",
        ),
        "OPTIMIZER_BUILDER": _k(
            "ClassificationOptimizer", str, "how OPTIMIZER entries become optimizers", names="optimizer_builder"
        ),
        "METRICS": _k(
            ["accuracy", "f1_micro", "f1_weighted"],
            list,
            "metrics of every output on val and test, by name (kind metric)",
            names="metric",
        ),
        "FP16": _k(
            False, bool, "mixed precision (16-mixed on CUDA, bf16-mixed on CPU) unless trainer.precision is set"
        ),
        "MODEL_SERVING": _dead("unused in the original"),
        "IMPORTS": _k([], list, "Python files or modules imported before names are resolved"),
        "DATAREADER": DATAREADER,
        "PLUGIN": PLUGIN_HOOKS,
    },
    "how the experiment runs",
)

SAVE = Section(
    {
        "MODEL_VERSION": _k(1, (int, str), "experiment version"),
        "MODEL_CORE_NAME": _k("model", str, "experiment name"),
        "MODEL_BACKBONE": _k("backbone", str, "backbone part of the experiment name"),
        "MODEL_QUALIFIER": _k("all", str, "qualifier part of the experiment name"),
        "SAVE_FREQUENCY": _k(5, int, "checkpoint every N epochs (0 = only last.ckpt)"),
        "STEP_SAVE_FREQUENCY": _k(0, int, "checkpoint every N optimizer steps (0 = off)"),
        "MONITOR": _opt("val/loss", str, "keep the best checkpoint by this validation metric (null: none)"),
        "MONITOR_MODE": _k(
            "auto",
            str,
            "whether lower or higher MONITOR is better (auto: lower for losses)",
            choices=("auto", "min", "max"),
        ),
        "DRIVE_BACKUP": _k(False, bool, "also copy checkpoints to CHECKPOINT_DIRECTORY"),
        "LOG_BACKUP": _k(False, bool, "also copy run files (config, metrics, log) to CHECKPOINT_DIRECTORY"),
        "CHECKPOINT_DIRECTORY": _k("checkpoint", str, "backup target: a local path or an fsspec URL"),
        "LOG_DIRECTORY": _dead("unused in the original"),
        **{
            key: _dead(
                "storage-based backups are not supported; use DRIVE_BACKUP / LOG_BACKUP with CHECKPOINT_DIRECTORY"
            )
            for key in (
                "CONFIG_BACKUP",
                "MODEL_BACKUP",
                "MODEL_ARTIFACTS_BACKUP",
                "MODEL_PLUGIN_BACKUP",
                "METRICS_BACKUP",
            )
        },
    },
    "names the experiment and says what is saved",
)

TRANSFORMATION = Section(
    {
        "BATCH_SIZE": _k(32, int, "samples per batch"),
        "WORKERS": _k(2, int, "DataLoader worker processes"),
        "ARGS": _k({}, dict, "transform arguments of the data reader (i_shape, channels, ...)"),
    },
    "batching and transforms",
)

MODEL = Section(
    {
        "BUILDER": _k("ednaml_model_builder", str, "how the model is built from MODEL_ARCH", names="model_builder"),
        "MODEL_ARCH": _k("SmallCNN", str, "the model class", names="model", kwargs=("MODEL_KWARGS",)),
        "MODEL_BASE": _opt(None, str, "backbone of the architecture (e.g. resnet18)"),
        "MODEL_NORMALIZATION": _opt(
            "bn", str, "feature normalization: bn | ln | gn | l2 | none", choices=("bn", "ln", "gn", "l2", "none")
        ),
        "MODEL_KWARGS": _k({}, dict, "more kwargs of MODEL_ARCH; blank output sizes are inferred from the data"),
        "PARAMETER_GROUPS": _k(["opt-1"], (list, dict), "parameter group names (or name: [module prefixes])"),
        "WEIGHTS": _opt(None, str, "pretrained weights, loaded where key names and shapes match"),
        "EMBEDDING_DIMENSIONS": _dead("a MODEL_KWARGS entry (embedding_dimensions) in this version"),
    },
    "the model",
)

LOSS_ENTRY = Section(
    {
        "LOSSES": _k(["SoftmaxLogitsLoss"], list, "loss names", names="loss"),
        "KWARGS": _k([{}], list, "one kwargs mapping per loss"),
        "LAMBDAS": _k([1.0], list, "one weight per loss, normalised to sum 1 within the entry"),
        "LABEL": _opt(None, str, "the label this entry targets"),
        "NAME": _opt(None, str, "unique name of the entry (default: LABEL); logged as train/<NAME>/<Loss>"),
    }
)

OPTIMIZER_ENTRY = Section(
    {
        "OPTIMIZER_NAME": _k("opt-1", str, "the parameter group it optimizes"),
        "OPTIMIZER": _k(
            "Adam",
            str,
            "a torch.optim class, a registered or a dotted-path one",
            names="optimizer",
            kwargs=("OPTIMIZER_KWARGS",),
        ),
        "OPTIMIZER_KWARGS": _k({}, dict, "more kwargs of the optimizer"),
        "BASE_LR": _k(0.001, (float, int), "learning rate"),
        "WEIGHT_DECAY": _k(0.0005, (float, int), "weight decay"),
        "LR_BIAS_FACTOR": _k(1.0, (float, int), "bias lr = BASE_LR x LR_BIAS_FACTOR"),
        "WEIGHT_BIAS_FACTOR": _k(0.0005, (float, int), "bias weight decay = WEIGHT_DECAY x WEIGHT_BIAS_FACTOR"),
        "NORM_DECAY_FACTOR": _opt(None, (float, int), "norm-layer weight decay = WEIGHT_DECAY x factor"),
        "CUSTOM_KEYS": _k({}, dict, "{module.prefix: {LR_FACTOR: x, DECAY_FACTOR: y}}, longest prefix wins"),
        "FP16": _dead("use EXECUTION.FP16 or trainer.precision"),
    }
)

SCHEDULER_ENTRY = Section(
    {
        "SCHEDULER_NAME": _opt(None, str, "the OPTIMIZER_NAME it drives (default: the only optimizer)"),
        "LR_SCHEDULER": _k(
            "StepLR",
            str,
            "a torch.optim.lr_scheduler class or a registered one",
            names="scheduler",
            kwargs=("LR_KWARGS",),
        ),
        "LR_KWARGS": _k({"step_size": 20}, dict, "kwargs of the scheduler"),
        "INTERVAL": _k("epoch", str, "step the scheduler every epoch or every step", choices=("epoch", "step")),
        "MONITOR": _opt(None, str, "metric for ReduceLROnPlateau (default val/loss)"),
        "WARMUP_STEPS": _k(0, int, "linear warmup of the learning rate over this many optimizer steps"),
        "WARMUP_START_FACTOR": _k(0.0, (float, int), "the warmup starts at this fraction of the learning rate"),
    }
)

PLUGIN_ENTRY = Section(
    {
        "PLUGIN_NAME": _k("mp-1", str, "unique name of the plugin"),
        "PLUGIN": _k("ModelPlugin", str, "plugin class", names="plugin", kwargs=("PLUGIN_KWARGS",)),
        "PLUGIN_KWARGS": _k({}, dict, "kwargs of the plugin"),
    }
)

DEPLOYMENT = Section(
    {
        "DEPLOY": _k(
            "BaseDeploy", str, "deployment class: turns a batch's outputs into one record per input", names="deployment"
        ),
        "DEPLOYMENT_ARGS": _k({}, dict, "kwargs of the deployment class (BaseDeploy: top_k)"),
        "OUTPUT_ARGS": _k(
            {}, dict, "output options: format (csv, jsonl or parquet) of predictions written in the run folder"
        ),
        "EPOCHS": _k(1, int, "passes over the prediction data"),
        "DATAREADER": DATAREADER,
        "PLUGIN": PLUGIN_HOOKS,
    },
    "prediction",
    used_when_set=("DATAREADER",),  # a reader of its own for `ednaml predict --data`
)

LOGGING = Section(
    {
        "STEP_VERBOSE": _k(100, int, "log every N steps (trainer.log_every_n_steps)"),
        "INPUT_SIZE": _opt(None, list, "input shape for the model summary"),
        "WANDB_MODE": _opt(
            None,
            str,
            "W&B mode when the WANDB_MODE variable is unset (default offline)",
            choices=("offline", "online", "disabled"),
        ),
        "WANDB_PROJECT": _opt(None, str, "W&B project: the study (default: SAVE.MODEL_CORE_NAME)"),
        "WANDB_GROUP": _opt(
            None, str, "W&B group (default: the experiment name, core name + version + backbone + qualifier)"
        ),
        "WANDB_NAME": _opt(
            None, str, "W&B display name (default: <backbone>-<qualifier>-<6 characters of the run id>)"
        ),
        "WANDB_TAGS": _k(
            [], list, "W&B tags besides the automatic ones (model, backbone, qualifier, data reader, stage)"
        ),
        "WANDB_NOTES": _opt(None, str, "W&B notes: a sentence on what this run tries"),
        "WANDB_ENTITY": _opt(None, str, "W&B entity (user or team) for online runs"),
        "WANDB_LOG_MODEL": _k(False, (bool, str), "upload checkpoints as W&B artifacts: true (at the end) or all"),
    },
    "logging",
)

STORAGE = Section({}, "accepted (unused in the original): a mapping or a list of storages")

SCHEMA: dict[str, Section | ListOf] = {
    "EXECUTION": EXECUTION,
    "SAVE": SAVE,
    "TRANSFORMATION": TRANSFORMATION,
    "TRAIN_TRANSFORMATION": TRANSFORMATION,
    "TEST_TRANSFORMATION": TRANSFORMATION,
    "MODEL": MODEL,
    "LOSS": ListOf(LOSS_ENTRY, [{}], "losses, summed; one entry per model output / label"),
    "OPTIMIZER": ListOf(OPTIMIZER_ENTRY, [{}], "one optimizer per parameter group"),
    "SCHEDULER": ListOf(SCHEDULER_ENTRY, [], "learning-rate schedulers, bound by SCHEDULER_NAME"),
    "LOSS_OPTIMIZER": ListOf(OPTIMIZER_ENTRY, [], "optimizers of losses with parameters, bound by loss NAME"),
    "LOSS_SCHEDULER": ListOf(SCHEDULER_ENTRY, [], "schedulers of loss optimizers"),
    "MODEL_PLUGIN": ListOf(PLUGIN_ENTRY, [], "model plugins"),
    "DEPLOYMENT": DEPLOYMENT,
    "LOGGING": LOGGING,
    "STORAGE": STORAGE,
}

# Lightning's own top-level keys, spelled as LightningCLI spells them.
LIGHTNING_KEYS: dict[str, Key] = {
    "trainer": _k({}, dict, "any lightning.Trainer argument"),
    "seed_everything": _k(True, (bool, int), "seed for every RNG; true picks one and records it"),
    "ckpt_path": _opt(None, str, "checkpoint to resume (fit) or evaluate (validate/test/predict)"),
}

# EdnaML keys that are the same setting as a Trainer argument: the resolved config shows one value in both.
LINKED_KEYS: tuple[tuple[str, str], ...] = (
    ("EXECUTION.EPOCHS", "trainer.max_epochs"),
    ("EXECUTION.TEST_FREQUENCY", "trainer.check_val_every_n_epoch"),
    ("EXECUTION.STEP_LOGIC_ARGS.accumulation_steps", "trainer.accumulate_grad_batches"),
    ("LOGGING.STEP_VERBOSE", "trainer.log_every_n_steps"),
)


def key_paths() -> list[str]:
    """Every key of the schema by its dotted path, a list section's through its first entry
    (OPTIMIZER.0.BASE_LR), then Lightning's top-level keys."""

    def walk(spec: Section, prefix: str) -> list[str]:
        found = []
        for name, sub in spec.keys.items():
            if isinstance(sub, Section):
                found += walk(sub, f"{prefix}{name}.")
            elif not sub.dead:
                found.append(prefix + name)
        return found

    paths: list[str] = []
    for section, spec in SCHEMA.items():
        paths += walk(spec.entry, f"{section}.0.") if isinstance(spec, ListOf) else walk(spec, f"{section}.")
    return paths + list(LIGHTNING_KEYS)


# Trainer arguments that choose where a run happens (how many processes, on what), not what it computes: a
# resumed run may change them, and `ednaml diff` shows them with the machine.
PLACEMENT_KEYS: tuple[str, ...] = ("trainer.devices", "trainer.accelerator", "trainer.strategy", "trainer.num_nodes")


@functools.lru_cache(maxsize=1)
def trainer_defaults() -> dict[str, Any]:
    """Every argument of the installed lightning.Trainer with its default, in its order: the `trainer:` section
    of every resolved config holds them all (as LightningCLI prints them), so a run's config says every value
    it ran with. Read from Lightning's source as data, without importing it (`ednaml diff` and `runs` stay
    fast); a default that is not a literal is left to Lightning (tests/test_config.py checks there is none)."""
    spec = importlib.util.find_spec("lightning")
    source = Path(next(iter(spec.submodule_search_locations or ()), "")) if spec else None
    try:
        tree = ast.parse((source / "pytorch" / "trainer" / "trainer.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, TypeError):
        return {}
    init = next(
        (
            node
            for cls in tree.body
            if isinstance(cls, ast.ClassDef) and cls.name == "Trainer"
            for node in cls.body
            if isinstance(node, ast.FunctionDef) and node.name == "__init__"
        ),
        None,
    )
    if init is None:
        return {}
    args = init.args
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults)) + [
        (arg, default) for arg, default in zip(args.kwonlyargs, args.kw_defaults) if default is not None
    ]
    defaults = {}
    for arg, default in pairs:
        try:
            defaults[arg.arg] = ast.literal_eval(default)
        except ValueError:
            continue
    return defaults


def with_trainer_defaults(trainer: Any) -> Any:
    """A `trainer:` section with each argument it leaves out at Lightning's default (Lightning's order, then
    keys Lightning does not know, which validation names); anything but a mapping as it is."""
    if not isinstance(trainer, Mapping):
        return trainer
    defaults = trainer_defaults()
    return {
        **{key: trainer.get(key, default) for key, default in defaults.items()},
        **{key: value for key, value in trainer.items() if key not in defaults},
    }


def deployment_reader(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """DEPLOYMENT.DATAREADER where the config (plain or its sections) sets it (it then reads `ednaml predict
    --data`), else None."""
    deployment = config.get("DEPLOYMENT")
    reader = deployment.get("DATAREADER") if isinstance(deployment, Mapping) else None
    if not isinstance(reader, Mapping):
        return None
    return reader if changed(DATAREADER, reader) else None


def component_paths(config: dict[str, Any]) -> list[tuple[tuple, str, Any]]:
    """(key path, kind, name) of every component a config names: each schema key marked with the kind it names
    (`Key.names`), in schema order. Validation, provenance and `check` all walk a config's components with
    this; a malformed section is passed over (validation reports it), so the rest are still found. An optional
    key left null names nothing; any other is listed with what it holds, for validation to judge."""
    found: list[tuple[tuple, str, Any]] = []

    def walk(section: Section, value: Any, path: tuple) -> None:
        for name, key in section.keys.items():
            held = value.get(name) if isinstance(value, Mapping) else None
            if isinstance(key, Section):
                if name not in section.used_when_set or changed(key, held):
                    walk(key, held, path + (name,))
            elif isinstance(key, ListOf):
                for i, entry in enumerate(held if isinstance(held, list) else []):
                    if isinstance(entry, Mapping):
                        walk(key.entry, entry, path + (name, i))
            elif key.names and list in key.types:
                found.extend(
                    (path + (name, j), key.names, n) for j, n in enumerate(held if isinstance(held, list) else [])
                )
            elif key.names and (held is not None or not key.optional):
                found.append((path + (name,), key.names, held))

    walk(Section(SCHEMA), config, ())
    return found


def _marked() -> tuple[tuple[tuple, Key], ...]:
    """(key path, key) of every schema key marked with the kind it names, a list section's entries as `*`."""
    found: list[tuple[tuple, Key]] = []

    def walk(section: Section, path: tuple) -> None:
        for name, key in section.keys.items():
            if isinstance(key, Section):
                walk(key, path + (name,))
            elif isinstance(key, ListOf):
                walk(key.entry, path + (name, "*"))
            elif key.names:
                found.append((path + (name,), key))

    walk(Section(SCHEMA), ())
    return tuple(found)


def component_keys() -> dict[str, list[tuple]]:
    """{kind: the key paths that name one}, a list section's entries as `*` and a list of names as `[j]`."""
    found: dict[str, list[tuple]] = {}
    for path, key in _marked():
        found.setdefault(key.names, []).append(path + (("*",) if list in key.types else ()))
    return found


def changed(section: Section, value: Any) -> bool:
    """Whether a config's `value` for `section` sets one of its keys away from the default."""
    if not isinstance(value, Mapping):
        return False
    return any(
        value.get(name, key.default) != key.default for name, key in section.keys.items() if isinstance(key, Key)
    )


def component_arguments() -> list[tuple[tuple, tuple[tuple, ...]]]:
    """(key path, the key paths of its kwargs) of each key that names a component with kwargs beside it, a list
    section's entries as `*`: a config layer that names another component drops the kwargs given the old one."""
    return [(path, tuple(path[:-1] + (kwarg,) for kwarg in key.kwargs)) for path, key in _marked() if key.kwargs]
