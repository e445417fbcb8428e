"""One registry for every kind of component: a dict per kind, one decorator, lazy built-ins."""

from __future__ import annotations

import ast
import copy
import fnmatch
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ednaml.errors import did_you_mean

ENTRY_POINT_GROUP = "ednaml.components"

# kind -> the modules whose @register decorators define its built-ins; imported only when the kind is
# first asked for. `ednaml list` reads their source instead (see `declared`), so it never pays for torch.
_BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "datareader": ("ednaml.data.readers", "ednaml.data.text", "ednaml.data.video", "ednaml.data.ecosystem"),
    "dataset": ("ednaml.data.readers", "ednaml.data.text", "ednaml.data.video", "ednaml.data.ecosystem"),
    "model": (
        "ednaml.models.classification",
        "ednaml.models.multi",
        "ednaml.models.text",
        "ednaml.models.video",
        "ednaml.models.backbones",
    ),
    "model_builder": ("ednaml.models.builders",),
    "trainer": ("ednaml.steps.classification",),
    "loss": ("ednaml.losses.classification", "ednaml.losses.metric_learning"),
    "optimizer": ("ednaml.optim.optimizers",),
    "optimizer_builder": ("ednaml.optim.optimizers",),
    "scheduler": ("ednaml.optim.schedulers",),
    "metric": ("ednaml.metrics",),
    "plugin": ("ednaml.plugins.builtin",),
    "deployment": ("ednaml.deploy.classification",),
}
# kind -> the torch module whose public classes (its __all__) the kind also resolves
_TORCH_MODULES = {"optimizer": "torch.optim", "scheduler": "torch.optim.lr_scheduler"}
KINDS: tuple[str, ...] = tuple(_BUILTIN_MODULES)


class LightningKind(NamedTuple):
    """A kind the `trainer:` section names (LightningCLI's `class_path` form)."""

    key: str  # the trainer key
    words: bool  # whether a plain word there is one of Lightning's settings ("ddp", "simple"), not a class
    bases: tuple[str, ...]  # what a class there must derive from
    modules: tuple[str, ...]  # the Lightning modules whose public classes any config may name, a checkpoint's too


LIGHTNING_KINDS: dict[str, LightningKind] = {
    "callback": LightningKind(
        "callbacks", False, ("lightning.pytorch.callbacks.Callback",), ("lightning.pytorch.callbacks",)
    ),
    "logger": LightningKind("logger", False, ("lightning.pytorch.loggers.Logger",), ("lightning.pytorch.loggers",)),
    "strategy": LightningKind(
        "strategy", True, ("lightning.pytorch.strategies.Strategy",), ("lightning.pytorch.strategies",)
    ),
    "accelerator": LightningKind(
        "accelerator", True, ("lightning.pytorch.accelerators.Accelerator",), ("lightning.pytorch.accelerators",)
    ),
    "profiler": LightningKind(
        "profiler", True, ("lightning.pytorch.profilers.Profiler",), ("lightning.pytorch.profilers",)
    ),
    "lightning_plugin": LightningKind(
        "plugins",
        True,
        (
            "lightning.pytorch.plugins.Precision",
            "lightning.pytorch.plugins.CheckpointIO",
            "lightning.pytorch.plugins.LayerSync",
            "lightning.fabric.plugins.ClusterEnvironment",
        ),
        ("lightning.pytorch.plugins", "lightning.fabric.plugins.environments"),
    ),
}

_components: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
_loaded_kinds: set[str] = set()
_entry_points_loaded = False


class RegistryError(LookupError):
    """A component name that does not resolve."""


@dataclass(frozen=True)
class Trust:
    """How far a config may name code: all of it (`whole`: the user's own files), or only the key paths the
    user typed on the command line (`typed`), as for a config a checkpoint or run folder carries."""

    whole: bool = True
    typed: frozenset[tuple] = frozenset()

    @classmethod
    def given(cls, trusted: bool, origins: Mapping[tuple, str] | None = None) -> Trust:
        """The trust of a config that is `trusted` or not, its flags (origins that start with `-`) the user's own."""
        return cls(trusted, frozenset(path for path, origin in (origins or {}).items() if str(origin).startswith("-")))

    def of(self, path: tuple) -> bool:
        """Whether the value at `path` may name code."""
        return self.whole or any(path[:n] in self.typed for n in range(1, len(path) + 1))


