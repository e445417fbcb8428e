"""Text classification models: each takes {input_ids, attention_mask} and returns (logits, features).

vocab_size and padding_idx left blank come from the run's tokenizer; softmax_dimensions from the label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ednaml.models.classification import feature_norm
from ednaml.registry import register
from ednaml.utils import require


def _needs(name: str, **values: Any) -> None:
    for key, value in values.items():
        if not value:
            raise ValueError(f"MODEL.MODEL_KWARGS: {name} needs {key} (left blank, it comes from the data)")


class _TextHead(nn.Module):
    def __init__(self, in_features: int, softmax_dimensions: int, normalization: str | None, dropout: float):
        super().__init__()
        self.norm, self.dropout = feature_norm(normalization, in_features), nn.Dropout(dropout)
        self.classifier = nn.Linear(in_features, softmax_dimensions)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier(self.dropout(self.norm(features))), features


@register("model", "TextCNN")
class TextCNN(nn.Module):
    """Token embeddings, parallel 1-D convolutions of several widths, max over time (Kim, 2014)."""

    def __init__(
        self,
        vocab_size: int | None = None,
        softmax_dimensions: int | None = None,
        padding_idx: int | None = 0,
        embedding_dim: int = 128,
        num_filters: int = 64,
        kernel_sizes: Sequence[int] = (3, 4, 5),
        dropout: float = 0.3,
        normalization: str | None = "none",
    ):
        super().__init__()
        _needs("TextCNN", vocab_size=vocab_size, softmax_dimensions=softmax_dimensions)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, num_filters, k, padding=k // 2) for k in kernel_sizes)
        self.feature_dimensions = num_filters * len(kernel_sizes)
        self.head = _TextHead(self.feature_dimensions, softmax_dimensions, normalization, dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embedding(batch["input_ids"]).transpose(1, 2)
        mask = batch["attention_mask"].unsqueeze(1)
        pooled = [
            torch.relu(conv(x))[..., : mask.shape[-1]].masked_fill(~mask, float("-inf")).amax(dim=-1)
            for conv in self.convs
        ]
        return self.head(torch.cat(pooled, dim=-1))


@register("model", "TextLSTM")
class TextLSTM(nn.Module):
    """Token embeddings through a (bidirectional) LSTM, mean-pooled over the text's tokens."""

    def __init__(
        self,
        vocab_size: int | None = None,
        softmax_dimensions: int | None = None,
        padding_idx: int | None = 0,
        embedding_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.3,
        normalization: str | None = "none",
    ):
        super().__init__()
        _needs("TextLSTM", vocab_size=vocab_size, softmax_dimensions=softmax_dimensions)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)
        self.feature_dimensions = hidden_size * (2 if bidirectional else 1)
        self.head = _TextHead(self.feature_dimensions, softmax_dimensions, normalization, dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(self.embedding(batch["input_ids"]))
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return self.head((out * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1))


@register("model", "TransformerClassifier")
class TransformerClassifier(nn.Module):
    """A small Transformer encoder over token and position embeddings; pooling: cls (the first token) or mean."""

    def __init__(
        self,
        vocab_size: int | None = None,
        softmax_dimensions: int | None = None,
        padding_idx: int | None = 0,
        d_model: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        feedforward: int = 256,
        maxlen: int = 512,
        pooling: str = "cls",
        dropout: float = 0.1,
        normalization: str | None = "ln",
    ):
        super().__init__()
        _needs("TransformerClassifier", vocab_size=vocab_size, softmax_dimensions=softmax_dimensions)
        if pooling not in ("cls", "mean"):
            raise ValueError(f"MODEL.MODEL_KWARGS.pooling: {pooling!r} is not cls or mean")
        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.positions = nn.Embedding(maxlen, d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.pooling, self.feature_dimensions = pooling, d_model
        self.head = _TextHead(d_model, softmax_dimensions, normalization, dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        positions = torch.arange(ids.shape[1], device=ids.device).clamp_max(self.positions.num_embeddings - 1)
        x = self.encoder(self.tokens(ids) + self.positions(positions), src_key_padding_mask=~mask)
        if self.pooling == "cls":
            features = x[:, 0]
        else:
            weights = mask.unsqueeze(-1).float()
            features = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)
        return self.head(features)


@register("model", "HFAutoModel")
class HFAutoModel(nn.Module):
    """Any Hugging Face `transformers` encoder, from a local folder (`path`) or built from a config with no
    weights (`config: {model_type: bert, ...}`); never downloads. Pools the first token."""

    def __init__(
        self,
        softmax_dimensions: int | None = None,
        path: str | None = None,
        config: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        _needs("HFAutoModel", softmax_dimensions=softmax_dimensions)
        transformers = require("transformers", "hf")
        if path:
            self.encoder = transformers.AutoModel.from_pretrained(path, local_files_only=True)
        elif config:
            settings = dict(config)
            if vocab_size and "vocab_size" not in settings:
                settings["vocab_size"] = vocab_size
            self.encoder = transformers.AutoModel.from_config(transformers.AutoConfig.for_model(**settings))
        else:
            raise ValueError(
                "MODEL.MODEL_KWARGS: HFAutoModel needs path (a local model folder) or config (e.g. {model_type: bert})"
            )
        self.feature_dimensions = self.encoder.config.hidden_size
        self.head = _TextHead(self.feature_dimensions, softmax_dimensions, "none", dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].long())
        return self.head(out.last_hidden_state[:, 0])
