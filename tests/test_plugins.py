"""Model plugins: hook order in a real Trainer, HOOKS modes, warm-up only on training data, state in
checkpoints, no state shared between models, and the built-ins' arithmetic."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from helpers import CONFIGS, run_ednaml

import ednaml
from ednaml.adapters.plugins import PluginRunner
from ednaml.adapters.runner import instantiate
from ednaml.api import prepare
from ednaml.plugins import ModelPlugin
from ednaml.plugins.builtin import KMeansProxy, LogitConfidence
from ednaml.steps import Output, OutputInfo


class Recorder(ModelPlugin):
    """Writes down every hook call; once activated, outputs a constant per input."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.calls: list[tuple] = []

    def pre_forward(self, x: Any) -> Any:
        self.calls.append(("pre_forward",))
        return x

    def post_forward(self, x: Any, outputs: dict[str, Output], learning: bool) -> dict[str, Any]:
        self.calls.append(("post_forward", learning))
        return {"seen": torch.ones(len(x))} if self.activated else {}

    def pre_epoch(self, model: Any, epoch: int) -> None:
        self.calls.append(("pre_epoch", epoch))

    def post_epoch(self, model: Any, epoch: int) -> None:
        self.calls.append(("post_epoch", epoch))

    def sync(self) -> None:
        self.calls.append(("sync",))

    def activate(self, model: Any) -> None:
        self.calls.append(("activate",))


def module_with(plugins: list[dict[str, Any]]) -> tuple[Any, Any]:
    ednaml.register.plugin("Recorder")(Recorder)
    config = prepare(
        [CONFIGS / "digits.yml"], [("MODEL_PLUGIN", plugins), ("EXECUTION.DATAREADER.CRAWLER_ARGS.test_fraction", 0.5)]
    )
    return instantiate(config, None)


def fit(module: Any, data: Any, hooks: str, tmp_path: Any, epochs: int = 2) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[PluginRunner(hooks)],
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, datamodule=data)
    return trainer


@pytest.mark.e2e
def test_hooks_run_in_order_and_a_plugin_learns_only_from_training_batches_of_its_warmup_epochs(tmp_path):
    data, module = module_with([{"PLUGIN_NAME": "r", "PLUGIN": "Recorder", "PLUGIN_KWARGS": {"start_epoch": -1}}])
    fit(module, data, "always", tmp_path)
    train, val = [("pre_forward",), ("post_forward", False)] * 2, [("pre_forward",), ("post_forward", False)]
    learning = [("pre_forward",), ("post_forward", True)] * 2
    assert module.plugins["r"].calls == [
        ("pre_epoch", 0),
        *train,
        ("post_epoch", 0),
        *val,  # epoch 0: before its warm-up
        ("pre_epoch", 1),
        *learning,
        ("sync",),
        ("activate",),
        ("post_epoch", 1),
        *val,  # the last: it learns, activates, then validates
    ]
    assert module.plugins["r"].activated and int(module.plugins["r"].warmed_epochs) == 1


@pytest.mark.e2e
@pytest.mark.parametrize(
    "hooks, runs", [("always", {"done", "warming"}), ("warmup", {"warming"}), ("activated", {"done"})]
)
def test_hooks_mode_chooses_which_plugins_run(tmp_path, hooks, runs):
    data, module = module_with(
        [
            {"PLUGIN_NAME": "done", "PLUGIN": "Recorder", "PLUGIN_KWARGS": {"warmup_epochs": 0}},
            {"PLUGIN_NAME": "warming", "PLUGIN": "Recorder", "PLUGIN_KWARGS": {"warmup_epochs": 5}},
        ]
    )
    fit(module, data, hooks, tmp_path, epochs=1)
    ran = {name for name, plugin in module.plugins.items() if any(call[0] == "post_forward" for call in plugin.calls)}
    assert ran == runs
    assert ("done" in module.plugin_outputs) == (
        "done" in runs
    )  # an activated plugin's outputs, from the latest forward


