"""The original EdnaML's key spellings and component names, read as this version's.

Each rewrite is a one-line ConfigWarning (shown by `check` and `fit`, recorded in provenance.json). A
component that belongs to a project built on the original (CarZam, MiDAS, CoLabel, NELA, Fakeddit, ...)
is named as such, with how to bring it in, instead of a did-you-mean that would point at something else.
docs/migration.md has the whole table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ednaml.config.values import as_mapping, get_path, parse_value
from ednaml.errors import format_path

# (old path, new path): a key the original spelled otherwise. "*" matches every entry of a list section.
RENAMED: list[tuple[tuple, tuple]] = [
    (("LOSS", "*", "LOSS_KWARGS"), ("LOSS", "*", "KWARGS")),
    (("LOSS", "*", "LOSS_LAMBDAS"), ("LOSS", "*", "LAMBDAS")),
    (("MODEL", "ARCH"), ("MODEL", "MODEL_ARCH")),
    (("MODEL", "BASE"), ("MODEL", "MODEL_BASE")),
    (("MODEL", "EMB_DIM"), ("MODEL", "MODEL_KWARGS", "embedding_dimensions")),
    (("MODEL", "MODEL_WEIGHTS"), ("MODEL", "WEIGHTS")),
    (("MODEL", "MODEL_ATTENTION"), ("MODEL", "MODEL_KWARGS", "attention")),
    (("MODEL", "LATENT_DIMENSIONS"), ("MODEL", "MODEL_KWARGS", "latent_dimensions")),  # the VAE-GAN's
    (("MODEL", "SOFTMAX"), ("MODEL", "MODEL_KWARGS", "softmax_dimensions")),
    (("MODEL", "SOFTMAX_DIM"), ("MODEL", "MODEL_KWARGS", "softmax_dimensions")),
    (("EXECUTION", "MODEL_BUILDER"), ("MODEL", "BUILDER")),
    (("EXECUTION", "CRAWLER_ARGS"), ("EXECUTION", "DATAREADER", "CRAWLER_ARGS")),
    (("EXECUTION", "GENERATOR"), ("EXECUTION", "DATAREADER", "GENERATOR")),
    (("EXECUTION", "GENERATOR_ARGS"), ("EXECUTION", "DATAREADER", "GENERATOR_ARGS")),
    # the step logic was the original's "trainer", a word that here means Lightning's (the `trainer:` section)
    (("EXECUTION", "TRAINER"), ("EXECUTION", "STEP_LOGIC")),
    (("EXECUTION", "TRAINER_ARGS"), ("EXECUTION", "STEP_LOGIC_ARGS")),
    (
        ("EXECUTION", "TRAIN_MODE"),
        ("EXECUTION", "STEP_LOGIC_ARGS", "train_mode"),
    ),  # read by the step logic that wants it
    (("EXECUTION", "TEST_MODE"), ("EXECUTION", "STEP_LOGIC_ARGS", "test_mode")),
]

# Keys the original read that this version has no use for: dropped, with what that changes.
DROPPED = {
    (
        "TRANSFORMATION",
        "INSTANCES",
    ): "the original's identity sampler (this many images of each identity in a batch) is not "
    "part of EdnaML: dropped; batches are drawn at random",
    ("DEPLOYMENT", "FP16"): "dropped: EXECUTION.FP16 or trainer.precision sets the precision",
    ("EXECUTION", "MODE"): "dropped: the command is the stage here (ednaml fit, test, predict)",
    (
        "SAVE",
        "BACKUP",
    ): "the original's storage backup; dropped: DRIVE_BACKUP and LOG_BACKUP with CHECKPOINT_DIRECTORY back a run up",
}

# The original's KMeansProxy arguments: {old: this version's, or None: dropped (taken from the model)}.
KMEANS_ARGUMENTS = {"num_clusters": "clusters", "dist": "distance", "epochs": "warmup_epochs", "dimensions": None}

# The original's deployment output options (its own output files and Azure storage).
OLD_OUTPUT_ARGS = ("basename", "unfiltered_output", "feature_file", "azstorage", "azcontainer", "file_basename")

# Loss arguments the original spelled otherwise: {loss: {old: new}}; a new of None drops the old where its
# value is what this version's loss does anyway.
LOSS_ARGUMENTS: dict[str, dict[str, tuple[str | None, Any]]] = {
    "SoftmaxLabelSmooth": {"soft_dim": ("softmax_dimensions", None)},
    "TripletLoss": {"mine": (None, "hard")},  # batch-hard mining is what TripletLoss does
    "MarginLoss": {"mine": (None, "hard")},
    "ProxyNCA": {"embedding_size": ("feat_dim", None), "classes": ("num_classes", None)},
}

# The original's names that are this version's components under another name (kind -> {old: new}).
RENAMED_COMPONENTS: dict[str, dict[str, str]] = {
    "step_logic": {"BaseTrainer": "ClassificationTrainer", "SimpleTrainer": "ClassificationTrainer"},
    "optimizer_builder": {
        "ReIDOptimizerBuilder": "ClassificationOptimizer",
        "BaseOptimizer": "ClassificationOptimizer",
    },
    "model_builder": {"model_builder": "ednaml_model_builder"},
}

# Components of projects built on the original EdnaML, and the original's own base classes: not here.
OUTSIDE = {
    "CarZam": ["CarzamResnet", "CarzamTrainer", "carzam_model_builder", "CUB200_2011Generator", "Cars196Generator"],
    "MiDAS": ["MiDAS", "MiDASTrainer"],
    "CoLabel": ["CoLabelResnet", "CoLabelOptimizer", "CoLabelTrainer", "VehicleColor", "MultiClassificationGenerator"],
    "NELA": ["NELA", "AlbertReader", "FNCAlbertModeler", "FNCFilter"],
    "Fakeddit": ["Fakeddit"],
    "EdnaML's Hugging Face integration": [
        "HFReader",
        "HFGenerator",
        "HFTrainer",
        "HFDeploy",
        "HFMLMSequenceModel",
        "HFMLMSequenceTrainer",
        "hf_model_builder",
        "SemanticMaskingFeaturesGenerator",
    ],
    "VAEGAN": ["VAEGAN", "VAEGANTrainer", "VAEGANOptimizerBuilder", "vaegan_model_builder"],
    "the original's ReID experiments": [
        "VehicleIDTrainer",
        "FastKMP",
        "FastKMeansProxy",
        "FastRandomizedLipschitz",
        "RandomizedLipschitz",
    ],
}
# Datasets the original had crawlers for (EXECUTION.CRAWLER: <name>DataCrawler); their files are downloads.
DATASET_READERS = ("VehicleID", "CUB200_2011", "VeRi", "VRIC", "Cars196", "SUN", "CompCars", "CoLabelVehicleColor")
BASE_CLASSES = {
    "DataReader": "a data source",
    "ModelAbstract": "a model",
    "Crawler": "a data source",
    "Generator": "a dataset",
}
_OUTSIDE = {name: project for project, names in OUTSIDE.items() for name in names}


def renamed_override(path: list, warn: Callable[[str], None]) -> list:
    """A command-line override's key path written the original's way (--LOSS.0.LOSS_KWARGS, or a key inside
    one: --EXECUTION.TRAINER_ARGS.accumulation_steps), as this version's, so that its value wins as an
    override should."""
    for old, new in RENAMED:
        if len(path) >= len(old) and all(o == "*" and isinstance(p, int) or o == p for o, p in zip(old, path)):
            renamed = [path[i] if part == "*" else part for i, part in enumerate(new)] + list(path[len(old) :])
            note(tuple(path[: len(old)]), f"the original's spelling, read as {format_path(renamed[: len(new)])}", warn)
            return renamed
    return path


def outside_message(kind: str, name: str) -> str | None:
    """Why a name from the original's configs is not a component here, and how to bring it in; None for
    any other name."""
    if name in BASE_CLASSES:
        return (
            f"{name!r} is the original's base class, not {BASE_CLASSES[name]}: name one (`ednaml list {kind}`), "
            "or register your own with IMPORTS"
        )
    if name == "Resnet" and kind == "model":
        return (
            "'Resnet' is the original's re-identification ResNet (input and part attention), which its own later "
            "versions dropped too and which is not part of EdnaML: "
            "ClassificationResnet or TorchvisionModel (MODEL_BASE "
            "resnet18/34/50/...) is a plain ResNet classifier; or register the original's with IMPORTS"
        )
    if kind == "datareader" and name in DATASET_READERS:
        return (
            f"{name!r} is the original's reader of the {name} dataset, which EdnaML does not ship (its files are a "
            "download away): read its images with ImageFolder or CSVManifest (`ednaml list datareader ImageFolder`), "
            "or register a reader with IMPORTS"
        )
    project = _OUTSIDE.get(name)
    if project is None:
        return None
    return (
        f"{name!r} belongs to {project}, built on the original EdnaML, and is not part of EdnaML: "
        "register it with IMPORTS "
        f"(see docs/components.md)"
    )


def note(old: tuple, message: str, warn: Callable[[str], None]) -> None:
    warn(f"{format_path(old)}: {message}")


def _moves(cfg: dict[str, Any], old: tuple, new: tuple) -> list[tuple[tuple, tuple]]:
    """(concrete old path, concrete new path) for each place `old` matches ("*": every list entry)."""
    found: list[tuple[tuple, tuple]] = []

    def walk(node: Any, at: int, path: tuple) -> None:
        if at == len(old) - 1:
            if isinstance(node, dict) and old[-1] in node:
                concrete = path + (old[-1],)  # a "*" of the new path is the same entry as the old one's
                found.append((concrete, tuple(concrete[i] if part == "*" else part for i, part in enumerate(new))))
            return
        part = old[at]
        if part == "*" and isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, at + 1, path + (i,))
        elif isinstance(node, dict) and part in node:
            walk(node[part], at + 1, path + (part,))

    walk(cfg, 0, ())
    return found


def _container(cfg: dict[str, Any], path: tuple) -> dict[str, Any] | None:
    """The mapping that holds the last part of `path`, made where missing or blank; None where something else
    is in the way (validation names it)."""
    node: Any = cfg
    for part in path[:-1]:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if not isinstance(node, dict):
                return None
            continue
        value = as_mapping(node.get(part))
        if isinstance(value, list):  # a list section: the next part is its entry
            node = value
            continue
        if value in ("", None):
            value = {}
        if not isinstance(value, dict):
            return None
        node[part] = value
        node = value
    return node


Warn = Callable[[str], None]


def translate(raw: dict[str, Any], warn: Warn) -> dict[str, Any]:
    """`raw` (one config layer) with the original's spellings rewritten, one rewrite after another (REWRITES);
    each rewrite noted through `warn`. Rewriting twice changes nothing."""
    import copy

    cfg = copy.deepcopy(raw)
    for rewrite in REWRITES:
        rewrite(cfg, warn)
    return cfg


def _top_level_datareader(cfg: dict[str, Any], warn: Warn) -> None:
    if (
        isinstance(cfg.get("DATAREADER"), dict)
        and isinstance(cfg.get("EXECUTION") or {}, dict)
        and "DATAREADER" not in (cfg.get("EXECUTION") or {})
    ):
        cfg["EXECUTION"] = cfg.get("EXECUTION") or {}
        cfg["EXECUTION"]["DATAREADER"] = cfg.pop("DATAREADER")
        note(("DATAREADER",), "the original's later top-level section, read as EXECUTION.DATAREADER", warn)


def _crawler(cfg: dict[str, Any], warn: Warn) -> None:
    execution = cfg.get("EXECUTION")
    if not (isinstance(execution, dict) and isinstance(execution.get("CRAWLER"), str)):
        return
    crawler = execution.pop("CRAWLER")
    reader = crawler.removesuffix("DataCrawler").removesuffix("Crawler") or crawler
    datareader = _container(cfg, ("EXECUTION", "DATAREADER", "DATAREADER"))
    if datareader is not None and datareader.get("DATAREADER") in (None, ""):
        datareader["DATAREADER"] = reader
        note(
            ("EXECUTION", "CRAWLER"),
            f"the original named the crawler ({crawler}); a data reader holds it here: read as "
            f"EXECUTION.DATAREADER.DATAREADER: {reader}",
            warn,
        )
    else:
        note(
            ("EXECUTION", "CRAWLER"),
            f"the original's crawler ({crawler}); dropped: EXECUTION.DATAREADER.DATAREADER names the data reader",
            warn,
        )


def _renamed_keys(cfg: dict[str, Any], warn: Warn) -> None:
    for old, new in RENAMED:
        for old_path, new_path in _moves(cfg, old, new):
            _move(cfg, old_path, new_path, warn)


def _move(cfg: dict[str, Any], old_path: tuple, new_path: tuple, warn: Warn) -> None:
    holder = get_path(cfg, old_path[:-1])
    value = holder[old_path[-1]]
    if value in ("", None) and "MODEL_KWARGS" in new_path:  # blank: the model's own default
        holder.pop(old_path[-1])
        size = " (an output size left out is taken from the data)" if new_path[-1].endswith("dimensions") else ""
        note(old_path, "blank; dropped" + size, warn)
        return
    if new_path == ("MODEL", "WEIGHTS") and not isinstance(value, str):
        holder.pop(old_path[-1])
        note(
            old_path,
            f"{value!r}: the original's switch for pretrained weights; dropped: MODEL.WEIGHTS names a file",
            warn,
        )
        return
    target = _container(cfg, new_path)
    if target is None:
        return  # left under its old name, which validation names
    holder.pop(old_path[-1])
    if new_path[-1] in target:
        note(old_path, f"the original's spelling of {format_path(new_path)}, which is set too: dropped", warn)
        return
    target[new_path[-1]] = value
    note(old_path, f"the original's spelling, read as {format_path(new_path)}", warn)


def _dropped_keys(cfg: dict[str, Any], warn: Warn) -> None:
    for path, message in DROPPED.items():
        holder = get_path(cfg, path[:-1])
        if isinstance(holder, dict) and path[-1] in holder:
            holder.pop(path[-1])
            note(path, message, warn)


def _output_arguments(cfg: dict[str, Any], warn: Warn) -> None:
    output = get_path(cfg, ("DEPLOYMENT", "OUTPUT_ARGS"))
    if isinstance(output, dict):
        for key in [k for k in output if k in OLD_OUTPUT_ARGS]:
            output.pop(key)
            note(
                ("DEPLOYMENT", "OUTPUT_ARGS", key),
                "the original's deployment output files; dropped: `ednaml predict --output` says where the records go",
                warn,
            )


def _dataset_preload(cfg: dict[str, Any], warn: Warn) -> None:
    execution = cfg.get("EXECUTION")
    if not (isinstance(execution, dict) and isinstance(execution.get("DATASET_PRELOAD"), str)):
        return
    name = execution.pop("DATASET_PRELOAD")
    reader = _container(cfg, ("EXECUTION", "DATAREADER", "DATAREADER"))
    arguments = _container(cfg, ("EXECUTION", "DATAREADER", "CRAWLER_ARGS", "name")) if reader is not None else None
    if reader is not None and arguments is not None and reader.get("DATAREADER") in (None, "", "TorchvisionDataset"):
        reader["DATAREADER"] = "TorchvisionDataset"
        arguments.setdefault("name", name)
        note(
            ("EXECUTION", "DATASET_PRELOAD"),
            f"the original's torchvision dataset; read as EXECUTION.DATAREADER "
            f"TorchvisionDataset with CRAWLER_ARGS.name {name} (CRAWLER_ARGS.root says where its files are)",
            warn,
        )
    else:
        note(
            ("EXECUTION", "DATASET_PRELOAD"),
            f"the original's torchvision dataset ({name}); dropped: EXECUTION.DATAREADER names the data reader",
            warn,
        )
    for key in [k for k in list(execution) if isinstance(k, str) and k.startswith("DATASET_")]:
        if key.endswith("PRELOAD_CLASS"):
            execution.pop(key)
            note(
                ("EXECUTION", key),
                "a subset of the dataset's classes is not supported: dropped, every class is used",
                warn,
            )


def _blank_model_keys(cfg: dict[str, Any], warn: Warn) -> None:
    model = cfg.get("MODEL")
    if isinstance(model, dict) and model.get("MODEL_NORMALIZATION") == "":
        model["MODEL_NORMALIZATION"] = "none"
        note(("MODEL", "MODEL_NORMALIZATION"), "'' (no normalization in the original), read as none", warn)
    if isinstance(model, dict) and model.get("MODEL_KWARGS") == "":
        model["MODEL_KWARGS"] = {}


def _reader_comments(cfg: dict[str, Any], warn: Warn) -> None:
    reader = get_path(cfg, ("EXECUTION", "DATAREADER"))
    if isinstance(reader, dict):
        for key in [k for k in reader if isinstance(k, str) and k.endswith("_comment")]:
            reader.pop(key)
            note(("EXECUTION", "DATAREADER", key), "a comment in the original's config; dropped", warn)


def _renamed_components(cfg: dict[str, Any], warn: Warn) -> None:
    for kind, path in (
        ("step_logic", ("EXECUTION", "STEP_LOGIC")),
        ("optimizer_builder", ("EXECUTION", "OPTIMIZER_BUILDER")),
        ("model_builder", ("MODEL", "BUILDER")),
    ):
        holder, name = get_path(cfg, path[:-1]), get_path(cfg, path)
        if isinstance(name, str) and name in RENAMED_COMPONENTS[kind]:
            holder[path[-1]] = RENAMED_COMPONENTS[kind][name]
            note(path, f"the original's {name!r}, read as {RENAMED_COMPONENTS[kind][name]}, its counterpart here", warn)


def _loss_arguments(cfg: dict[str, Any], warn: Callable[[str], None]) -> None:
    entries = cfg.get("LOSS")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("LOSSES"), list):
            continue
        written = entry.get("KWARGS")
        parsed = parse_value(written) if isinstance(written, str) else written  # old forms: strings of YAML
        if not isinstance(parsed, list):
            continue
        parsed = [as_mapping(kwargs) for kwargs in parsed]
        for j, (loss, kwargs) in enumerate(zip(entry["LOSSES"], parsed)):
            if (
                not isinstance(kwargs, dict)
                or not isinstance(loss, str)
                or not set(LOSS_ARGUMENTS.get(loss, {})) & set(kwargs)
            ):
                continue
            entry["KWARGS"] = parsed  # parsed only where something is translated
            for old, (new, same) in LOSS_ARGUMENTS.get(loss, {}).items():
                if old not in kwargs:
                    continue
                where = ("LOSS", i, "KWARGS", j, old)
                if new is None and kwargs[old] == same:
                    kwargs.pop(old)
                    note(where, f"{old}: {same!r} is what {loss} does here: dropped", warn)
                elif new is not None and new not in kwargs:
                    kwargs[new] = kwargs.pop(old)
                    note(where, f"the original's spelling, read as {new}", warn)


def _plugin_arguments(cfg: dict[str, Any], warn: Callable[[str], None]) -> None:
    entries = cfg.get("MODEL_PLUGIN")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        kwargs = entry.get("PLUGIN_KWARGS") if isinstance(entry, dict) else None
        if not isinstance(kwargs, dict) or entry.get("PLUGIN") != "KMeansProxy":
            continue
        for old, new in KMEANS_ARGUMENTS.items():
            if old not in kwargs or (new is not None and new in kwargs):
                continue
            where = ("MODEL_PLUGIN", i, "PLUGIN_KWARGS", old)
            value = kwargs.pop(old)
            if new is None:
                note(where, "dropped: the feature size is taken from the model", warn)
            else:
                kwargs[new] = {"l2": "euclidean", "cos": "cosine"}.get(value, value) if new == "distance" else value
                note(
                    where,
                    f"the original's spelling, read as {new}" + (f": {kwargs[new]}" if kwargs[new] != value else ""),
                    warn,
                )


# The rewrites of `translate`, in order: sections and keys move before the keys inside them are read.
REWRITES: list[Callable[[dict[str, Any], Warn], None]] = [
    _top_level_datareader,
    _crawler,
    _renamed_keys,
    _dropped_keys,
    _loss_arguments,
    _plugin_arguments,
    _output_arguments,
    _dataset_preload,
    _blank_model_keys,
    _reader_comments,
    _renamed_components,
]
