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
from pathlib import Path
from typing import Any

from ednaml import kinds
from ednaml.errors import did_you_mean
from ednaml.kinds import Kind, Trust  # noqa: F401 - Trust: registry.get's trusted, for its callers

ENTRY_POINT_GROUP = "ednaml.components"

# kind -> {name: component} of what is registered; a kind's built-ins (its Kind.builtins) are imported only
# when the kind is first asked for. `ednaml list` reads their source instead (see `declared`), so it never
# pays for torch.
_components: dict[str, dict[str, Any]] = {}
_loaded_kinds: set[str] = set()
_entry_points_loaded = False


class RegistryError(LookupError):
    """A component name that does not resolve."""


def untrusted_message(name: str, what: str) -> str:
    return (
        f"{name!r} is a dotted import path in a config from a checkpoint or run folder, which is data, not code: "
        f"EdnaML imports it only with --trust (or name {what})"
    )


def kind_of(kind: str) -> Kind:
    """The declaration of `kind` (ednaml/kinds.py; the original's name of a kind, kinds.RENAMED_KINDS, is read
    as this version's); an unknown kind raises RegistryError naming the kinds."""
    kind = kinds.RENAMED_KINDS.get(kind, kind)
    if kind not in kinds.KINDS:
        raise RegistryError(
            f"unknown component kind {kind!r}"
            + did_you_mean(kind, list(kinds.KINDS), f"; kinds are {', '.join(kinds.KINDS)}")
        )
    return kinds.KINDS[kind]


def register(kind: str, name: str | None = None, *, override: bool = False) -> Callable[[Any], Any]:
    """Register a class or function under `name` (default: its own name) for `kind`.

    A name the kind already resolves (a built-in, torch's or another registration) is refused, unless
    `override=True` says the new component is meant to replace it."""
    declaration = kind_of(kind)
    kind = declaration.name
    if not declaration.registered:
        raise RegistryError(
            f"{kind} components are Lightning's classes, named under trainer.{declaration.trainer_key} by their "
            "dotted path; nothing is registered for them"
        )

    def decorator(obj: Any) -> Any:
        key = name or obj.__name__
        if getattr(obj, "__module__", None) not in declaration.builtins:
            _load_builtins(kind)  # a user's component meets the built-ins it could shadow
        existing = _components.setdefault(kind, {}).get(key, _public(kind).get(key))
        if existing is not None and not override and _identity(existing) != _identity(obj):
            raise RegistryError(
                f"{declaration.label} {key!r} is already {_identity(existing)}; {_where(obj)} registers "
                f"{_identity(obj)} under the same name: choose another name, or register it with "
                f"override=True to replace it"
            )
        _components[kind][key] = obj
        return obj

    return decorator


