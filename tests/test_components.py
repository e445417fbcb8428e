"""Built-in components on real data: readers, transforms, models, losses, parameter groups, weights."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CONFIGS
from PIL import Image
from torch import nn

from ednaml.config import resolve
from ednaml.config.sections import sections
from ednaml.data.readers import CSVManifestCrawler, DigitsCrawler, ImageDataset, ImageFolderCrawler
from ednaml.data.transforms import image_transforms
from ednaml.errors import DataError
from ednaml.losses import Criterion, SoftmaxLabelSmooth, TorchLoss
from ednaml.losses.criterion import match_output
from ednaml.models import ClassificationResnet, SmallCNN
from ednaml.models.weights import load_weights
from ednaml.optim.optimizers import build_optimizers, param_groups, split_into_groups
from ednaml.steps import Output, OutputInfo


def make_images(root: Path, classes: dict[str, int], size: int = 12) -> None:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_digits_splits_are_seeded_and_disjoint():
    first = DigitsCrawler(split_seed=3).crawl()
    again = DigitsCrawler(split_seed=3).crawl()
    sizes = {k: len(v) for k, v in first.splits.items()}
    assert sizes == {"train": 1294, "val": 144, "test": 359}
    assert [t for _, t in first.splits["val"]] == [t for _, t in again.splits["val"]]
    assert first.labels == {"digit": [str(d) for d in range(10)]}


def test_image_folder_reads_one_subfolder_per_class(tmp_path):
    make_images(tmp_path, {"cat": 6, "dog": 4})
    crawl = ImageFolderCrawler(str(tmp_path), test_fraction=0.2, val_fraction=0.25).crawl()
    assert crawl.labels == {"label": ["cat", "dog"]}
    assert sum(len(v) for v in crawl.splits.values()) == 10
    assert len(crawl.splits["test"]) == 2
    x, y = ImageDataset(
        crawl.splits["train"], image_transforms(train=True, i_shape=[8, 8], channels=1, h_flip=0.5), ["label"]
    )[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.tolist() in ([0], [1])


def test_image_folder_uses_train_val_test_folders_when_present(tmp_path):
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        make_images(tmp_path / split, {"a": n, "b": n})
    crawl = ImageFolderCrawler(str(tmp_path)).crawl()
    assert {k: len(v) for k, v in crawl.splits.items()} == {"train": 6, "val": 4, "test": 2}


def test_image_folder_names_a_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"CRAWLER_ARGS.data_folder: folder '.*nothing' does not exist"):
        ImageFolderCrawler(str(tmp_path / "nothing")).crawl()


def test_csv_manifest_reads_several_label_columns_and_a_split_column(tmp_path):
    make_images(tmp_path / "img", {"x": 4})
    with (tmp_path / "m.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "color", "type", "split"])
        for i, split in enumerate(["train", "train", "val", "test"]):
            writer.writerow([f"img/x/{i}.png", ["red", "blue"][i % 2], ["car", "van"][i // 2], split])
    crawl = CSVManifestCrawler(str(tmp_path / "m.csv"), label_columns=["color", "type"], split_column="split").crawl()
    assert crawl.labels == {"color": ["blue", "red"], "type": ["car", "van"]}
    assert [len(crawl.splits[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert crawl.splits["test"][0][1] == (0, 1)
    with pytest.raises(
        DataError,
        match=r"label_columns: column 'colour' is not in .*; its columns are \['path', 'color', 'type', 'split'\]",
    ):
        CSVManifestCrawler(str(tmp_path / "m.csv"), label_columns=["colour"]).crawl()


def test_transforms_normalize_and_fix_channels():
    gray = np.full((8, 8), 255, dtype=np.uint8)
    out = image_transforms(train=False, i_shape=[4, 4], channels=3, normalization_mean=0.5, normalization_std=0.5)(gray)
    assert out.shape == (3, 4, 4)
    assert torch.allclose(out, torch.ones_like(out))


@pytest.mark.parametrize("normalization", ["bn", "ln", "gn", "l2", "none"])
def test_models_give_logits_per_class_and_their_features(normalization):
    model = SmallCNN(softmax_dimensions=7, initial_channels=1, normalization=normalization, embedding_dimensions=16)
    logits, features = model(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, 7) and features.shape == (2, 16) == (2, model.feature_dimensions)


def test_classification_resnet_takes_other_channel_counts_and_an_embedding():
    model = ClassificationResnet(
        "resnet18", softmax_dimensions=5, initial_channels=1, embedding_dimensions=32, attention="cbam"
    )
    logits, features = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 5) and features.shape == (2, 32)
    assert model.head.embedding.out_features == 32


def test_label_smoothing_spreads_eps_over_the_classes():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    target = torch.tensor([0])
    smooth = (1 - 0.3) * -torch.log_softmax(logits, -1)[0, 0] + 0.3 * -torch.log_softmax(logits, -1).mean()
    assert SoftmaxLabelSmooth(eps=0.3)(logits, target).item() == pytest.approx(smooth.item(), rel=1e-6)


def test_torch_loss_builds_any_torch_nn_loss_with_its_kwargs():
    loss = TorchLoss("CrossEntropyLoss", {"label_smoothing": 0.1})
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert loss(logits, target).item() == pytest.approx(nn.CrossEntropyLoss(label_smoothing=0.1)(logits, target).item())
    with pytest.raises(ValueError, match="'CrossEntropy' is not a torch.nn loss; did you mean 'CrossEntropyLoss'"):
        TorchLoss("CrossEntropy")


def test_criterion_normalises_lambdas_within_an_entry_and_sums_entries():
    entries = sections(
        resolve(
            [],
            [
                (
                    "LOSS",
                    "[{LOSSES: [SoftmaxLogitsLoss, SoftmaxLabelSmooth], KWARGS: [{}, {eps: 0.2}],"
                    " LAMBDAS: [3, 1], LABEL: a}, {LOSSES: [SoftmaxLogitsLoss], KWARGS: [{}], LAMBDAS: [2], LABEL: b}]",
                )
            ],
        )
    ).LOSS
    infos = {"a": OutputInfo("a", "a", None), "b": OutputInfo("b", "b", None)}
    criterion = Criterion(entries, infos, {"a": 4, "b": 3})
    outputs = {"a": Output(torch.randn(5, 4), None, "a"), "b": Output(torch.randn(5, 3), None, "b")}
    targets = {"a": torch.randint(0, 4, (5,)), "b": torch.randint(0, 3, (5,))}
    total, terms = criterion(outputs, targets)
    assert set(terms) == {"a/SoftmaxLogitsLoss", "a/SoftmaxLabelSmooth", "b/SoftmaxLogitsLoss"}
    expected = 0.75 * terms["a/SoftmaxLogitsLoss"] + 0.25 * terms["a/SoftmaxLabelSmooth"] + terms["b/SoftmaxLogitsLoss"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def optimizer_entry(**overrides):
    return sections(resolve([], [(f"OPTIMIZER.0.{k}", v) for k, v in overrides.items()])).OPTIMIZER[0]


def test_bias_parameters_get_their_own_lr_and_weight_decay_factors():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    entry = optimizer_entry(BASE_LR=0.1, WEIGHT_DECAY=0.01, LR_BIAS_FACTOR=2.0, WEIGHT_BIAS_FACTOR=0.5)
    groups, rows = param_groups(model.named_parameters(), entry, set())
    by_kind = {r.kind: r for r in rows}
    assert (by_kind["weight"].lr, by_kind["weight"].weight_decay, by_kind["weight"].tensors) == (0.1, 0.01, 3)
    assert (by_kind["bias"].lr, by_kind["bias"].weight_decay, by_kind["bias"].tensors) == (0.2, 0.005, 3)
    assert len(groups) == 2  # tensors with equal (lr, weight decay) share one torch param group


def test_norm_decay_and_custom_keys_with_the_longest_prefix_winning():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    entry = optimizer_entry(
        BASE_LR=0.1,
        WEIGHT_DECAY=0.01,
        NORM_DECAY_FACTOR=0.0,
        CUSTOM_KEYS="{'2': {LR_FACTOR: 10}, '2.weight': {LR_FACTOR: 5, DECAY_FACTOR: 0}}",
    )
    norm = {"1.weight", "1.bias"}
    _, rows = param_groups(model.named_parameters(), entry, norm)
    table = {(r.kind, r.lr, r.weight_decay) for r in rows}
    assert ("norm", 0.1, 0.0) in table
    assert ("weight [2.weight]", 0.5, 0.0) in table
    (bias,) = [r for r in rows if r.kind == "bias [2]"]
    assert bias.lr == 1.0 and bias.weight_decay == pytest.approx(0.01 * 0.0005)


def test_parameter_groups_by_module_prefix_cover_every_parameter():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    groups = split_into_groups(model, {"body": ["0"], "head": ["1"]})
    assert [n for n, _ in groups["body"]] == ["0.weight", "0.bias"]
    with pytest.raises(ValueError, match="parameters in no group: 1.weight, 1.bias"):
        split_into_groups(model, {"body": ["0"]})


def test_one_optimizer_over_merged_param_groups():
    model = nn.Linear(4, 2)
    optimizers, rows = build_optimizers(
        model, ["opt-1"], [optimizer_entry(OPTIMIZER="SGD", BASE_LR=0.5, OPTIMIZER_KWARGS="{momentum: 0.9}")]
    )
    optimizer = optimizers["opt-1"]
    assert isinstance(optimizer, torch.optim.SGD)
    # weight and bias share the lr (LR_BIAS_FACTOR 1) but not the weight decay: two torch param groups
    assert [(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups] == [
        ("opt-1/weight", 0.5, 0.0005, 1),
        ("opt-1/bias", 0.5, 0.0005 * 0.0005, 1),
    ]
    assert [r.kind for r in rows] == ["weight", "bias"]
    assert optimizer.defaults["momentum"] == 0.9


def test_weights_load_where_names_and_shapes_match(tmp_path):
    source = SmallCNN(softmax_dimensions=10)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = SmallCNN(softmax_dimensions=4)
    report = load_weights(target, str(tmp_path / "w.pt"))
    assert report["mismatched"] == ["head.classifier.weight", "head.classifier.bias"]
    assert torch.equal(target.features[0].weight, source.features[0].weight)
    assert not report["skipped"]


class TwoPartNet(nn.Module):
    """A model that decides its own parameter groups."""

    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(4, 3), nn.Linear(3, 2)

    def parameter_groups(self, names):
        return {
            names[0]: list(self.body.named_parameters(prefix="body")),
            names[1]: list(self.head.named_parameters(prefix="head")),
        }


def test_a_model_can_decide_its_parameter_groups_and_must_cover_every_parameter():
    model = TwoPartNet()
    groups = split_into_groups(model, ["slow", "fast"])
    assert [n for n, _ in groups["fast"]] == ["head.weight", "head.bias"]
    model.parameter_groups = lambda names: {names[0]: list(model.body.named_parameters(prefix="body")), names[1]: []}
    with pytest.raises(ValueError, match=r"missing \['head.weight', 'head.bias'\]"):
        split_into_groups(model, ["slow", "fast"])


def test_a_loss_entry_reads_the_output_named_name_then_the_one_tracking_label_then_the_only_one():
    outputs = {"type": OutputInfo("type", "type", 8), "out2": OutputInfo("out2", "color", 8)}
    assert match_output("type", None, outputs) == "type"
    assert match_output("color", "color", outputs) == "out2"
    assert match_output("anything", None, {"only": OutputInfo("only", "x", None)}) == "only"
    with pytest.raises(ValueError, match="no model output is named 'size' or tracks label 'size'"):
        match_output("size", "size", outputs)


def test_execution_metrics_chooses_the_metrics_a_user_registered_one_included():
    from torchmetrics.classification import MulticlassAccuracy

    from ednaml import registry
    from ednaml.adapters.datamodule import EdnaDataModule
    from ednaml.adapters.module import EdnaModule

    @registry.register("metric", "top2")
    def top2(num_classes: int):
        return MulticlassAccuracy(num_classes=num_classes, top_k=2, average="micro")

    config = resolve([CONFIGS / "digits.yml"], [("EXECUTION.METRICS", ["top2", "accuracy"])])
    data = EdnaDataModule(config)
    module = EdnaModule(config, data.labels, data.info)
    (collection,) = module.val_metrics
    assert sorted(collection.keys(keep_base=False)) == ["val/accuracy", "val/top2"]
    logits = torch.tensor([[0.1, 0.5, 0.4] + [0.0] * 7, [0.9, 0.05, 0.05] + [0.0] * 7])
    collection.update(logits, torch.tensor([2, 0]))
    assert {k: v.item() for k, v in collection.compute().items()} == {"val/top2": 1.0, "val/accuracy": 0.5}
