"""scikit-learn estimators and pipelines saved with pickle, joblib (plain and compressed) and skops."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.integration.cases import MadeModel, ModelCase, estimator_classifier


def _first(X):
    return X[:25] if isinstance(X, np.ndarray) else X.iloc[:25]


def forest_joblib(tmp: Path) -> MadeModel:
    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    joblib.dump(model, tmp / "forest.joblib")
    return estimator_classifier(model, _first(X), tmp / "forest.joblib")


def scaled_logistic_compressed(tmp: Path) -> MadeModel:
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    joblib.dump(model, tmp / "cancer.joblib", compress=3)
    return estimator_classifier(model, _first(X), tmp / "cancer.joblib")


def string_labels_pickle(tmp: Path) -> MadeModel:
    data = load_iris()
    labels = np.asarray(data.target_names)[data.target]
    model = LogisticRegression(max_iter=500).fit(data.data, labels)
    with (tmp / "species.pkl").open("wb") as handle:
        pickle.dump(model, handle)
    return estimator_classifier(model, _first(data.data), tmp / "species.pkl")


def boosting_regressor_pickle(tmp: Path) -> MadeModel:
    X, y = load_diabetes(return_X_y=True)
    model = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, y)
    with (tmp / "diabetes.pickle").open("wb") as handle:
        pickle.dump(model, handle, protocol=4)
    return MadeModel(tmp / "diabetes.pickle", X[:25], np.asarray(model.predict(X[:25])))


def iris_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """Iris as a DataFrame with a string column, the shape tabular pipelines take."""
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame["size"] = np.where(frame["sepal_length"] > 5.8, "large", "small")
    frame["garden"] = np.asarray(["north", "south", "east"])[np.arange(len(frame)) % 3]
    return frame, data.target.to_numpy()


def column_transformer_joblib(tmp: Path) -> MadeModel:
    frame, y = iris_frame()
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["sepal_length", "sepal_width", "petal_length", "petal_width"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["size", "garden"]),
        ]
    )
    model = make_pipeline(pre, LogisticRegression(max_iter=500)).fit(frame, y)
    joblib.dump(model, tmp / "tabular.joblib")
    return estimator_classifier(model, _first(frame), tmp / "tabular.joblib")


def pipeline_skops(tmp: Path) -> MadeModel:
    import skops.io as sio

    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0)).fit(X, y)
    sio.dump(model, tmp / "iris.skops")
    return estimator_classifier(model, _first(X), tmp / "iris.skops")


CASES = [
    ModelCase("sklearn-joblib-forest", "joblib", "classification", forest_joblib, needs_trust=True),
    ModelCase(
        "sklearn-joblib-compress3-pipeline", "joblib", "classification", scaled_logistic_compressed, needs_trust=True
    ),
    ModelCase("sklearn-pickle-string-labels", "pickle", "classification", string_labels_pickle, needs_trust=True),
    ModelCase("sklearn-pickle-regressor", "pickle", "regression", boosting_regressor_pickle, needs_trust=True),
    ModelCase(
        "sklearn-joblib-columntransformer", "joblib", "classification", column_transformer_joblib, needs_trust=True
    ),
    ModelCase("sklearn-skops-pipeline", "skops", "classification", pipeline_skops),
]