def untrusted_message(name: str, what: str) -> str:
    return (
        f"{name!r} is a dotted import path in a config from a checkpoint or run folder, which is data, not code: "
        f"EdnaML imports it only with --trust (or name {what})"
    )


def register(kind: str, name: str | None = None) -> Callable[[Any], Any]:
    """Register a class or function under `name` (default: its own name) for `kind`."""
    if kind not in _components:
        raise ValueError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")

    def decorator(obj: Any) -> Any:
        _components[kind][name or obj.__name__] = obj
        return obj

    return decorator


class _Registrar:
    """`@ednaml.register.loss("CenterLoss")` — one attribute per kind."""

    def __call__(self, kind: str, name: str | None = None) -> Callable[[Any], Any]:
        return register(kind, name)

    def __getattr__(self, kind: str) -> Callable[..., Callable[[Any], Any]]:
        if kind not in _components:
            raise AttributeError(f"no component kind {kind!r}; kinds are {', '.join(KINDS)}")
        return lambda name=None: register(kind, name)


registrar = _Registrar()


def _load_builtins(kind: str) -> None:
    if kind not in _loaded_kinds:
        _loaded_kinds.add(kind)
        for module in _BUILTIN_MODULES[kind]:
            importlib.import_module(module)
    _load_entry_points()


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()  # importing the module runs its @register decorators


def import_sources(sources: Iterable[str], trusted: bool = True) -> list[str]:
    """Import user files (`my_losses.py`) or modules (`mypkg.losses`) so their registrations run.

    A relative file path is relative to the working directory (a config's IMPORTS arrive absolute: see
    config.paths). Returns the sources as imported: files as absolute paths, modules by name. Sources that
    are not `trusted` (a checkpoint's or run folder's IMPORTS) are refused with RegistryError, nothing imported.
    """
    sources = list(sources)
    if sources and not trusted:
        raise RegistryError(
            f"{sources} come from a checkpoint or run folder, which is data, not code: EdnaML imports "
            "them only with --trust (read them first), or give each file with --import: one with the "
            "content the run recorded stands for it"
        )
    imported = []
    for source in sources:
        path = Path(source)
        if source.endswith(".py") or path.exists():
            if not path.exists():
                raise FileNotFoundError(
                    f"file {source!r} does not exist" + ("" if path.is_absolute() else " in the working directory")
                )
            imported.append(str(path.resolve()))
            module_name = user_module_name(path)
            if module_name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            sys.path.insert(0, str(path.parent.resolve()))
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.parent.resolve()))
        else:
            importlib.import_module(source)
            imported.append(source)
    return imported


USER_MODULE = "ednaml_user_"  # the prefix of the module a user's file is imported as


def user_module_name(path: Path) -> str:
    """The module a user's file is imported as: the same in every process for the same file (a spawned worker
    finds its classes by it), unlike Python's own per-process `hash`."""
    import hashlib

    return f"{USER_MODULE}{path.stem}_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"


def _import_dotted(path: str) -> Any:
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return None


def _fallback(kind: str, name: str) -> Any:
    """Names that resolve outside the registry: every torch.optim and lr_scheduler class."""
    if kind == "optimizer":
        import torch.optim

        obj = getattr(torch.optim, name, None)
        return obj if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) else None
    if kind == "scheduler":
        import torch.optim.lr_scheduler as sched

        obj = getattr(sched, name, None)
        return obj if inspect.isclass(obj) and issubclass(obj, sched.LRScheduler) else None
    return None


