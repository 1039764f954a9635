"""scikit-learn models converted to ONNX with skl2onnx, as users convert them.

Inputs are float32 (ONNX's `tensor(float)`) and the sklearn models are fitted and asked on the
same float32 rows, so both sides see the same numbers; expected answers are the original
sklearn object's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from tests.integration.cases import MadeModel, ModelCase, estimator_classifier

ROWS = 25


def save_onnx(model: Any, sample: Any, path: Path, zipmap: bool | None = False) -> Path:
    """Convert with skl2onnx and write the file; a classifier's `zipmap=False` gives a
    probability tensor, `True` the default list of dicts, `None` is for regressors."""
    from skl2onnx import to_onnx

    options = None if zipmap is not False else {id(model): {"zipmap": False}}
    path.write_bytes(to_onnx(model, sample, options=options).SerializeToString())
    return path


def iris_forest(tmp: Path) -> MadeModel:
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, y)
    return estimator_classifier(model, X[::6][:ROWS], save_onnx(model, X[:1], tmp / "iris.onnx"))


def iris_species_zipmap(tmp: Path) -> MadeModel:
    """String labels and the default ZipMap output (a list of {class: probability} dicts)."""
    data = load_iris()
    X = data.data.astype(np.float32)
    labels = np.asarray(data.target_names)[data.target]
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, labels)
    return estimator_classifier(model, X[::6][:ROWS], save_onnx(model, X[:1], tmp / "species.onnx", zipmap=True))


def cancer_forest(tmp: Path) -> MadeModel:
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    # ONNX computes a binary forest's p(0) as 1 - p(1) in float32: off by ~1e-7 from sklearn's
    # float64 whenever p(1) is not exact. Fully grown trees (pure leaves) and 8 of them keep every
    # probability a multiple of 1/8, exact in float32, so the comparison stays strict.
    model = RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y)
    return estimator_classifier(model, X[:ROWS], save_onnx(model, X[:1], tmp / "cancer.onnx"))


def diabetes_forest(tmp: Path) -> MadeModel:
    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    model = RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0).fit(X, y)
    path = save_onnx(model, X[:1], tmp / "diabetes.onnx", zipmap=None)
    return MadeModel(path, X[:ROWS], np.asarray(model.predict(X[:ROWS]), dtype="float64"))


def tabular_frame() -> tuple[Any, np.ndarray]:
    """Iris as a DataFrame with float32 columns and a string column (one ONNX input each)."""
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target").astype(np.float32)
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame["size"] = np.where(frame["sepal_length"] > 5.8, "large", "small")
    return frame, data.target.to_numpy()


def iris_column_transformer(tmp: Path) -> MadeModel:
    """A ColumnTransformer pipeline: skl2onnx gives it one [N, 1] input per column."""
    frame, y = tabular_frame()
    pre = ColumnTransformer(
        [
            ("num", "passthrough", ["sepal_length", "sepal_width", "petal_length", "petal_width"]),
            ("cat", OneHotEncoder(), ["size"]),
        ]
    )
    model = make_pipeline(pre, RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)).fit(frame, y)
    rows = frame.iloc[::6].iloc[:ROWS].reset_index(drop=True)
    return estimator_classifier(model, rows, save_onnx(model, frame.iloc[:1], tmp / "tabular.onnx"))


_REQUIRES = ("onnxruntime", "skl2onnx")
CASES = [
    ModelCase("onnx-iris-forest", "onnx", "classification", iris_forest, requires=_REQUIRES),
    ModelCase("onnx-iris-zipmap-string-labels", "onnx", "classification", iris_species_zipmap, requires=_REQUIRES),
    ModelCase("onnx-cancer-binary-forest", "onnx", "classification", cancer_forest, requires=_REQUIRES),
    ModelCase("onnx-diabetes-forest-regressor", "onnx", "regression", diabetes_forest, requires=_REQUIRES),
    ModelCase("onnx-columntransformer-inputs", "onnx", "classification", iris_column_transformer, requires=_REQUIRES),
]
