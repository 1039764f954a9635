"""Modules wrapped around a torch (or Keras-on-torch) network before ONNX export, so that the
graph gives what the ONNX runtime serves: a label tensor and a probability tensor for
classifiers, the values for regressors. Imported only when converting (it imports torch)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HEADS"]


class _Head(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> _Head:
        # The exporter switches the module to eval mode; a torch.export module refuses any
        # switch, and the wrapped network is already in eval mode.
        return self


class Values(_Head):
    """Regression: the outputs as `(n, k)`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).reshape(x.shape[0], -1)


class Softmax(_Head):
    """Logits over k classes -> label, softmax probabilities."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.softmax(self.model(x).reshape(x.shape[0], -1), dim=1)
        return torch.argmax(p, dim=1), p


class Sigmoid(_Head):
    """One logit -> label, `[1 - p, p]`."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.sigmoid(self.model(x).reshape(x.shape[0], 1))
        p = torch.cat([1 - p, p], dim=1)
        return torch.argmax(p, dim=1), p


class Probabilities(_Head):
    """Probabilities over k classes -> label, probabilities."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.model(x).reshape(x.shape[0], -1)
        return torch.argmax(p, dim=1), p


class PositiveProbability(_Head):
    """The probability of class 1 -> label, `[1 - p, p]`."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.model(x).reshape(x.shape[0], 1)
        p = torch.cat([1 - p, p], dim=1)
        return torch.argmax(p, dim=1), p


HEADS: dict[tuple[bool, bool], type[_Head]] = {
    # (outputs are logits, one output column) -> head
    (True, False): Softmax,
    (True, True): Sigmoid,
    (False, False): Probabilities,
    (False, True): PositiveProbability,
}
REGRESSION = Values
