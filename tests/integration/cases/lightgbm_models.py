"""LightGBM models saved as text: `LGBMClassifier/LGBMRegressor().booster_.save_model(...)` and
`lgb.train(...).save_model(...)`; expected answers come from the original in-memory objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from tests.integration.cases import MadeModel, ModelCase, estimator_classifier

ROWS = 25
_SMALL = {"n_estimators": 5, "num_leaves": 7, "n_jobs": 1, "verbose": -1}


def iris_classifier(tmp: Path) -> MadeModel:
    import lightgbm as lgb

    X, y = load_iris(return_X_y=True)
    model = lgb.LGBMClassifier(**_SMALL).fit(X, y)
    model.booster_.save_model(tmp / "iris.txt")
    return estimator_classifier(model, X[::6][:ROWS], tmp / "iris.txt")


def cancer_classifier(tmp: Path) -> MadeModel:
    import lightgbm as lgb

    X, y = load_breast_cancer(return_X_y=True)
    model = lgb.LGBMClassifier(**_SMALL).fit(X, y)
    model.booster_.save_model(tmp / "cancer.txt")
    return estimator_classifier(model, X[::6][:ROWS], tmp / "cancer.txt")


def diabetes_regressor(tmp: Path) -> MadeModel:
    import lightgbm as lgb

    X, y = load_diabetes(return_X_y=True)
    model = lgb.LGBMRegressor(**_SMALL).fit(X, y)
    model.booster_.save_model(tmp / "diabetes.txt")
    rows = X[:ROWS]
    return MadeModel(tmp / "diabetes.txt", rows, np.asarray(model.predict(rows), dtype="float64"))


def cancer_train_named(tmp: Path) -> MadeModel:
    """The native API with feature names: `lgb.train`, predictions from `Booster.predict`."""
    import lightgbm as lgb

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    params = {"objective": "binary", "num_leaves": 7, "num_threads": 1, "verbose": -1}
    train = lgb.Dataset(data.data, label=data.target, feature_name=names)
    booster = lgb.train(params, train, num_boost_round=5)
    booster.save_model(tmp / "booster.txt")
    rows = data.data[::6][:ROWS]
    p = np.asarray(booster.predict(rows), dtype="float64")
    probabilities = np.column_stack([1 - p, p])
    return MadeModel(tmp / "booster.txt", rows, (p > 0.5).astype(int), probabilities, [0, 1])


_REQUIRES = ("lightgbm",)
CASES = [
    ModelCase("lightgbm-multiclass", "lightgbm", "classification", iris_classifier, requires=_REQUIRES),
    ModelCase("lightgbm-binary", "lightgbm", "classification", cancer_classifier, requires=_REQUIRES),
    ModelCase("lightgbm-regressor", "lightgbm", "regression", diabetes_regressor, requires=_REQUIRES),
    ModelCase("lightgbm-train-named-binary", "lightgbm", "classification", cancer_train_named, requires=_REQUIRES),
]
