"""Every kind of component, declared once: what it is, where its built-ins live, what a class of it derives
from, what EdnaML passes it. The registry, validation, the trust gate, `ednaml list`, `check` and
docs/components.md all read these declarations; the schema marks each key that names a component with its
kind (`Key.names`). And how far a config may name code (Trust). Plain data: nothing here imports torch or
Lightning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Arguments:
    """What EdnaML passes a component itself (a config may not set these), and the required arguments it fills
    from the data when a config leaves them out. `filled` None: required arguments are not checked (the
    component's builder fills them)."""

    supplied: tuple[str, ...] = ()
    filled: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Kind:
    """One kind of component.

    A name resolves to, in order: a component registered under it (`@register(kind, name)`, built-ins from
    `builtins`, imported on first use); a public class of a `public` module (torch.optim's optimizers,
    Lightning's callbacks), by its short or dotted name; a dotted import path to a subclass of `bases`, only
    from a config the user trusts. A Lightning kind (`trainer_key` set) is named under that key of the
    `trainer:` section and takes no registrations.
    """

    name: str
    doc: str  # what a component of the kind is, one line
    builtins: tuple[str, ...] = ()  # modules whose @register decorators define the built-ins
    bases: tuple[str, ...] = ()  # what a class named by a dotted path must derive from (none: registered names only)
    public: tuple[str, ...] = ()  # modules whose public subclasses of `bases` resolve by name
    arguments: Arguments = Arguments()
    kwargs_at: tuple[tuple[str, str | None], ...] = ()  # (config key, part of the component) its kwargs go under
    trainer_key: str | None = None  # a Lightning kind: its key in the `trainer:` section
    words: bool = False  # a Lightning kind whose plain words there are Lightning's settings ("ddp"), not classes
    step: str = ""  # the step of a run's pipeline its components take (the pipeline table of provenance and W&B)

    @property
    def label(self) -> str:
        """The kind in a sentence: "model builder", "Lightning plugin"."""
        return self.name.replace("lightning_", "Lightning ").replace("_", " ")

    @property
    def a(self) -> str:
        """The label with its article: "a model", "an optimizer"."""
        return f"{'an' if self.label[0] in 'aeiou' else 'a'} {self.label}"

    @property
    def registered(self) -> bool:
        """Whether components of this kind are registered by name (all but Lightning's own kinds)."""
        return self.trainer_key is None


_READERS = ("ednaml.data.readers", "ednaml.data.text", "ednaml.data.video", "ednaml.data.ecosystem")
_DATASET_ARGUMENTS = Arguments(("samples", "transform", "labels"))

KINDS: dict[str, Kind] = {}

# Kinds the original EdnaML named otherwise, read as this version's: its step logic was a "trainer", the word
# that here means Lightning's Trainer (the `trainer:` section).
RENAMED_KINDS = {"trainer": "step_logic"}


def declare(kind: Kind) -> Kind:
    """Add a kind: from here on the registry, validation, the trust gate and `ednaml list` know it."""
    if kind.name in KINDS and KINDS[kind.name] != kind:
        raise ValueError(f"component kind {kind.name!r} is already declared")
    KINDS[kind.name] = kind
    return kind


for _kind in (
    Kind(
        "datareader",
        "a data source: crawler, dataset and transforms",
        _READERS,
        ("ednaml.data.base.DataReader",),
        kwargs_at=(
            ("EXECUTION.DATAREADER.CRAWLER_ARGS", "crawler"),
            ("TRANSFORMATION.ARGS", "transforms"),
            ("EXECUTION.DATAREADER.DATASET_ARGS", "dataset"),
        ),
        step="load data",
    ),
    Kind(
        "dataset",
        "a dataset class replacing a reader's own",
        _READERS,
        ("torch.utils.data.Dataset",),
        arguments=_DATASET_ARGUMENTS,
        kwargs_at=(("EXECUTION.DATAREADER.DATASET_ARGS", None),),
        step="load data",
    ),
    Kind(
        "model",
        "the network",
        (
            "ednaml.models.classification",
            "ednaml.models.multi",
            "ednaml.models.text",
            "ednaml.models.video",
            "ednaml.models.backbones",
        ),
        ("torch.nn.Module",),
        arguments=Arguments(("base", "normalization")),
        kwargs_at=(("MODEL.MODEL_KWARGS", None),),
        step="model",
    ),
    Kind("model_builder", "how MODEL becomes a model", ("ednaml.models.builders",), step="model"),
    Kind(
        "step_logic",
        "step logic: a batch becomes named outputs and targets",
        ("ednaml.steps.classification",),
        ("ednaml.steps.StepLogic",),
        arguments=Arguments(),
        kwargs_at=(("EXECUTION.STEP_LOGIC_ARGS", None),),
        step="step logic",
    ),
    Kind(
        "loss",
        "a loss on outputs or features",
        ("ednaml.losses.classification", "ednaml.losses.metric_learning"),
        ("torch.nn.Module",),
        arguments=Arguments(filled=("num_classes", "feat_dim")),
        kwargs_at=(("LOSS[i].KWARGS[j]", None),),
        step="losses",
    ),
    Kind(
        "optimizer",
        "an optimizer",
        ("ednaml.optim.optimizers",),
        ("torch.optim.Optimizer",),
        ("torch.optim",),
        Arguments(("params", "lr", "weight_decay"), filled=()),
        (("OPTIMIZER[i].OPTIMIZER_KWARGS", None),),
        step="optimizers",
    ),
    Kind(
        "optimizer_builder", "how OPTIMIZER entries become optimizers", ("ednaml.optim.optimizers",), step="optimizers"
    ),
    Kind(
        "scheduler",
        "a learning-rate scheduler",
        ("ednaml.optim.schedulers",),
        ("torch.optim.lr_scheduler.LRScheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau"),
        ("torch.optim.lr_scheduler",),
        Arguments(("optimizer",), filled=()),
        (("SCHEDULER[i].LR_KWARGS", None),),
        step="schedulers",
    ),
    Kind(
        "metric",
        "a metric of every output on val and test",
        ("ednaml.metrics",),
        ("torchmetrics.Metric",),
        arguments=Arguments(("num_classes",)),
        step="evaluate",
    ),
    Kind(
        "plugin",
        "a model plugin",
        ("ednaml.plugins.builtin",),
        ("ednaml.plugins.ModelPlugin",),
        kwargs_at=(("MODEL_PLUGIN[i].PLUGIN_KWARGS", None),),
        step="plugins",
    ),
    Kind(
        "deployment",
        "outputs become one record per input, for predict",
        ("ednaml.deploy.classification",),
        ("ednaml.deploy.Deploy",),
        kwargs_at=(("DEPLOYMENT.DEPLOYMENT_ARGS", None),),
        step="deploy",
    ),
    Kind(
        "callback",
        "a Lightning callback",
        bases=("lightning.pytorch.callbacks.Callback",),
        public=("lightning.pytorch.callbacks",),
        trainer_key="callbacks",
    ),
    Kind(
        "logger",
        "a Lightning logger",
        bases=("lightning.pytorch.loggers.Logger",),
        public=("lightning.pytorch.loggers",),
        trainer_key="logger",
    ),
    Kind(
        "strategy",
        "a Lightning strategy",
        bases=("lightning.pytorch.strategies.Strategy",),
        public=("lightning.pytorch.strategies",),
        trainer_key="strategy",
        words=True,
    ),
    Kind(
        "accelerator",
        "a Lightning accelerator",
        bases=("lightning.pytorch.accelerators.Accelerator",),
        public=("lightning.pytorch.accelerators",),
        trainer_key="accelerator",
        words=True,
    ),
    Kind(
        "profiler",
        "a Lightning profiler",
        bases=("lightning.pytorch.profilers.Profiler",),
        public=("lightning.pytorch.profilers",),
        trainer_key="profiler",
        words=True,
    ),
    Kind(
        "lightning_plugin",
        "a Lightning plugin: precision, checkpoint IO, layer sync or cluster environment",
        bases=(
            "lightning.pytorch.plugins.Precision",
            "lightning.pytorch.plugins.CheckpointIO",
            "lightning.pytorch.plugins.LayerSync",
            "lightning.fabric.plugins.ClusterEnvironment",
        ),
        public=("lightning.pytorch.plugins", "lightning.fabric.plugins.environments"),
        trainer_key="plugins",
        words=True,
    ),
):
    declare(_kind)

# Arguments of the parts of a component and of what EdnaML builds itself, checked as a kind's are.
PARTS: dict[str, Arguments] = {
    "crawler": Arguments(filled=()),
    "transforms": Arguments(("train",), filled=()),
    "dataloader": Arguments(("dataset", "batch_size", "num_workers", "shuffle")),
    "lightning": Arguments(),  # lightning.Trainer itself, for the `trainer:` section
}


def arguments(name: str) -> Arguments:
    """The arguments of a kind or of a part (PARTS)."""
    return KINDS[name].arguments if name in KINDS else PARTS[name]


def registered() -> list[str]:
    """The kinds components are registered under, in declaration order."""
    return [name for name, kind in KINDS.items() if kind.registered]


def lightning() -> dict[str, Kind]:
    """The kinds the `trainer:` section names, by kind."""
    return {name: kind for name, kind in KINDS.items() if not kind.registered}


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
