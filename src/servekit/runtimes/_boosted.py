"""What the native XGBoost and LightGBM Booster runtimes share: classes from the objective,
the manifest's class names, and labels from probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from servekit.errors import InvalidManifest
from servekit.prediction import Prediction
from servekit.runtimes.base import Runtime, Task

__all__ = ["BoostedTreesRuntime"]


class BoostedTreesRuntime(Runtime):
    """A gradient-boosted trees Booster: a classifier when its objective has `_n_classes`."""

    def __init__(self, path: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(path, options)
        self.booster: Any = None
        self.objective: str | None = None
        self._n_classes = 0
        """Number of classes for classification objectives (binary: 2), else 0."""

    def _check_classes(self) -> None:
        """The manifest's class names must match the number of classes the model predicts."""
        if self.classes is not None and self._n_classes and len(self.classes) != self._n_classes:
            raise InvalidManifest(
                f"the manifest lists {len(self.classes)} classes but {self.path.name} predicts {self._n_classes}",
                hint="Fix `classes` in servekit.yaml",
            )

    @property
    def _task(self) -> Task:
        return "classification" if self._n_classes else "regression"

    def _classes(self) -> list[Any]:
        """The manifest's class names, else the model's `0..k-1`."""
        return list(self.classes) if self.classes is not None else list(range(self._n_classes))

    def _labelled(self, probabilities: np.ndarray) -> Prediction:
        """Labels as the argmax of the class probabilities."""
        classes = self._classes()
        labels = np.asarray(classes)[probabilities.argmax(axis=1)]
        return Prediction(labels, probabilities, classes)

    def unload(self) -> None:
        self.booster = None

    def info(self) -> dict[str, Any]:
        return {**super().info(), "objective": self.objective}
