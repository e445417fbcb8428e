"""Python type hints and signatures as JSON Schema (draft-07, what YAML editors read): the pieces `ednaml schema`
makes the config's schema of. Plain data: the standard library's typing only."""

from __future__ import annotations

import collections.abc
import datetime
import enum
import inspect
import json
import os
import types
import typing
from pathlib import PurePath
from typing import Any

_SCALARS: dict[type, dict[str, Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bytes: {"type": "string"},
    type(None): {"type": "null"},
    dict: {"type": "object"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    set: {"type": "array"},
    frozenset: {"type": "array"},
}
_ARRAYS = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Set)
_OBJECTS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def of_type(hint: Any) -> dict[str, Any]:
    """The schema of the values a type hint admits; {} (anything) where JSON cannot say (a class, a callable)."""
    if hint in (inspect.Parameter.empty, Any, object):
        return {}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    if isinstance(hint, type) and issubclass(hint, (PurePath, os.PathLike)):
        return {"type": "string"}
    if hint is datetime.timedelta:
        return {}
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        parts = [of_type(a) for a in args]
        return {} if {} in parts else {"anyOf": _merged(parts)}
    if origin in _ARRAYS:
        items = [of_type(a) for a in args if a is not Ellipsis]
        return {"type": "array", **({"items": items[0]} if len(items) == 1 and items[0] else {})}
    if origin in _OBJECTS:
        return {"type": "object"}
    return {}


def _merged(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Union members, each once."""
    seen, out = set(), []
    for part in parts:
        key = json.dumps(part, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(part)
    return out


def admits_null(schema: dict[str, Any]) -> bool:
    """Whether null is one of the values a schema admits."""
    if not schema or schema.get("type") == "null" or None in schema.get("enum", ()):
        return True
    return any(admits_null(part) for part in schema.get("anyOf", ()))


def plain_default(value: Any) -> tuple[bool, Any]:
    """(whether it is one, the default as JSON) of a parameter's default; objects are not written."""
    if value is inspect.Parameter.empty:
        return False, None
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False, None
    return True, value


def of_signature(obj: Any, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object schema of the keyword arguments of a class or function (less `leave_out`): each with its
    type and default; other keys refused unless it takes **kwargs."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return {"type": "object"}
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - a hint that does not resolve: that argument takes anything
        hints = {}
    properties: dict[str, Any] = {}
    open_ended = False
    for parameter in list(signature.parameters.values())[1 if inspect.isclass(obj) else 0 :]:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
        if parameter.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            continue
        if parameter.name in leave_out:
            continue
        schema = of_type(hints.get(parameter.name, parameter.annotation))
        if parameter.default is None and schema and not admits_null(schema):  # `x: int = None`: null is meant too
            schema = {"anyOf": [schema, {"type": "null"}]}
        has_default, default = plain_default(parameter.default)
        if has_default:
            schema["default"] = default
        properties[parameter.name] = schema
    return {"type": "object", "properties": properties, "additionalProperties": open_ended}