def _identity(obj: Any) -> str:
    """A component as a name: module and qualified name (the same class imported twice is one component)."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _where(obj: Any) -> str:
    source = getattr(sys.modules.get(getattr(obj, "__module__", "")), "__file__", None)
    return source or "a component"


class _Registrar:
    """`@ednaml.register.loss("CenterLoss")` — one attribute per kind."""

    def __call__(self, kind: str, name: str | None = None, *, override: bool = False) -> Callable[[Any], Any]:
        return register(kind, name, override=override)

    def __getattr__(self, kind: str) -> Callable[..., Callable[[Any], Any]]:
        if kind not in kinds.registered():
            raise AttributeError(f"no component kind {kind!r}; kinds are {', '.join(kinds.registered())}")
        return lambda name=None, *, override=False: register(kind, name, override=override)


registrar = _Registrar()


def _load_builtins(kind: str) -> None:
    if kind not in _loaded_kinds:
        _loaded_kinds.add(kind)
        for module in kind_of(kind).builtins:
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
            except BaseException:
                del sys.modules[module_name]  # a file that failed is imported afresh when it is given again
                raise
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


def _public(kind: str) -> dict[str, Any]:
    """`{name: class}` of the public classes of `kind`'s `public` modules (their `__all__`) that derive from its
    bases, by short and by dotted name: every torch.optim optimizer, every Lightning callback."""
    declaration = kind_of(kind)
    if not declaration.public:
        return {}
    if kind not in _public_classes:
        bases = _bases(kind)
        found: dict[str, Any] = {}
        for module_name in declaration.public:
            module = importlib.import_module(module_name)
            for attr in getattr(module, "__all__", ()):
                obj = getattr(module, attr, None)
                if inspect.isclass(obj) and issubclass(obj, bases):
                    for spelling in (attr, f"{module_name}.{attr}", f"{obj.__module__}.{obj.__qualname__}"):
                        found.setdefault(spelling, obj)
        _public_classes[kind] = found
    return _public_classes[kind]


_public_classes: dict[str, dict[str, Any]] = {}


def names(kind: str) -> list[str]:
    """Every name `kind` resolves without a dotted path, built-ins and registered ones, sorted."""
    kind = kind_of(kind).name
    if kind_of(kind).registered:
        _load_builtins(kind)
    return sorted(set(_components.get(kind, {})) | {n for n in _public(kind) if "." not in n})


def _bases(kind: str) -> tuple[type, ...]:
    """The classes a component of `kind` named by a dotted path must derive from (none: register it instead)."""
    return tuple(_import_dotted(base) for base in kind_of(kind).bases)


def get(kind: str, name: str, trusted: bool = True) -> Any:
    """Resolve a component by name or dotted import path; raise RegistryError with a suggestion.

    Every name a config gives becomes a Python object here, the `trainer:` section's `class_path`s too. The
    order is the kind's (kinds.Kind): registered, then public, then a dotted path, which resolves only to a
    subclass of the kind's bases (an nn.Module for a model, an Optimizer, a Lightning Callback) and from a
    config that is not `trusted` (one a checkpoint or run folder carries) is not imported at all.
    """
    declaration = kind_of(kind)
    kind = declaration.name
    if declaration.registered:
        _load_builtins(kind)
        if name in _components.get(kind, {}):
            return _components[kind][name]
    public = _public(kind)
    if name in public:
        return public[name]
    if "." not in name:
        raise RegistryError(unknown_name_message(kind, name))
    what = (
        f"a registered {declaration.label}"
        if declaration.registered
        else f"one of Lightning's own {declaration.label}s"
    )
    if not trusted:
        raise RegistryError(untrusted_message(name, what))
    obj = _import_dotted(name)
    if obj is None:
        raise RegistryError(
            unknown_name_message(kind, name) if declaration.registered else f"{name!r} cannot be imported"
        )
    if not (bases := _bases(kind)):
        raise RegistryError(
            f"{name!r}: {declaration.a} is found by its registered name only; register it with "
            f"@ednaml.register.{kind} in a file given to --import"
        )
    if not (inspect.isclass(obj) and issubclass(obj, bases)):
        wanted = " or ".join(declaration.bases)
        raise RegistryError(f"{name!r} is not {declaration.a}: a dotted path must name a subclass of {wanted}")
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
    return f"{name!r} is not a known {kind_of(kind).label}" + did_you_mean(
        name, names(kind), f" (see `ednaml list {kind}`)"
    )


def kinds_table() -> str:
    """The kinds as a markdown table (docs/components.md holds it): each kind, what it is, the config keys that
    name one (the schema's marks, or the `trainer:` key), what a class named by a dotted path derives from."""
    from ednaml.config.schema import component_keys

    def format_path(path: tuple) -> str:
        indices = iter("ij")
        return "".join(f"[{next(indices)}]" if part == "*" else f".{part}" for part in path).lstrip(".")

    named = component_keys()
    rows = ["| kind | what it is | named by | a dotted path names a subclass of |", "|---|---|---|---|"]
    for name, kind in kinds.KINDS.items():
        keys = [f"trainer.{kind.trainer_key}"] if kind.trainer_key else [format_path(k) for k in named.get(name, [])]
        bases = " or ".join(f"`{b}`" for b in kind.bases) or "(registered names only)"
        rows.append(f"| `{name}` | {kind.doc} | {', '.join(f'`{k}`' for k in keys)} | {bases} |")
    return "\n".join(rows)


def describe(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def catalogue(kind: str | None = None, pattern: str = "*") -> dict[str, list[tuple[str, str]]]:
    """`{kind: [(name, one-line description)]}` for `ednaml list`, filtered by a wildcard pattern.

    Built-ins come from their source files and torch's from its `__all__`, without importing either;
    components registered at run time or by installed packages are imported and described as well.
    """
    _load_entry_points()
    listing = {}
    for k in [kind_of(kind).name] if kind else list(kinds.KINDS):
        rows = dict(declared(k))
        rows.update((n, describe(obj)) for n, obj in _components.get(k, {}).items())
        listing[k] = sorted((n, d) for n, d in rows.items() if fnmatch.fnmatchcase(n, pattern))
    return listing


def declared(kind: str) -> list[tuple[str, str]]:
    """(name, first docstring line) of every built-in of `kind`, read from source, nothing imported."""
    declaration = kind_of(kind)
    rows = [(name, doc) for module in declaration.builtins for k, name, doc in _registrations(module) if k == kind]
    return rows + [(name, f"{module}.{name}") for module in declaration.public for name in _public_names(module)]


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


def _public_names(module: str) -> list[str]:
    """The classes a module exports (the capitalised names of its literal __all__), read from its source."""
    for node in ast.parse(_source(module).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [name for name in ast.literal_eval(node.value) if name[:1].isupper()]
    return []
