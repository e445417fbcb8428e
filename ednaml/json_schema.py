"""`ednaml schema`: the JSON Schema of an EdnaML config, for the editor. Made, never written by hand, from the
config's schema (config/schema.py: every section and key, its types, default, description and choices), the
registry (the names a key may give, and each component's keyword arguments from its signature, attached to its
name) and lightning.Trainer's signature (the `trainer:` section). The original EdnaML's spellings are admitted
and marked deprecated, with what they are read as. A YAML editor reads it from the config's first line
(`# yaml-language-server: $schema=ednaml.schema.json`)."""

from __future__ import annotations

import json
from typing import Any

from ednaml import kinds, registry
from ednaml.config.json_types import of_signature, plain_default
from ednaml.config.schema import ANY, LIGHTNING_KEYS, SCHEMA, Key, ListOf, Section
from ednaml.errors import format_path

DRAFT = "http://json-schema.org/draft-07/schema#"
TITLE = "EdnaML config"
DOTTED = r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$"  # a class by its import path: a config the user trusts may name one
CUSTOM_SECTION = r"^[A-Z][A-Z0-9_]*$"  # a top-level section of the user's own, kept for their components
POSITIONS = 4  # the entries of a parallel list (LOSSES and their KWARGS) whose kwargs are checked by name
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array"}


def config_schema() -> dict[str, Any]:
    """The whole config's JSON Schema (draft-07)."""
    from ednaml.adapters.trainer import trainer_schema

    properties = {name: _section(spec, (name,)) for name, spec in SCHEMA.items()}
    properties.update({name: _key(key, (name,)) for name, key in LIGHTNING_KEYS.items() if name != "trainer"})
    properties["trainer"] = trainer_schema()
    schema = {
        "$schema": DRAFT,
        "title": TITLE,
        "description": "One experiment: data, model, losses, optimizers, schedules and Lightning's Trainer",
        "type": "object",
        "properties": properties,
        "patternProperties": {CUSTOM_SECTION: {"description": "a section of your own, for your components"}},
        "additionalProperties": False,
    }
    _admit_the_originals_spellings(schema)
    return schema


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, sort_keys=False) + "\n"


# ---- sections and keys ----


def _section(spec: Section | ListOf, path: tuple) -> dict[str, Any]:
    if isinstance(spec, ListOf):  # a list of entries; the original's one entry alone is read as a list of one
        entry = _section(spec.entry, path + ("*",))
        alone = {k: v for k, v in entry.items() if k not in ("type", "description")}
        return {"description": spec.doc, "type": ["array", "object", "null"], "items": entry, **alone}
    properties = {
        name: _section(sub, path + (name,)) if isinstance(sub, Section) else _key(sub, path + (name,))
        for name, sub in spec.keys.items()
    }
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if spec.doc:
        schema["description"] = spec.doc
    conditions = [c for name, sub in spec.keys.items() if isinstance(sub, Key) for c in _kwargs_by_name(spec, name)]
    if conditions:
        schema["allOf"] = conditions
    return schema


def _key(key: Key, path: tuple) -> dict[str, Any]:
    described: dict[str, Any] = {"description": key.doc}
    has_default, default = plain_default(key.default)
    if has_default:
        described["default"] = default
    if key.dead:
        return {**described, **_deprecated(key.doc)}
    if ANY in key.types:
        return described
    if key.names:
        return {**described, **_naming(key)}
    if key.choices:
        return {**described, "enum": list(key.choices) + ([None] if key.optional else [])}
    types = list(dict.fromkeys(_JSON_TYPES[t] for t in key.types if t in _JSON_TYPES))
    if key.optional:
        types.append("null")
    if types == ["object"]:  # the original wrote kwargs as a string of JSON ('{"step_size": 20}'), or left them blank
        return {
            **described,
            "anyOf": [{"type": "object"}, {"type": ["string", "null"], **_deprecated("the original's blank or text")}],
        }
    return {**described, "type": types[0] if len(types) == 1 else types}


def _naming(key: Key) -> dict[str, Any]:
    """A key that names a component of its kind: one of the registered names, or a dotted import path; a list
    key names one per entry."""
    from ednaml.config.legacy import RENAMED_COMPONENTS

    one: dict[str, Any] = {"anyOf": [{"enum": registry.names(key.names)}, {"type": "string", "pattern": DOTTED}]}
    if old := RENAMED_COMPONENTS.get(key.names):
        one["anyOf"].append({"enum": list(old), **_deprecated("the original's name, read as its counterpart here")})
    options = []
    if str in key.types:
        options.append(one)
    if list in key.types:
        options.append({"type": "array", "items": one})
    if key.optional:
        options.append({"type": "null"})
    return options[0] if len(options) == 1 else {"anyOf": options}


# ---- each component's keyword arguments, attached to its name ----


