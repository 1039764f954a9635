"""Model cases for the conformance suite: one module per library, each exporting `CASES`.

A case trains a small model from a dataset scikit-learn ships, saves it exactly as that
library's users save it, and records what the original in-memory object predicts, so the
suite can check that servekit gives the same answers.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class MadeModel:
    """A saved model and what the original object predicted on `inputs`."""

    path: Path
    inputs: Any
    """Rows to predict on: a 2-D numpy array, or a pandas DataFrame for named/text columns."""
    expected_outputs: np.ndarray
    """The original object's labels (classification) or values (regression)."""
    expected_probabilities: np.ndarray | None = None
    classes: list[Any] | None = None
    pack_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments `servekit.packing.pack` needs for this file (e.g. `n_features`)."""


@dataclass
class ModelCase:
    id: str
    format: str
    """The format name `detect_format` must return."""
    task: str
    make: Callable[[Path], MadeModel]
    needs_trust: bool = False
    requires: tuple[str, ...] = ()
    """Importable modules the case needs (e.g. "torch"); the test is skipped without them."""


def estimator_classifier(model: Any, rows: Any, path: Path) -> MadeModel:
    """A classifier with the sklearn API saved at `path`: what the original predicts on `rows`."""
    return MadeModel(
        path=path,
        inputs=rows,
        expected_outputs=np.asarray(model.predict(rows)),
        expected_probabilities=np.asarray(model.predict_proba(rows), dtype="float64"),
        classes=np.asarray(model.classes_).tolist(),
    )


def all_cases() -> list[ModelCase]:
    cases: list[ModelCase] = []
    for module in pkgutil.iter_modules(__path__):
        cases.extend(importlib.import_module(f"{__name__}.{module.name}").CASES)
    return cases
