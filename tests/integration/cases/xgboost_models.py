"""XGBoost models saved with `save_model` as UBJSON and JSON, from the sklearn wrappers and from
`xgb.train`; expected answers come from the original in-memory objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from tests.integration.cases import MadeModel, ModelCase, estimator_classifier

ROWS = 25
_SMALL = {"n_estimators": 5, "max_depth": 3, "n_jobs": 1}


def iris_classifier_ubj(tmp: Path) -> MadeModel:
    import xgboost as xgb

    X, y = load_iris(return_X_y=True)
    model = xgb.XGBClassifier(**_SMALL).fit(X, y)
    model.save_model(tmp / "iris.ubj")
    return estimator_classifier(model, X[::6][:ROWS], tmp / "iris.ubj")


def cancer_classifier_json(tmp: Path) -> MadeModel:
    import xgboost as xgb

    X, y = load_breast_cancer(return_X_y=True)
    model = xgb.XGBClassifier(**_SMALL).fit(X, y)
    model.save_model(tmp / "cancer.json")
    return estimator_classifier(model, X[::6][:ROWS], tmp / "cancer.json")


def diabetes_regressor_ubj(tmp: Path) -> MadeModel:
    import xgboost as xgb

    X, y = load_diabetes(return_X_y=True)
    model = xgb.XGBRegressor(**_SMALL).fit(X, y)
    model.save_model(tmp / "diabetes.ubj")
    rows = X[:ROWS]
    return MadeModel(tmp / "diabetes.ubj", rows, np.asarray(model.predict(rows), dtype="float64"))


def iris_train_softprob_json(tmp: Path) -> MadeModel:
    """The native API: `xgb.train` on a DMatrix, predictions from `Booster.predict`."""
    import xgboost as xgb

    X, y = load_iris(return_X_y=True)
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=5)
    booster.save_model(tmp / "booster.json")
    rows = X[::6][:ROWS]
    probabilities = np.asarray(booster.predict(xgb.DMatrix(rows)), dtype="float64")
    return MadeModel(tmp / "booster.json", rows, probabilities.argmax(axis=1), probabilities, [0, 1, 2])


_REQUIRES = ("xgboost",)
CASES = [
    ModelCase("xgboost-ubj-multiclass", "xgboost", "classification", iris_classifier_ubj, requires=_REQUIRES),
    ModelCase("xgboost-json-binary", "xgboost", "classification", cancer_classifier_json, requires=_REQUIRES),
    ModelCase("xgboost-ubj-regressor", "xgboost", "regression", diabetes_regressor_ubj, requires=_REQUIRES),
    ModelCase("xgboost-train-json-softprob", "xgboost", "classification", iris_train_softprob_json, requires=_REQUIRES),
]
