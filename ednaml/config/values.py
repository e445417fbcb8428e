"""Config values: YAML read safely and within limits, command-line values, and values at key paths."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import yaml

MAX_CONFIG_NODES = 100_000  # after aliases are expanded: a small file of nested aliases cannot become millions
MAX_CONFIG_DEPTH = 100  # levels of mappings and lists: a config has a handful; Python's stack ends near a thousand


class YAMLLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's C parser where installed
    """A safe loader reading numbers as YAML 1.2 and OmegaConf do: `3e-3` and `1E5` are floats (YAML 1.1
    needs a dot, `3.0e-3`, and reads `3e-3` as a string)."""


YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


class Replace(dict):
    """A mapping tagged `!replace`: it replaces the mapping below it instead of merging into it."""


class _Delete:
    """`!delete` (or `~KEY.PATH` on the command line): the key is removed from the layers below."""

    def __repr__(self) -> str:
        return "!delete"

    def __deepcopy__(self, memo: dict) -> _Delete:  # one marker, compared by identity
        return self


DELETE = _Delete()


def _construct_replace(loader: yaml.SafeLoader, node: yaml.Node) -> Replace:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!replace tags a mapping ({key: value, ...})", node.start_mark
        )
    return Replace(loader.construct_mapping(node, deep=True))


def _construct_delete(loader: yaml.SafeLoader, node: yaml.Node) -> _Delete:
    if not isinstance(node, yaml.ScalarNode) or node.value:
        raise yaml.constructor.ConstructorError(
            None, None, "!delete takes no value (write `KEY: !delete`)", node.start_mark
        )
    return DELETE


YAMLLoader.add_constructor("!replace", _construct_replace)
YAMLLoader.add_constructor("!delete", _construct_delete)


def parse_yaml(text: str) -> Any:
    """YAML text -> Python data: safe (no Python objects), numbers as YAML 1.2 reads them, at most
    MAX_CONFIG_DEPTH levels deep and MAX_CONFIG_NODES values once aliases are expanded."""
    _check_nesting(text)
    data = yaml.load(text, Loader=YAMLLoader)  # noqa: S506 - a safe loader
    _check_expansion(data)
    return data


class TooLarge(yaml.YAMLError):
    """YAML that is well-formed but expands beyond what a config may hold."""


def _check_nesting(text: str) -> None:
    """Nesting deeper than MAX_CONFIG_DEPTH as written is refused before anything is built: building it
    would recurse that deep."""
    depth = 0
    for event in yaml.parse(text, Loader=YAMLLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                raise TooLarge(
                    f"it nests more than {MAX_CONFIG_DEPTH} levels deep; a config nests at most {MAX_CONFIG_DEPTH}"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(data: Any) -> None:
    """Values and depth once aliases are expanded, walked without recursion; a shared (aliased) mapping or
    list is counted once per use and walked once."""
    measured: dict[int, tuple[int, int]] = {}  # id -> (values, depth)
    active: set[int] = set()  # the mappings and lists above the one being walked

    def children(value: Any) -> list[Any]:
        return list(value.values() if isinstance(value, dict) else value)

    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        value, walked = stack.pop()
        if not isinstance(value, (dict, list)):
            continue
        key = id(value)
        if walked:
            below = children(value)
            inner = [measured[id(c)] for c in below if isinstance(c, (dict, list))]
            measured[key] = (
                1 + len(below) - len(inner) + sum(n for n, _ in inner),
                1 + max((d for _, d in inner), default=0),
            )
            active.discard(key)
        elif key in active:
            raise TooLarge("an alias refers to a mapping or list that contains it")
        elif key not in measured:
            active.add(key)
            stack.append((value, True))
            stack += [(child, False) for child in children(value)]
    total, depth = measured.get(id(data), (1, 0))
    if total > MAX_CONFIG_NODES:
        raise TooLarge(f"its aliases expand to {total:,} values; a config holds at most {MAX_CONFIG_NODES:,}")
    if depth > MAX_CONFIG_DEPTH:
        raise TooLarge(f"its aliases nest {depth:,} levels deep; a config nests at most {MAX_CONFIG_DEPTH}")


def parse_value(text: str) -> Any:
    """A command-line value, read as YAML: '3' -> 3, '5e-4' -> 0.0005, '[1,2]' -> [1, 2], 'null' -> None."""
    try:
        return parse_yaml(text)
    except yaml.YAMLError:
        return text


def get_path(cfg: dict[str, Any], path: Sequence[str | int], default: Any = None) -> Any:
    node: Any = cfg
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return default
    return node


def as_mapping(value: Any) -> Any:
    """A string holding a dict ('{"step_size": 20}', as old configs wrote kwargs) as the dict; anything else as
    it is."""
    if isinstance(value, str):
        for loader in (json.loads, parse_yaml):
            try:
                parsed = loader(value)
            except (ValueError, yaml.YAMLError):
                continue
            if isinstance(parsed, dict):
                return parsed
    return value
