"""Typed, read-only views of a resolved config: one frozen class per schema section, generated from schema.py.

Components receive the section they use (`build_model(config.MODEL, ...)`, `Criterion(config.LOSS, ...)`),
not the whole dict. A view is read as `section.BATCH_SIZE` or, like the YAML, `section["BATCH_SIZE"]`, so
a component written against the dict keeps working; nothing can be assigned through it. Free-form values
(kwargs mappings, the `trainer:` section) are deep copies in a dict that refuses changes, and
`registry.build` gives each component a deep copy of its kwargs, so no component can change the config
another one reads. Dead keys (accepted for old configs, never used) have no attribute.
`Config.as_dict()` gives the plain config back, for the run folder and checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, Optional, Union

from ednaml.config.schema import ANY, DATAREADER, LIGHTNING_KEYS, SCHEMA, Key, ListOf, Section


class SectionView(Mapping):
    """The base of every generated section class: attribute access, and read-only mapping access by key."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key.startswith("_") or key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return (key for key in self.__dataclass_fields__ if not key.startswith("_"))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _annotation(key: Key) -> Any:
    types = [
        Any if t is ANY else Mapping[str, Any] if t is dict else tuple[Any, ...] if t is list else t for t in key.types
    ]
    kind = Union[tuple(types)] if len(types) > 1 else types[0]  # noqa: UP007 - a union built at run time
    return Optional[kind] if key.optional else kind  # noqa: UP045


class FrozenDict(dict):
    """A dict that cannot be changed: a section's kwargs, passed on with `**` as any dict is."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a config section is read-only; copy it (dict(...)) to change it")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple:  # copied and pickled (spawned workers) as a new FrozenDict
        return FrozenDict, (dict(self),)


def _frozen(value: Any) -> Any:
    """A mapping as a FrozenDict and a list as a tuple, both over private copies."""
    if isinstance(value, dict):
        return FrozenDict(copy.deepcopy(value))
    if isinstance(value, list):
        return tuple(copy.deepcopy(value))
    return copy.deepcopy(value)


_classes: dict[int, type] = {}  # id(Section) -> its generated class (TRAIN_ and TEST_TRANSFORMATION share one)


def section_class(name: str, section: Section) -> type:
    """The frozen class of `section`: one field per live key, typed from the schema, documented by its doc."""
    if id(section) in _classes:
        return _classes[id(section)]
    if name in globals():  # one name, one class: a view pickles by its class's name
        raise RuntimeError(f"config/sections.py: two schema sections would both be {name}")
    fields = []
    for key, spec in section.keys.items():
        if isinstance(spec, Section):
            fields.append((key, section_class(_camel(key) + "Section", spec)))
        elif not spec.dead:
            fields.append((key, _annotation(spec)))
    cls = dataclasses.make_dataclass(name, fields, bases=(SectionView,), frozen=True, slots=True, eq=False)
    cls.__doc__ = section.doc or f"one {name} entry"
    cls.__module__ = __name__
    globals()[name] = _classes[id(section)] = cls  # importable by name, so that a view pickles
    return cls


def _view(cls: type, section: Section, value: dict[str, Any]) -> Any:
    """The `cls` view of `value`, a resolved `section`."""
    kwargs = {}
    for key, spec in section.keys.items():
        if isinstance(spec, Section):
            kwargs[key] = _view(cls.__dataclass_fields__[key].type, spec, value[key])
        elif not spec.dead:
            kwargs[key] = _frozen(value[key])
    return cls(**kwargs)


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


# One class per section that has keys: ExecutionSection, ModelSection, ..., and LossEntry, OptimizerEntry,
# SchedulerEntry, ModelPluginEntry for the entries of list sections (LOSS_OPTIMIZER's are OptimizerEntry).
_SECTION_CLASSES = {
    name: section_class(_camel(name) + "Entry", spec.entry)
    if isinstance(spec, ListOf)
    else section_class(_camel(name) + "Section", spec)
    for name, spec in SCHEMA.items()
    if (spec.entry if isinstance(spec, ListOf) else spec).keys
}
ExecutionSection, DatareaderSection = _SECTION_CLASSES["EXECUTION"], _classes[id(DATAREADER)]
SaveSection, TransformationSection, ModelSection = (
    _SECTION_CLASSES["SAVE"],
    _SECTION_CLASSES["TRANSFORMATION"],
    _SECTION_CLASSES["MODEL"],
)
DeploymentSection, LoggingSection = _SECTION_CLASSES["DEPLOYMENT"], _SECTION_CLASSES["LOGGING"]
LossEntry, OptimizerEntry, SchedulerEntry = (
    _SECTION_CLASSES["LOSS"],
    _SECTION_CLASSES["OPTIMIZER"],
    _SECTION_CLASSES["SCHEDULER"],
)
ModelPluginEntry = _SECTION_CLASSES["MODEL_PLUGIN"]


def _as_dict(self: Any) -> dict[str, Any]:
    """The plain config this view was made from (a copy): what the run folder and checkpoints record."""
    return copy.deepcopy(self._source)


Config = dataclasses.make_dataclass(
    "Config",
    [(name, tuple[cls, ...] if isinstance(SCHEMA[name], ListOf) else cls) for name, cls in _SECTION_CLASSES.items()]
    + [(name, _annotation(key)) for name, key in LIGHTNING_KEYS.items()]
    + [("_source", dict, dataclasses.field(repr=False))],
    bases=(SectionView,),
    frozen=True,
    slots=True,
    eq=False,
    namespace={"as_dict": _as_dict},
)
Config.__doc__ = "A resolved config, section by section; list sections (LOSS, OPTIMIZER, ...) are tuples of entries."
Config.__module__ = __name__


def sections(config: Mapping[str, Any]) -> Any:
    """The typed, read-only view of a resolved config (every section present, defaults filled); a view is
    returned as it is."""
    if isinstance(config, Config):
        return config
    kwargs: dict[str, Any] = {}
    for name, cls in _SECTION_CLASSES.items():
        spec = SCHEMA[name]
        if isinstance(spec, ListOf):
            kwargs[name] = tuple(_view(cls, spec.entry, entry) for entry in config[name])
        else:
            kwargs[name] = _view(cls, spec, config[name])
    kwargs.update((name, _frozen(config[name])) for name in LIGHTNING_KEYS)
    return Config(**kwargs, _source=copy.deepcopy(dict(config)))
