"""One task, read from `ednaml fit --print_config`, as plain values; and the hand-written pieces both
hand-written contenders (Lightning and plain PyTorch) build from it, as a user would write them.

The data readers and model classes are EdnaML's (the same samples, transforms and network); the
loop, optimizer, scheduler, metrics, checkpoints and logging are written here by hand.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

READERS = {"Digits": "ednaml.data.readers:Digits", "Fortunes": "ednaml.data.text:Fortunes"}
MODELS = {
    "SmallCNN": "ednaml.models.classification:SmallCNN",
    "ClassificationResnet": "ednaml.models.classification:ClassificationResnet",
    "TextCNN": "ednaml.models.text:TextCNN",
}
LOSSES = {"SoftmaxLogitsLoss": 0.0, "SoftmaxLabelSmooth": None}  # name -> label smoothing (None: its eps)


def _load(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def spec_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """The values a hand-written run needs, from an EdnaML resolved config."""
    reader = config["EXECUTION"]["DATAREADER"]
    model, optimizer, loss = config["MODEL"], config["OPTIMIZER"][0], config["LOSS"][0]
    scheduler = config["SCHEDULER"][0] if config["SCHEDULER"] else None
    smoothing = LOSSES[loss["LOSSES"][0]]
    if smoothing is None:
        smoothing = loss["KWARGS"][0].get("eps", 0.1)
    return {
        "reader": reader["DATAREADER"],
        "crawler_args": reader["CRAWLER_ARGS"],
        "train_args": config["TRAIN_TRANSFORMATION"]["ARGS"],
        "test_args": config["TEST_TRANSFORMATION"]["ARGS"],
        "batch_size": config["TRAIN_TRANSFORMATION"]["BATCH_SIZE"],
        "workers": config["TRAIN_TRANSFORMATION"]["WORKERS"],
        "arch": model["MODEL_ARCH"],
        "base": model["MODEL_BASE"],
        "normalization": model["MODEL_NORMALIZATION"],
        "model_kwargs": model["MODEL_KWARGS"],
        "label_smoothing": smoothing,
        "optimizer": optimizer["OPTIMIZER"],
        "lr": optimizer["BASE_LR"],
        "weight_decay": optimizer["WEIGHT_DECAY"],
        "bias_decay_factor": optimizer["WEIGHT_BIAS_FACTOR"],
        "scheduler": scheduler and {"name": scheduler["LR_SCHEDULER"], "kwargs": scheduler["LR_KWARGS"]},
        "epochs": config["EXECUTION"]["EPOCHS"],
        "seed": config["seed_everything"],
        "save_every": config["SAVE"]["SAVE_FREQUENCY"],
        "log_every": config["LOGGING"]["STEP_VERBOSE"],
    }


class Data:
    """The three splits as datasets, with the reader's transforms and collate function."""

    def __init__(self, spec: dict[str, Any]):
        reader = _load(READERS[spec["reader"]])
        crawl = reader.crawler(**spec["crawler_args"]).crawl()
        train_tf, test_tf = (
            reader.transforms(train=True, **spec["train_args"]),
            reader.transforms(train=False, **spec["test_args"]),
        )
        if hasattr(train_tf, "fit"):  # a tokenizer, trained on the training texts
            train_tf.fit([x for x, _ in crawl.splits["train"]])
            test_tf.adopt(train_tf.tokenizer.to_str())
        self.info = dict(getattr(train_tf, "info", {}))
        self.classes = len(next(iter(crawl.labels.values())))
        self.collate = getattr(reader, "collate", None)
        self.splits = {
            split: reader.dataset(
                crawl.splits[split], transform=train_tf if split == "train" else test_tf, labels=list(crawl.labels)
            )
            for split in ("train", "val", "test")
        }

    def loader(self, split: str, spec: dict[str, Any], **kwargs: Any) -> torch.utils.data.DataLoader:
        workers = spec["workers"]
        return torch.utils.data.DataLoader(
            self.splits[split],
            batch_size=spec["batch_size"],
            shuffle=split == "train",
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=self.collate,
            **kwargs,
        )


def build_model(spec: dict[str, Any], classes: int, info: dict[str, Any]) -> nn.Module:
    """The config's model class with its MODEL_KWARGS, MODEL_BASE and MODEL_NORMALIZATION where it takes
    them, and what the data knows (a tokenizer's vocabulary size)."""
    arch = _load(MODELS[spec["arch"]])
    params = inspect.signature(arch).parameters
    kwargs = {**spec["model_kwargs"], "softmax_dimensions": classes}
    for key, value in (("base", spec["base"]), ("normalization", spec["normalization"]), *info.items()):
        if key in params and value is not None and kwargs.get(key) is None:
            kwargs[key] = value
    return arch(**kwargs)


def loss(spec: dict[str, Any], logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, target, label_smoothing=spec["label_smoothing"])


def logits_of(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def build_optimizer(spec: dict[str, Any], model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    """Weights decay at WEIGHT_DECAY, biases at WEIGHT_DECAY x WEIGHT_BIAS_FACTOR; the scheduler stepped per epoch."""
    weights = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    groups = [
        {"params": weights, "weight_decay": spec["weight_decay"]},
        {"params": biases, "weight_decay": spec["weight_decay"] * spec["bias_decay_factor"]},
    ]
    optimizer = getattr(torch.optim, spec["optimizer"])(groups, lr=spec["lr"])
    scheduler = None
    if spec["scheduler"]:
        scheduler = getattr(torch.optim.lr_scheduler, spec["scheduler"]["name"])(
            optimizer, **spec["scheduler"]["kwargs"]
        )
    return optimizer, scheduler