def _kwargs_by_name(section: Section, name: str) -> list[dict[str, Any]]:
    """`if KEY names X then its kwargs keys take X's arguments`, for each name the key may give; for a list of
    names (LOSSES), each position's kwargs (KWARGS) alike. Where the file does not name the component, its
    kwargs are not checked: a file merged over another (`--config base.yml --config mine.yml`) may set only
    them."""
    key = section.keys[name]
    if not key.names or key.dead:
        return []
    kind = kinds.KINDS[key.names]
    parallel = [at.rsplit(".", 1)[-1].removesuffix("[j]") for at, _ in kind.kwargs_at if at.endswith("[j]")]
    if parallel and list in key.types:
        return _parallel_kwargs(name, parallel[0], kind)
    targets = [(kwargs, _part(kind, kwargs)) for kwargs in key.kwargs]
    if not targets:
        return []
    conditions = []
    for component in registry.names(kind.name):
        properties = _arguments_of(kind, component, targets)
        if not properties:
            continue
        when = {"properties": {name: {"const": component}}, "required": [name]}
        conditions.append({"if": when, "then": {"properties": properties}})
    return conditions


def _part(kind: kinds.Kind, kwargs_key: str) -> str | None:
    """Which part of a component of `kind` the kwargs key feeds (a reader's crawler or dataset), None: itself."""
    for at, part in kind.kwargs_at:
        if at.rsplit(".", 1)[-1] == kwargs_key:
            return part
    return None


def _arguments_of(kind: kinds.Kind, name: str, targets: list[tuple[str, str | None]]) -> dict[str, Any]:
    """{kwargs key: the object schema of the arguments it takes} for the component `name`."""
    try:
        component = registry.get(kind.name, name)
    except (registry.RegistryError, ImportError):  # a component whose optional extra is missing: not described
        return {}
    properties = {}
    for kwargs_key, part in targets:
        target = getattr(component, part, None) if part else component
        if target is None:
            continue
        arguments = of_signature(target, kinds.arguments(part or kind.name).supplied)
        arguments.pop("type")  # the key's own schema says what it is (the original's text of a mapping too)
        properties[kwargs_key] = arguments
    return properties


def _parallel_kwargs(name: str, kwargs_key: str, kind: kinds.Kind) -> list[dict[str, Any]]:
    conditions = []
    for component in registry.names(kind.name):
        arguments = _arguments_of(kind, component, [(kwargs_key, None)])
        if not arguments:
            continue
        for position in range(POSITIONS):
            before = [{}] * position
            conditions.append(
                {
                    "if": {
                        "properties": {name: {"type": "array", "items": [*before, {"const": component}]}},
                        "required": [name],
                    },
                    "then": {"properties": {kwargs_key: {"items": [*before, arguments[kwargs_key]]}}},
                }
            )
    return conditions


# ---- the original EdnaML's spellings ----


def _deprecated(message: str) -> dict[str, Any]:
    return {"deprecated": True, "deprecationMessage": message}


def _admit_the_originals_spellings(schema: dict[str, Any]) -> None:
    """Each of the original's keys (config/legacy.py) admitted where it was written, marked deprecated with what
    it is read as; a section that was elsewhere (a top-level DATAREADER) admitted there."""
    from ednaml.config.legacy import DROPPED, RENAMED

    for old, new in RENAMED:
        _admit(schema, old, f"the original's spelling, read as {format_path(new)} (`ednaml migrate` rewrites it)")
    for old, message in DROPPED.items():
        _admit(schema, old, f"the original's: {message}")
    execution = schema["properties"]["EXECUTION"]["properties"]
    execution["CRAWLER"] = _deprecated("the original's crawler: a data reader (EXECUTION.DATAREADER) holds it here")
    execution["DATASET_PRELOAD"] = _deprecated(
        "the original's torchvision dataset: read as a TorchvisionDataset reader"
    )
    normalization = schema["properties"]["MODEL"]["properties"]["MODEL_NORMALIZATION"]
    normalization["enum"].append("")  # the original's "no normalization", read as none
    schema["properties"]["STORAGE"] = _deprecated("the original's storages: accepted, not used")
    backup = schema["properties"]["SAVE"]["properties"]["LOG_BACKUP"]
    backup["anyOf"] = [
        {"type": backup.pop("type")},
        {"type": "object", **_deprecated("storage backups: read as false")},
    ]
    schema["properties"]["DATAREADER"] = {
        **execution["DATAREADER"],
        **_deprecated("the original's later top-level section, read as EXECUTION.DATAREADER"),
    }
    for section in ("TRANSFORMATION", "TRAIN_TRANSFORMATION", "TEST_TRANSFORMATION"):
        _admit_transformation_keys(schema["properties"][section])


def _admit(schema: dict[str, Any], path: tuple, message: str) -> None:
    node: dict[str, Any] | None = schema
    for part in path[:-1]:
        node = _object_of(node.get("properties", {}).get(part) if part != "*" else node)
        if node is None:
            return
    if "properties" in node:
        node["properties"].setdefault(path[-1], _deprecated(message))


def _object_of(node: dict[str, Any] | None) -> dict[str, Any] | None:
    """The object schema inside a section's schema: a list section's entry, or itself."""
    if node is not None and isinstance(node.get("items"), dict):
        return node["items"]
    return node if node is not None and "properties" in node else None


def _admit_transformation_keys(section: dict[str, Any]) -> None:
    from ednaml.config.load import LEGACY_TRANSFORM_KEYS

    for old, new in LEGACY_TRANSFORM_KEYS.items():
        section["properties"].setdefault(old, _deprecated(f"the original's spelling, read as ARGS.{new}"))
