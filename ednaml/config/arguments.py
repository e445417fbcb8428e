"""The keyword arguments a component takes, checked one way wherever they are: by validation, before a
run, and by `registry.build` as it calls the component."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ednaml import kinds
from ednaml.errors import Problem, did_you_mean, show


def parameters(obj: Any) -> tuple[list[str], bool, list[str]]:
    """The keyword parameters of `obj`, whether it takes **kwargs, and the parameters without a default."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return [], True, []
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    keyword = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    return [p.name for p in keyword], var_kw, [p.name for p in keyword if p.default is inspect.Parameter.empty]


def check_arguments(kind: str, obj: Any, kwargs: Any, path: tuple) -> list[Problem]:
    """The problems of `kwargs` for `obj`, a component of `kind` (or a part, see kinds.PARTS): each must be a parameter
    that EdnaML does not pass itself, and (where the kind checks them) every required parameter is given
    or filled. A component's own `check_kwargs(kwargs) -> [(key, message)]` rules come first."""
    if not isinstance(kwargs, Mapping):
        return [Problem(path, f"{show(kwargs)} is not a mapping of kwargs")]
    arguments = kinds.arguments(kind)
    problems = []
    own_check = getattr(obj, "check_kwargs", None)
    if callable(own_check):
        problems += [Problem(path + (key,), message) for key, message in own_check(dict(kwargs))]
    accepted, var_kw, required = parameters(obj)
    label = getattr(obj, "__name__", str(obj))
    if arguments.filled is not None:
        for name in required:
            if name not in kwargs and name not in arguments.supplied and name not in arguments.filled:
                problems.append(
                    Problem(path + (name,), f"is missing: {label} needs it (a required argument, no default)")
                )
    takes = [p for p in accepted if p not in arguments.supplied]
    for name in kwargs:
        if name in arguments.supplied:
            problems.append(Problem(path + (name,), f"is set by EdnaML for {label}; remove it here"))
        elif name not in accepted and not var_kw:
            hint = did_you_mean(name, takes) or (
                f"; it takes: {', '.join(takes)}" if takes else "; it takes no arguments"
            )
            problems.append(Problem(path + (name,), f"{label} takes no argument {name!r}{hint}"))
    return problems
