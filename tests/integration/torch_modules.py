"""Small torch networks that state_dict cases rebuild by import path
(`tests.integration.torch_modules:IrisMLP`).

Kept outside the `cases` package, which `all_cases()` imports whole: importing this module
imports torch, and the suite must still collect where torch is not installed.
"""

from __future__ import annotations

import torch
from torch import nn


class IrisMLP(nn.Module):
    """A two-layer perceptron returning one logit per class."""

    def __init__(self, n_features: int = 4, hidden: int = 16, n_classes: int = 3) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_features, hidden)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


class LinearRegressor(nn.Module):
    """One linear layer with `n_outputs` values per row."""

    def __init__(self, n_features: int = 10, n_outputs: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 30) -> nn.Module:
    """A few full-batch Adam steps: enough for outputs that depend on training, not for accuracy."""
    loss_fn = nn.CrossEntropyLoss() if y.dtype == torch.long else nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss_fn(model(X), y).backward()
        optimizer.step()
    return model.eval()