def names(kind: str) -> list[str]:
    """Every name `kind` resolves, built-ins and registered ones, sorted."""
    _load_builtins(kind)
    found = set(_components[kind])
    if kind == "optimizer":
        import torch.optim

        found |= {n for n in dir(torch.optim) if _fallback(kind, n) is not None}
    if kind == "scheduler":
        import torch.optim.lr_scheduler as sched

        found |= {n for n in dir(sched) if not n.startswith("_") and _fallback(kind, n) is not None}
    return sorted(found)


def _kind_bases(kind: str) -> tuple[type, ...]:
    """The classes a component of `kind` named by a dotted path must derive from (none: register it instead)."""
    import torch

    if kind in ("model", "loss"):
        return (torch.nn.Module,)
    if kind == "optimizer":
        return (torch.optim.Optimizer,)
    if kind == "scheduler":
        return (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if kind == "dataset":
        return (torch.utils.data.Dataset,)
    if kind == "datareader":
        from ednaml.data.base import DataReader

        return (DataReader,)
    if kind == "trainer":
        from ednaml.steps import StepLogic

        return (StepLogic,)
    if kind == "metric":
        from torchmetrics import Metric

        return (Metric,)
    if kind == "deployment":
        from ednaml.deploy import Deploy

        return (Deploy,)
    if kind == "plugin":
        from ednaml.plugins import ModelPlugin

        return (ModelPlugin,)
    return ()


def get(kind: str, name: str, trusted: bool = True) -> Any:
    """Resolve a component by registered name or dotted import path; raise RegistryError with a suggestion.

    Every name a config gives becomes a Python object here (the `trainer:` section's `class_path`s too, see
    LIGHTNING_KINDS). A dotted path resolves only to a class of its kind (an nn.Module for a model, an
    Optimizer, ...); from a config that is not `trusted` (one a checkpoint or run folder carries) it is not
    imported at all: only registered components and Lightning's own classes are named then.
    """
    if kind in LIGHTNING_KINDS:
        return _lightning_class(kind, name, trusted)
    _load_builtins(kind)
    if name in _components[kind]:
        return _components[kind][name]
    obj = _fallback(kind, name)
    if obj is None and "." in name:
        label = kind.replace("_", " ")
        if not trusted:
            raise RegistryError(untrusted_message(name, f"a registered {label}"))
        obj = _import_dotted(name)
        bases = _kind_bases(kind)
        if obj is not None and not (inspect.isclass(obj) and bases and issubclass(obj, bases)):
            wanted = " or ".join(f"{b.__module__}.{b.__qualname__}" for b in bases)
            raise RegistryError(
                f"{name!r} is not a {label}: a dotted path must name a subclass of {wanted}"
                if bases
                else f"{name!r}: a {label} is found by its registered name only; register it with "
                f"@ednaml.register.{kind} in a file given to --import"
            )
    if obj is None:
        raise RegistryError(unknown_name_message(kind, name))
    return obj


def _lightning_public(kind: str) -> dict[str, Any]:
    """`{name: class}` of the public classes of `kind` in Lightning's own modules, by short and dotted name."""
    found: dict[str, Any] = {}
    for module_name in LIGHTNING_KINDS[kind].modules:
        module = importlib.import_module(module_name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr, None)
            if inspect.isclass(obj):
                for spelling in (attr, f"{module_name}.{attr}", f"{obj.__module__}.{obj.__qualname__}"):
                    found.setdefault(spelling, obj)
    return found


def _lightning_class(kind: str, name: str, trusted: bool) -> Any:
    """A `trainer:` section's class by name: Lightning's own by short or dotted name; any other dotted path
    only where `trusted`, and then only a subclass of the kind's Lightning base."""
    label = kind.replace("lightning_", "Lightning ").replace("_", " ")
    public = _lightning_public(kind)
    if name in public:
        return public[name]
    if "." not in name:
        shown = sorted(n for n in public if "." not in n)
        raise RegistryError(
            f"{name!r} is not one of Lightning's {label}s" + did_you_mean(name, shown, f"; they are {', '.join(shown)}")
        )
    if not trusted:
        raise RegistryError(untrusted_message(name, f"one of Lightning's own {label}s"))
    bases = tuple(_import_dotted(base) for base in LIGHTNING_KINDS[kind].bases)
    obj = _import_dotted(name)
    if obj is None:
        raise RegistryError(f"{name!r} cannot be imported")
    if not (inspect.isclass(obj) and issubclass(obj, bases)):
        raise RegistryError(
            f"{name!r} is not a {label}: it must be a subclass of " + " or ".join(LIGHTNING_KINDS[kind].bases)
        )
    return obj


def build(kind: str, component: Any, kwargs: Mapping[str, Any], /, *args: Any, at: tuple = (), **supplied: Any) -> Any:
    """Call `component` (a name of `kind`, or the class itself) with its own copy of a config's `kwargs` and
    what EdnaML supplies (`args`, `supplied`), after checking the kwargs as validation does
    (config/arguments.py); a problem raises ConfigError naming the key path `at`. The components a config
    names with their kwargs (models, losses, optimizers, schedulers, step logic, a reader's crawler,
    dataset and transforms, plugins, deployments, metrics) are made here."""
    from ednaml.config.arguments import check_arguments
    from ednaml.errors import ConfigError

    obj = get(kind, component) if isinstance(component, str) else component
    if problems := check_arguments(kind, obj, kwargs, at):
        raise ConfigError(problems)
    return obj(*args, **copy.deepcopy(dict(kwargs)), **supplied)


def unknown_name_message(kind: str, name: str) -> str:
    from ednaml.config.legacy import outside_message

    if isinstance(name, str) and (outside := outside_message(kind, name)):  # the original's, not a misspelling
        return outside
    return f"{name!r} is not a known {kind.replace('_', ' ')}" + did_you_mean(
        name, names(kind), f" (see `ednaml list {kind}`)"
    )


def describe(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def catalogue(kind: str | None = None, pattern: str = "*") -> dict[str, list[tuple[str, str]]]:
    """`{kind: [(name, one-line description)]}` for `ednaml list`, filtered by a wildcard pattern.

    Built-ins come from their source files and torch's from its `__all__`, without importing either;
    components registered at run time or by installed packages are imported and described as well.
    """
    _load_entry_points()
    kinds = [kind] if kind else list(KINDS)
    listing = {}
    for k in kinds:
        rows = dict(declared(k))
        rows.update((n, describe(obj)) for n, obj in _components[k].items())
        listing[k] = sorted((n, d) for n, d in rows.items() if fnmatch.fnmatchcase(n, pattern))
    return listing


def declared(kind: str) -> list[tuple[str, str]]:
    """(name, first docstring line) of every built-in of `kind`, read from source, nothing imported."""
    rows = [(name, doc) for module in _BUILTIN_MODULES[kind] for k, name, doc in _registrations(module) if k == kind]
    if kind in _TORCH_MODULES:
        rows += [(name, f"{_TORCH_MODULES[kind]}.{name}") for name in _torch_public(_TORCH_MODULES[kind])]
    return rows


def _source(module: str) -> Path:
    spec = importlib.util.find_spec(module.partition(".")[0])  # a top-level package: found, not imported
    path = Path(spec.origin).parent.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _registrations(module: str) -> list[tuple[str, str, str]]:
    """(kind, name, first docstring line) of each `@register("kind", "name")` in a module's source."""
    found = []
    for node in ast.walk(ast.parse(_source(module).read_text(encoding="utf-8"))):
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and getattr(decorator.func, "id", None) == "register"
                and all(isinstance(arg, ast.Constant) for arg in decorator.args)
            ):
                kind, name = decorator.args[0].value, decorator.args[1].value if len(decorator.args) > 1 else node.name
                found.append((kind, name, (ast.get_docstring(node) or "").split("\n")[0]))
    return found


def _torch_public(module: str) -> list[str]:
    """The classes a torch module exports (the capitalised names of its literal __all__)."""
    for node in ast.parse(_source(module).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [name for name in ast.literal_eval(node.value) if name[:1].isupper()]
    return []
