"""Shared logic for objects with the scikit-learn estimator API (sklearn, and the sklearn
wrappers of XGBoost and LightGBM), whatever file format they arrive in."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from servekit.errors import CorruptArtifact, InvalidInput
from servekit.prediction import Prediction
from servekit.runtimes.base import ModelDescription
from servekit.signature import Batch, Feature, Signature

__all__ = ["check_estimator", "describe_estimator", "predict_estimator"]

_ENCODERS = frozenset({"OneHotEncoder", "OrdinalEncoder", "TargetEncoder"})
# Estimators whose `predict` may disagree with the argmax of `predict_proba` (Platt scaling).
_INCONSISTENT_PROBA = frozenset({"SVC", "NuSVC"})
# scikit-learn's message when a value overflows the float32 that trees and forests compute in.
_TOO_LARGE = "infinity or a value too large for dtype('float32')"


def check_estimator(obj: Any, source: str) -> Any:
    """`obj` if it can predict, else `CorruptArtifact` saying what the file holds instead."""
    if not callable(getattr(obj, "predict", None)):
        raise CorruptArtifact(
            f"{source} holds a {type(obj).__module__}.{type(obj).__qualname__}, not a model (it has no predict method)",
            hint="Save the fitted estimator itself, e.g. joblib.dump(model, 'model.joblib')",
        )
    return obj


def final_estimator(model: Any) -> Any:
    """The last step of a Pipeline (recursively), else the model itself."""
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def is_classifier(model: Any) -> bool:
    final = final_estimator(model)
    if getattr(final, "_estimator_type", None) == "classifier":
        return True
    tags = getattr(final, "__sklearn_tags__", None)
    if tags is not None:
        try:
            return tags().estimator_type == "classifier"
        except Exception:  # a third-party estimator with broken tags: fall through
            pass
    return hasattr(final, "classes_") and callable(getattr(model, "predict_proba", None))


def describe_estimator(model: Any, framework: str | None = None) -> ModelDescription:
    """Task, classes, signature and framework of a fitted estimator."""
    classifier = is_classifier(model)
    classes = None
    if classifier:
        classes = np.asarray(getattr(model, "classes_", getattr(final_estimator(model), "classes_", []))).tolist()
    signature = _signature(model)
    root = type(final_estimator(model)).__module__.split(".")[0]
    framework = framework or {"sklearn": "scikit-learn"}.get(root, root)
    module = sys.modules.get(root)
    version = str(getattr(module, "__version__", "unknown"))
    return ModelDescription(
        task="classification" if classifier else "regression",
        framework=framework,
        framework_version=version,
        signature=signature,
        classes=classes,
        extra={"estimator": type(model).__qualname__},
    )


def predict_estimator(model: Any, batch: Batch, classes: list[Any] | None) -> Prediction:
    """Labels and probabilities (classifiers) or values (regressors) for one batch.

    Classifiers are asked once, for probabilities, and labels are their argmax: for every
    estimator whose `predict` is defined that way this halves the cost of a request.
    """
    try:
        return _predict(model, batch, classes)
    except ValueError as exc:
        if _TOO_LARGE not in str(exc):
            raise
        largest = float(np.finfo(np.float32).max)
        raise InvalidInput(
            "a value is too large for this model, which computes in float32",
            hint=f"Send values between {-largest:.4g} and {largest:.4g}",
        ) from None


def _predict(model: Any, batch: Batch, classes: list[Any] | None) -> Prediction:
    proba = getattr(model, "predict_proba", None)
    if classes is not None and callable(proba):
        probabilities = np.asarray(proba(batch), dtype="float64")
        if type(final_estimator(model)).__name__ in _INCONSISTENT_PROBA:
            labels = np.asarray(model.predict(batch))
        else:
            model_classes = np.asarray(getattr(model, "classes_", classes))
            labels = model_classes[probabilities.argmax(axis=1)]
        return Prediction(labels, probabilities, classes)
    return Prediction(np.asarray(model.predict(batch)))


def _signature(model: Any) -> Signature | None:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        names = [str(n) for n in names]
        text = _text_columns(model)
        features = tuple(Feature(n, "string" if n in text else "float64") for n in names)
        return Signature(features, input_kind="frame", named=True)
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None:
        n_features = getattr(final_estimator(model), "n_features_in_", None)
    if n_features is None:
        return None
    return Signature.positional(int(n_features))


def _text_columns(model: Any) -> set[str]:
    """Columns a ColumnTransformer routes into a categorical encoder: they take strings."""
    text: set[str] = set()
    steps = [s for _, s in getattr(model, "steps", [])] or [model]
    for step in steps:
        for _, transformer, columns in getattr(step, "transformers_", []):
            if _has_encoder(transformer) and isinstance(columns, list | tuple | np.ndarray):
                text.update(str(c) for c in columns if isinstance(c, str))
    return text


def _has_encoder(transformer: Any) -> bool:
    if type(transformer).__name__ in _ENCODERS:
        return True
    return any(_has_encoder(s) for _, s in getattr(transformer, "steps", []))
