"""(c) The same training in a plain PyTorch loop: a validation pass, then per epoch training, validation,
a checkpoint and the scheduler step; the test split at the end. No framework, no logging.

    python -m bench.plain SPEC.json ROOT [cuda]
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

from bench import spec as tasks
from bench.timing import Clock


def evaluate(model: torch.nn.Module, loader: Any, spec: dict[str, Any], device: str) -> float:
    model.eval()
    right = total = 0
    with torch.no_grad():
        for x, y in loader:
            x, y = _to(x, device), y.to(device)
            right += int((tasks.logits_of(model(x)).argmax(-1) == y[:, 0]).sum())
            total += len(y)
    model.train()
    return right / max(total, 1)


def _to(x: Any, device: str) -> Any:
    return {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)


def main(spec_path: str, root: str, device: str = "cpu") -> None:
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    torch.manual_seed(spec["seed"])
    clock = Clock(torch.cuda.synchronize if device == "cuda" else None)
    data = tasks.Data(spec)
    model = tasks.build_model(spec, data.classes, data.info).to(device)
    optimizer, scheduler = tasks.build_optimizer(spec, model)
    loaders = {split: data.loader(split, spec) for split in ("train", "val", "test")}
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    evaluate(model, loaders["val"], spec, device)
    for epoch in range(spec["epochs"]):
        clock.epoch_start()
        for x, y in loaders["train"]:
            clock.batch_start()
            x, y = _to(x, device), y.to(device)
            with autocast:
                loss = tasks.loss(spec, tasks.logits_of(model(x)), y[:, 0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            clock.batch_end()
        evaluate(model, loaders["val"], spec, device)
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, f"{root}/last.pt"
        )
        if scheduler is not None:
            scheduler.step()
    clock.train_end()
    clock.write(test_accuracy=evaluate(model, loaders["test"], spec, device))


if __name__ == "__main__":
    main(*sys.argv[1:])