@pytest.mark.e2e
def test_plugin_state_travels_in_checkpoints_and_is_not_shared_between_models(tmp_path):
    entries = [
        {"PLUGIN_NAME": "k", "PLUGIN": "KMeansProxy", "PLUGIN_KWARGS": {"clusters": 4}},
        {"PLUGIN_NAME": "c", "PLUGIN": "LogitConfidence", "PLUGIN_KWARGS": {}},
    ]
    data, module = module_with(entries)
    _, other = module_with(entries)
    trainer = fit(module, data, "always", tmp_path, epochs=1)
    assert module.plugins["k"].activated and module.plugins["c"].activated
    assert (
        not other.plugins["k"].activated and not other.plugins["k"].centers.any()
    )  # untouched by the first model's warm-up
    assert (
        module.plugins["k"] is not other.plugins["k"]
        and module.plugins["k"].centers.data_ptr() != other.plugins["k"].centers.data_ptr()
    )

    trainer.save_checkpoint(tmp_path / "p.ckpt")

    def restored(target: Any) -> Any:  # Lightning's own checkpoint loading, in a validation run
        pl.Trainer(
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=1,
            default_root_dir=tmp_path,
            callbacks=[PluginRunner("activated")],
            accelerator="cpu",
            devices=1,
        ).validate(target, datamodule=data, ckpt_path=str(tmp_path / "p.ckpt"), verbose=False)
        return target

    restored(other)
    for name in ("k", "c"):
        for key, value in module.plugins[name].save().items():
            assert torch.equal(other.plugins[name].save()[key], value), (name, key)
    assert set(other.plugin_outputs) == {"k", "c"}  # activated from the checkpoint: they give outputs

    _, resized = module_with([{**entries[0], "PLUGIN_KWARGS": {"clusters": 6}}])  # another size: starts fresh
    assert not restored(resized).plugins["k"].activated and resized.plugins["k"].centers.shape[0] == 6
    _, bare = module_with([])  # no plugins: the checkpoint's are dropped, the model's weights still load exactly
    assert torch.equal(
        next(iter(restored(bare).model.state_dict().values())), next(iter(module.model.state_dict().values()))
    )


def blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    labels = torch.arange(3).repeat(40)
    return centers[labels] + 0.5 * torch.randn(len(labels), 2, generator=generator), labels


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_kmeans_proxy_labels_each_input_by_its_nearest_cluster(distance):
    features, labels = blobs()
    plugin = KMeansProxy(clusters=3, distance=distance, warmup_epochs=2, seed=1)
    plugin.bind({"y": OutputInfo("y", "y", 2)}, {"y": ["a", "b", "c"]})
    outputs = {"y": Output(torch.nn.functional.one_hot(labels, 3).float() * 4, features, "y")}  # the model is right
    for _ in range(2):
        for batch in range(0, len(labels), 30):
            part = {"y": Output(outputs["y"].logits[batch : batch + 30], features[batch : batch + 30], "y")}
            assert plugin.post_forward(None, part, learning=True) == {}
        plugin.end_warmup_epoch(None)
    assert plugin.activated and int(plugin.counts.sum()) == 2 * len(labels)
    out = plugin.post_forward(None, outputs, learning=False)
    assert out["label"] == [["a", "b", "c"][i] for i in labels.tolist()]
    assert len(set(out["cluster"].tolist())) == 3 and out["distance"].max() < (1.0 if distance == "cosine" else 2.5)

    copy = KMeansProxy(clusters=3, distance=distance)
    copy.bind({"y": OutputInfo("y", "y", 2)}, {"y": ["a", "b", "c"]})
    copy.load(plugin.save())
    assert copy.post_forward(None, outputs, learning=False)["label"] == out["label"]


def test_logit_confidence_thresholds_are_each_classes_mean_confidence():
    plugin = LogitConfidence()
    plugin.bind({"y": OutputInfo("y", "y", None)}, {"y": ["a", "b"]})
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    confidence = logits.softmax(-1).max(-1).values
    plugin.post_forward(None, {"y": Output(logits, None, "y")}, learning=True)
    plugin.end_warmup_epoch(None)
    assert plugin.thresholds.tolist() == pytest.approx([float(confidence[:2].mean()), float(confidence[2])])
    out = plugin.post_forward(None, {"y": Output(logits, None, "y")}, learning=False)
    assert out["confident"] == [True, False, True] and out["threshold"].tolist() == pytest.approx(
        [plugin.thresholds[0].item()] * 2 + [plugin.thresholds[1].item()]
    )


@pytest.mark.e2e
def test_plugin_mistakes_name_their_key_in_check_and_fit(tmp_path):
    for kwargs, message in (
        ("{clusters: 0}", "MODEL_PLUGIN[0].PLUGIN_KWARGS.clusters: 0 is not a whole number of at least 1"),
        ("{output: parity}", "MODEL_PLUGIN[0].PLUGIN_KWARGS.output: 'parity' is not an output of the model"),
        (
            "{clustres: 3}",
            "MODEL_PLUGIN[0].PLUGIN_KWARGS.clustres: KMeansProxy takes no argument 'clustres'; "
            "did you mean 'clusters'?",
        ),
    ):
        plugins = f"[{{PLUGIN_NAME: k, PLUGIN: KMeansProxy, PLUGIN_KWARGS: {kwargs}}}]"
        for command in ("check", "fit"):
            result = run_ednaml(
                command,
                "--config",
                str(CONFIGS / "digits.yml"),
                "--MODEL_PLUGIN",
                plugins,
                cwd=tmp_path,
                env={"WANDB_MODE": "disabled"},
            )
            assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, (
                command,
                result.stderr[-1500:],
            )
    assert not (tmp_path / "runs").exists()  # refused before a run folder
