"""A custom loss, registered by name: `ednaml fit --config configs/digits.yml --config examples/focal.yml`."""

import torch

import ednaml


@ednaml.register.loss("FocalLoss")
class FocalLoss(torch.nn.Module):
    """Cross-entropy that down-weights easy examples: (1 - p)^gamma x CE."""

    def __init__(self, gamma: float = 2.0):
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        return ((1 - torch.exp(-ce)) ** self.gamma * ce).mean()
