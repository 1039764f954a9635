"""Keras 3 models (torch backend) saved as `.keras` and in the legacy `.h5` format.

Expected outputs come from the original model's `predict`: probabilities for classifiers
(softmax, or `[1 - p, p]` for one sigmoid unit), values for regressors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from tests.integration.cases import MadeModel, ModelCase

_ROWS = slice(None, None, 6)


def keras() -> Any:
    """keras on the torch backend, seeded so each case trains the same model."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    keras.utils.set_random_seed(0)
    return keras


def mlp(n_features: int, units: int, activation: str | None, loss: str) -> Any:
    """A small compiled perceptron; the random seed is reset first."""
    k = keras()
    layers = [k.Input((n_features,)), k.layers.Dense(8, activation="relu")]
    model = k.Sequential([*layers, k.layers.Dense(units, activation=activation)])
    model.compile(optimizer="adam", loss=loss)
    return model


def classifier_outputs(model: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities from `model.predict`, whose first output is probabilities."""
    probabilities = model.predict(rows.astype("float32"), verbose=0)
    if probabilities.shape[1] == 1:
        probabilities = np.concatenate([1 - probabilities, probabilities], axis=1)
    return probabilities.argmax(axis=1), probabilities.astype("float64")


def _iris(tmp: Path, file_name: str) -> MadeModel:
    X, y = load_iris(return_X_y=True)
    model = mlp(4, 3, "softmax", "sparse_categorical_crossentropy")
    model.fit(X, y, epochs=3, batch_size=32, verbose=0)
    model.save(tmp / file_name)
    rows = X[_ROWS]
    labels, probabilities = classifier_outputs(model, rows)
    return MadeModel(tmp / file_name, rows, labels, probabilities, [0, 1, 2])


def iris_keras(tmp: Path) -> MadeModel:
    return _iris(tmp, "iris.keras")


def iris_h5(tmp: Path) -> MadeModel:
    return _iris(tmp, "iris.h5")


def cancer_sigmoid_keras(tmp: Path) -> MadeModel:
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    model = mlp(X.shape[1], 1, "sigmoid", "binary_crossentropy")
    model.fit(X, y, epochs=2, batch_size=64, verbose=0)
    model.save(tmp / "cancer.keras")
    rows = X[:25]
    labels, probabilities = classifier_outputs(model, rows)
    return MadeModel(tmp / "cancer.keras", rows, labels, probabilities, [0, 1])


def diabetes_keras(tmp: Path) -> MadeModel:
    X, y = load_diabetes(return_X_y=True)
    model = mlp(10, 1, None, "mse")
    model.fit(X, y / 100, epochs=3, batch_size=64, verbose=0)
    model.save(tmp / "diabetes.keras")
    rows = X[:25]
    return MadeModel(tmp / "diabetes.keras", rows, model.predict(rows.astype("float32"), verbose=0)[:, 0])


_KERAS = ("keras",)
CASES = [
    ModelCase("keras-classifier", "keras", "classification", iris_keras, requires=_KERAS),
    ModelCase("keras-sigmoid-classifier", "keras", "classification", cancer_sigmoid_keras, requires=_KERAS),
    ModelCase("keras-regressor", "keras", "regression", diabetes_keras, requires=_KERAS),
    ModelCase("keras-h5-classifier", "keras-h5", "classification", iris_h5, requires=_KERAS),
]
