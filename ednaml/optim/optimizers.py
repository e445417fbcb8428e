"""Parameter groups -> torch param groups with per-parameter lr / weight decay -> optimizers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ednaml import registry
from ednaml.registry import register
from ednaml.utils import text_table

if TYPE_CHECKING:
    from ednaml.config import sections

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class GroupRow:
    """One row of the resolved parameter-group table (one torch param group)."""

    group: str
    optimizer: str
    kind: str
    tensors: int
    parameters: int
    lr: float
    weight_decay: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_into_groups(
    model: nn.Module, groups: list[str] | dict[str, list[str]]
) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Every trainable parameter into exactly one MODEL.PARAMETER_GROUPS group.

    A list of names: the model decides (`model.parameter_groups(names)`), or one group holds everything.
    A mapping `name: [module prefixes]`: the longest matching prefix decides.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if isinstance(groups, Mapping):
        out: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in groups}
        unassigned = []
        for name, param in named:
            best = max(
                (
                    (len(prefix), g)
                    for g, prefixes in groups.items()
                    for prefix in prefixes
                    if name == prefix or name.startswith(prefix.rstrip(".") + ".")
                ),
                default=None,
            )
            if best is None:
                unassigned.append(name)
            else:
                out[best[1]].append((name, param))
        if unassigned:
            raise ValueError(
                f"MODEL.PARAMETER_GROUPS: parameters in no group: {', '.join(unassigned[:5])}"
                f"{' ...' if len(unassigned) > 5 else ''}; add their module prefix to a group"
            )
        return out
    if len(groups) == 1:
        return {groups[0]: named}
    groups = list(groups)
    if not hasattr(model, "parameter_groups"):
        raise ValueError(
            f"MODEL.PARAMETER_GROUPS names {len(groups)} groups but {type(model).__name__} defines no "
            "parameter_groups(); give the groups as 'name: [module prefixes]'"
        )
    decided = model.parameter_groups(list(groups))
    counts: dict[str, int] = {}
    for group in decided.values():
        for name, _ in group:
            counts[name] = counts.get(name, 0) + 1
    missing = [n for n, _ in named if n not in counts]
    twice = [n for n, c in counts.items() if c > 1]
    if missing or twice or set(decided) != set(groups):
        raise ValueError(
            f"{type(model).__name__}.parameter_groups({list(groups)}) must put every trainable parameter in "
            f"exactly one of those groups; returned groups {list(decided)}, missing {missing[:5]}, twice {twice[:5]}"
        )
    return decided


def norm_parameter_names(model: nn.Module) -> set[str]:
    return {
        f"{m_name}.{p_name}" if m_name else p_name
        for m_name, module in model.named_modules()
        if isinstance(module, NORM_LAYERS)
        for p_name, _ in module.named_parameters(recurse=False)
    }


def param_groups(
    named: Iterable[tuple[str, nn.Parameter]], entry: sections.OptimizerEntry, norm_names: set[str]
) -> tuple[list[dict[str, Any]], list[GroupRow]]:
    """Per-parameter (lr, weight decay) from one OPTIMIZER entry; tensors with equal values share a group."""
    base_lr, decay = float(entry.BASE_LR), float(entry.WEIGHT_DECAY)
    custom = entry.CUSTOM_KEYS or {}
    merged: dict[tuple[float, float, str], list[nn.Parameter]] = {}
    for name, param in named:
        is_bias = name.endswith("bias")
        lr = base_lr * (float(entry.LR_BIAS_FACTOR) if is_bias else 1.0)
        if name in norm_names and entry.NORM_DECAY_FACTOR is not None:
            wd, kind = decay * float(entry.NORM_DECAY_FACTOR), "norm"
        elif is_bias:
            wd, kind = decay * float(entry.WEIGHT_BIAS_FACTOR), "bias"
        else:
            wd, kind = decay, "weight"
        prefixes = [p for p in custom if name == p or name.startswith(p.rstrip(".") + ".")]
        if prefixes:
            prefix = max(prefixes, key=len)
            lr *= float(custom[prefix].get("LR_FACTOR", 1.0))
            wd *= float(custom[prefix].get("DECAY_FACTOR", 1.0))
            kind = f"{kind} [{prefix}]"
        merged.setdefault((lr, wd, kind), []).append(param)
    by_values: dict[tuple[float, float], dict[str, Any]] = {}
    rows = []
    for (lr, wd, kind), params in merged.items():
        group = by_values.setdefault((lr, wd), {"params": [], "lr": lr, "weight_decay": wd, "kinds": []})
        group["params"].extend(params)
        group["kinds"].append(kind)
        rows.append(
            GroupRow(entry.OPTIMIZER_NAME, entry.OPTIMIZER, kind, len(params), sum(p.numel() for p in params), lr, wd)
        )
    groups = list(by_values.values())
    for group in groups:  # the name its learning rate is logged under: lr/<group>/<kinds>
        kinds = group.pop("kinds")
        group["name"] = entry.OPTIMIZER_NAME if len(groups) == 1 else f"{entry.OPTIMIZER_NAME}/{'+'.join(kinds)}"
    return groups, rows


def make_optimizer(
    named: list[tuple[str, nn.Parameter]], entry: sections.OptimizerEntry, norm_names: set[str], at: tuple
) -> tuple[torch.optim.Optimizer, list[GroupRow]]:
    """The optimizer of one OPTIMIZER (or LOSS_OPTIMIZER) entry, the one at key path `at`, over `named` parameters."""
    torch_groups, rows = param_groups(named, entry, norm_names)
    if not torch_groups:
        raise ValueError(f"OPTIMIZER_NAME {entry.OPTIMIZER_NAME!r}: its parameter group has no trainable parameters")
    optimizer = registry.build(
        "optimizer",
        entry.OPTIMIZER,
        entry.OPTIMIZER_KWARGS,
        torch_groups,
        at=at + ("OPTIMIZER_KWARGS",),
        lr=float(entry.BASE_LR),
    )
    return optimizer, rows


@register("optimizer_builder", "ClassificationOptimizer")
def build_optimizers(
    model: nn.Module, groups_cfg: Any, entries: tuple[sections.OptimizerEntry, ...]
) -> tuple[dict[str, torch.optim.Optimizer], list[GroupRow]]:
    """One optimizer per OPTIMIZER entry, over the parameter group named by its OPTIMIZER_NAME."""
    groups = split_into_groups(model, groups_cfg)
    norm_names = norm_parameter_names(model)
    optimizers, table = {}, []
    for i, entry in enumerate(entries):
        optimizers[entry.OPTIMIZER_NAME], rows = make_optimizer(
            groups[entry.OPTIMIZER_NAME], entry, norm_names, ("OPTIMIZER", i)
        )
        table += rows
    return optimizers, table


class OptimizerSet(torch.optim.Optimizer):
    """Several optimizers stepped as one.

    Lightning sees one optimizer, so its automatic optimization (gradient accumulation, clipping, mixed
    precision) applies to every optimizer alike, and one training step is one global step. The
    alternatives cost more: several optimizers in automatic optimization make one global step per
    optimizer and step each on its own batch; manual optimization leaves accumulation, clipping and
    mixed-precision scaling to be written again.

    It stands in for torch's Optimizer without calling its __init__ (which would build param groups of
    its own): the per-instance hook dicts torch's __init__ makes are made here, by the names in HOOKS,
    and tests/test_optim.py checks those names against torch's.
    """

    HOOKS = (
        "_optimizer_step_pre_hooks",
        "_optimizer_step_post_hooks",
        "_optimizer_state_dict_pre_hooks",
        "_optimizer_state_dict_post_hooks",
        "_optimizer_load_state_dict_pre_hooks",
        "_optimizer_load_state_dict_post_hooks",
    )

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        self.optimizers = dict(optimizers)
        self.defaults: dict[str, Any] = {}
        for hooks in self.HOOKS:
            setattr(self, hooks, OrderedDict())
        self._patch_step_function()

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [group for optimizer in self.optimizers.values() for group in optimizer.param_groups]

    @property
    def state(self) -> dict[Any, Any]:  # type: ignore[override]
        return {p: s for optimizer in self.optimizers.values() for p, s in optimizer.state.items()}

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers.values():
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {"optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state_dict["optimizers"][name])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise TypeError("add parameter groups to one of the OptimizerSet's optimizers")

    def __repr__(self) -> str:
        return f"OptimizerSet({', '.join(f'{n}: {type(o).__name__}' for n, o in self.optimizers.items())})"


def format_table(rows: list[GroupRow]) -> str:
    header = ("group", "optimizer", "parameters", "tensors", "kind", "lr", "weight_decay")
    lines = [header] + [
        (r.group, r.optimizer, f"{r.parameters:,}", str(r.tensors), r.kind, f"{r.lr:.6g}", f"{r.weight_decay:.6g}")
        for r in rows
    ]
    return text_table(lines)
