"""PyTorch models saved as TorchScript, as a torch.export program, as a state_dict and as a
whole pickled module.

Expected outputs come from the original in-memory module, in float32 like the runtime:
softmax of the logits for classifiers, the raw output for regressors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_diabetes, load_iris

from tests.integration.cases import MadeModel, ModelCase

IRIS_MODULE = "tests.integration.torch_modules:IrisMLP"
IRIS_KWARGS = {"n_features": 4, "hidden": 16, "n_classes": 3}
IRIS_CLASSES = [0, 1, 2]
_ROWS = slice(None, None, 6)  # 25 rows across the three iris classes


def trained_iris() -> tuple[Any, np.ndarray]:
    """An `IrisMLP` trained for a few epochs, and the iris features."""
    import torch

    from tests.integration.torch_modules import IrisMLP, train

    torch.manual_seed(0)
    X, y = load_iris(return_X_y=True)
    model = train(IrisMLP(**IRIS_KWARGS), torch.tensor(X, dtype=torch.float32), torch.tensor(y))
    return model, X


def classifier_outputs(model: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities of a torch classifier returning logits."""
    import torch

    with torch.inference_mode():
        probabilities = torch.softmax(model(torch.from_numpy(rows.astype("float32"))), dim=1).numpy()
    return np.asarray(IRIS_CLASSES)[probabilities.argmax(axis=1)], probabilities.astype("float64")


def _iris_case(model: Any, X: np.ndarray, path: Path, **pack_options: Any) -> MadeModel:
    rows = X[_ROWS]
    labels, probabilities = classifier_outputs(model, rows)
    return MadeModel(path, rows, labels, probabilities, IRIS_CLASSES, pack_options)


def _iris_pack_options(**extra: Any) -> dict[str, Any]:
    return {"n_features": 4, "task": "classification", "classes": IRIS_CLASSES, **extra}


def torchscript_classifier(tmp: Path) -> MadeModel:
    import torch

    model, X = trained_iris()
    torch.jit.save(torch.jit.script(model), tmp / "iris.pt")
    return _iris_case(model, X, tmp / "iris.pt", **_iris_pack_options())


def export_classifier(tmp: Path) -> MadeModel:
    import torch

    model, X = trained_iris()
    example = (torch.tensor(X[:8], dtype=torch.float32),)
    program = torch.export.export(model, example, dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp / "iris.pt2")
    return _iris_case(model, X, tmp / "iris.pt2", task="classification", classes=IRIS_CLASSES)


def state_dict_classifier(tmp: Path) -> MadeModel:
    import torch

    model, X = trained_iris()
    torch.save(model.state_dict(), tmp / "iris_weights.pt")
    options = _iris_pack_options(runtime_options={"module": IRIS_MODULE, "module_kwargs": IRIS_KWARGS})
    return _iris_case(model, X, tmp / "iris_weights.pt", **options)


def pickled_module_classifier(tmp: Path) -> MadeModel:
    import torch

    model, X = trained_iris()
    torch.save(model, tmp / "iris_module.pth")
    return _iris_case(model, X, tmp / "iris_module.pth", **_iris_pack_options())


def torchscript_regressor(tmp: Path) -> MadeModel:
    import torch

    from tests.integration.torch_modules import LinearRegressor, train

    torch.manual_seed(0)
    X, y = load_diabetes(return_X_y=True)
    inputs = torch.tensor(X, dtype=torch.float32)
    model = train(LinearRegressor(10), inputs, torch.tensor(y, dtype=torch.float32)[:, None] / 100)
    torch.jit.save(torch.jit.trace(model, inputs[:5]), tmp / "diabetes.pt")
    rows = X[:25]
    with torch.inference_mode():
        expected = model(torch.from_numpy(rows.astype("float32"))).numpy()[:, 0]
    return MadeModel(tmp / "diabetes.pt", rows, expected, pack_options={"n_features": 10, "task": "regression"})


_TORCH = ("torch",)
CASES = [
    ModelCase("torchscript-classifier", "torchscript", "classification", torchscript_classifier, requires=_TORCH),
    ModelCase("torch-export-classifier", "torch-export", "classification", export_classifier, requires=_TORCH),
    ModelCase("torch-state-dict-classifier", "torch", "classification", state_dict_classifier, requires=_TORCH),
    ModelCase(
        "torch-pickled-module-classifier",
        "torch",
        "classification",
        pickled_module_classifier,
        needs_trust=True,
        requires=_TORCH,
    ),
    ModelCase("torchscript-regressor", "torchscript", "regression", torchscript_regressor, requires=_TORCH),
]
