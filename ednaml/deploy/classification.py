"""The built-in deployment: per input, each output's class, probability, target and top-k classes."""

from __future__ import annotations

from typing import Any

from ednaml.deploy import Deploy, Predicted
from ednaml.registry import register


@register("deployment", "BaseDeploy")
class BaseDeploy(Deploy):
    """Class, probability, target and top-k classes of every output, per input.

    Per output: the predicted class and its probability, the target class where the data has labels, and
    with top_k > 1 the top_k classes with their probabilities ({class, probability}, best first). Columns
    are `prediction`, `confidence`, `target`, `top_k` for one output; `<output>_prediction`, ... for several.
    """

    def __init__(self, top_k: int = 1):
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ValueError(f"DEPLOYMENT.DEPLOYMENT_ARGS.top_k: {top_k!r} is not a whole number of at least 1")
        self.top_k = top_k

    def records(self, outputs: dict[str, Predicted]) -> list[dict[str, Any]]:
        columns: dict[str, list[Any]] = {}
        for name, scored in outputs.items():
            prefix = "" if len(outputs) == 1 else f"{name}_"
            k = min(self.top_k, scored.probabilities.shape[-1])
            probabilities, indices = scored.probabilities.float().topk(k, dim=-1)
            probabilities, indices = probabilities.tolist(), indices.tolist()
            columns[f"{prefix}prediction"] = [scored.classes[row[0]] for row in indices]
            columns[f"{prefix}confidence"] = [round(row[0], 6) for row in probabilities]
            if scored.target is not None:
                columns[f"{prefix}target"] = [scored.classes[i] for i in scored.target.tolist()]
            if self.top_k > 1:
                columns[f"{prefix}top_k"] = [
                    [{"class": scored.classes[i], "probability": round(p, 6)} for i, p in zip(ix, ps)]
                    for ix, ps in zip(indices, probabilities)
                ]
        size = len(next(iter(columns.values()))) if columns else 0
        return [{key: values[row] for key, values in columns.items()} for row in range(size)]
