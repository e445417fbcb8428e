"""`ednaml export`: a trained model as TorchScript or ONNX that runs without EdnaML, with its label names and
preprocessing constants (and tokenizer) beside it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ednaml.errors import BuildError, ConfigError, MissingExtra
from ednaml.steps import split_result
from ednaml.version import __version__

FILES = {"torchscript": "model.pt", "onnx": "model.onnx"}


class Exported(nn.Module):
    """The model alone, for serving: input tensors in (a text model's in `keys` order), each output's
    logits out (a tuple in `names` order when there are several)."""

    def __init__(self, model: nn.Module, names: list[str], keys: list[str] | None):
        super().__init__()
        self.model, self.names, self.keys = model, names, keys

    def forward(self, *inputs: torch.Tensor) -> Any:
        result = self.model(dict(zip(self.keys, inputs)) if self.keys else inputs[0])
        if not isinstance(result, dict):
            return split_result(result)[0]
        logits = tuple(split_result(result[name])[0] for name in self.names)
        return logits[0] if len(logits) == 1 else logits


def default_directory(checkpoint: Path, kind: str) -> Path:
    """Beside the checkpoint: checkpoints/<checkpoint>-<format>/."""
    return checkpoint.with_name(f"{checkpoint.stem}-{kind}")


def export(
    config: dict[str, Any], checkpoint: str | Path, kind: str, directory: str | Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Write the checkpoint's model as `kind` (torchscript or onnx) into `directory` (new), with model.json;
    the exported model's outputs are compared with the checkpoint's on an example input. Returns the folder
    and what model.json says."""
    from ednaml.adapters.datamodule import EdnaDataModule, NewData
    from ednaml.adapters.given import Given
    from ednaml.adapters.module import EdnaModule
    from ednaml.checkpoints import data_state, read_checkpoint
    from ednaml.config.sections import sections

    config = sections(config)
    if kind not in FILES:
        raise ConfigError(f"--format: {kind!r} is not one of {', '.join(FILES)}")
    checkpoint = Path(checkpoint)
    folder = Path(directory) if directory is not None else default_directory(checkpoint, kind)
    if folder.exists():
        raise ConfigError(f"--output {str(folder)!r} exists; an export never overwrites one: name another folder")
    saved = read_checkpoint(checkpoint)
    Given().check_against(
        {k: v for k, v in (saved.get("given") or {}).items() if k == "MODEL.MODEL_ARCH"}, config.LOSS, str(checkpoint)
    )
    data = EdnaDataModule(config, data_state(checkpoint), NewData(None, saved["labels"]))
    module = EdnaModule(config, data.labels, data.info)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    try:  # the model's weights alone: losses and plugins are not exported
        module.model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    except RuntimeError as err:
        raise ConfigError(
            f"ckpt_path: {str(checkpoint)!r} holds another model than its config builds: {str(err).splitlines()[0]}"
        ) from None
    module.eval()

    sample = data.transforms[False](data.reader.example())
    x, _ = (data.collate or torch.utils.data.default_collate)([(sample, torch.zeros(0, dtype=torch.long))])
    keys = list(x) if isinstance(x, dict) else None
    inputs = tuple(x[k] for k in keys) if keys else (x,)
    names = list(module.outputs)
    wrapper = Exported(module.model, names, keys).eval()
    with torch.no_grad():
        expected = wrapper(*inputs)

    # written beside the folder and renamed into place: a failed export leaves nothing behind
    staging = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    staging.mkdir(parents=True)
    try:
        check = _write(kind, wrapper, inputs, keys, names, expected, staging / FILES[kind], type(module.model).__name__)
        description = _describe(staging, kind, config, data, module, inputs, keys, names, checkpoint, check)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder, description


def _write(
    kind: str,
    wrapper: nn.Module,
    inputs: tuple,
    keys: list[str] | None,
    names: list[str],
    expected: Any,
    target: Path,
    model_name: str,
) -> dict[str, Any]:
    """Trace or export the model to `target`, run the result on the example and compare: the check's record."""
    input_names = keys or ["input"]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated", category=FutureWarning)
            if kind == "torchscript":
                torch.jit.trace(wrapper, inputs, strict=False).save(str(target))
                got = torch.jit.load(str(target))(*inputs)
            else:
                from ednaml.utils import require

                require("onnxscript", "onnx")  # torch's ONNX exporter needs it (and onnx)
                batch = torch.export.Dim("batch")
                dynamic = tuple({0: batch, 1: torch.export.Dim("length")} if keys else {0: batch} for _ in inputs)
                with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
                    torch.onnx.export(
                        wrapper,
                        inputs,
                        str(target),
                        dynamo=True,
                        input_names=input_names,
                        output_names=names,
                        dynamic_shapes=(dynamic,),
                    )
                got = _run_onnx(target, input_names, inputs)
    except (MissingExtra, BuildError):
        raise
    except Exception as err:  # noqa: BLE001 - any tracing failure is the same problem for the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BuildError(f"{model_name} cannot be exported as {kind}: {first}") from err
    if got is None:
        return {"skipped": "onnxruntime is not installed (pip install 'ednaml[onnx]')"}
    difference = max(float((torch.as_tensor(a) - b).abs().max()) for a, b in zip(_tuple(got), _tuple(expected)))
    if difference > 1e-3:
        raise BuildError(
            f"the exported {kind} model's outputs differ from the checkpoint's by {difference:.2e} on an "
            f"example input; {model_name} may not be traceable (data-dependent control flow)"
        )
    return {"max_abs_difference": difference}


def _describe(
    folder: Path,
    kind: str,
    config: Any,
    data: Any,
    module: Any,
    inputs: tuple,
    keys: list[str] | None,
    names: list[str],
    checkpoint: Path,
    check: dict[str, Any],
) -> dict[str, Any]:
    """model.json (and the tokenizer) beside the exported model; returns what it says."""
    from ednaml.checkpoints import describe_checkpoint
    from ednaml.tracking.secrets import scrub

    input_names = keys or ["input"]
    tokenizer = data.state_dict().get("tokenizer")
    if tokenizer:
        (folder / "tokenizer.json").write_text(tokenizer, encoding="utf-8")
    reader = config.EXECUTION.DATAREADER.DATAREADER
    description = {
        "format": kind,
        "file": FILES[kind],
        "inputs": [
            {
                "name": n,
                "dtype": str(t.dtype).removeprefix("torch."),
                "example_shape": list(t.shape),
                "dynamic": ["batch", "length"] if keys else ["batch"],
            }
            for n, t in zip(input_names, inputs)
        ],
        "outputs": [
            {"name": n, "label": module.outputs[n].label, "classes": data.labels[module.outputs[n].label]}
            for n in names
        ],
        "reader": reader,
        "preprocessing": preprocessing(config),
        "tokenizer": "tokenizer.json" if tokenizer else None,
        "checkpoint": describe_checkpoint(checkpoint),
        "check": check,
        "ednaml_version": __version__,
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    description = scrub(description)
    (folder / "model.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return description


def preprocessing(config: Any) -> dict[str, Any]:
    """The test transforms' arguments as a run used them: TEST_TRANSFORMATION.ARGS over the reader's transforms'
    own defaults (a normalization the config leaves to its default is still one the consumer must apply)."""
    import inspect

    from ednaml import registry

    transforms = registry.get("datareader", config.EXECUTION.DATAREADER.DATAREADER).transforms
    target = transforms.__init__ if inspect.isclass(transforms) else transforms
    defaults = {
        name: list(p.default) if isinstance(p.default, tuple) else p.default
        for name, p in inspect.signature(target).parameters.items()
        if p.default is not inspect.Parameter.empty and name not in ("self", "train")
    }
    return {**defaults, **dict(config.TEST_TRANSFORMATION.ARGS)}


def _tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _run_onnx(path: Path, names: list[str], inputs: tuple[torch.Tensor, ...]) -> Any:
    """The ONNX model's outputs on `inputs`, by onnxruntime where it is installed (else the check is skipped)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: tensor.numpy() for name, tensor in zip(names, inputs)})
