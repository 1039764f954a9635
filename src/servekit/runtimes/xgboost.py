"""XGBoost models saved with `save_model` (native Booster), as UBJSON (`.ubj`) or JSON (`.json`).

Both come from `xgb.train(...).save_model(path)` or from the sklearn wrappers
(`XGBClassifier().fit(...).save_model(path)`). XGBoost writes the keys of a model in sorted order,
so a model file always starts with the key `learner`: `{"learner":` in JSON and, in UBJSON,
`{` followed by an integer length marker and `learner`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from servekit.errors import CorruptArtifact
from servekit.prediction import Prediction
from servekit.runtimes import register_runtime
from servekit.runtimes._boosted import BoostedTreesRuntime
from servekit.runtimes.base import ModelDescription, import_optional
from servekit.signature import Batch, Feature, Signature

_JSON_MODEL = re.compile(rb'\s*\{\s*"learner"\s*:')
_UBJSON_MODEL = re.compile(rb"\{(?:[iU].|I..|l....|L........)learner", re.DOTALL)
# "[12:00:00] /path/to/file.cc:123: message" -> "message"
_LOG_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")
# Objectives whose `value` prediction is not a probability: XGBoost gives margins or labels.
_MARGIN_OBJECTIVES = frozenset({"binary:logitraw", "multi:softmax"})


def looks_like_xgboost(head: bytes) -> bool:
    """True when `head` starts like an XGBoost model saved as JSON or UBJSON."""
    return bool(_JSON_MODEL.match(head) or _UBJSON_MODEL.match(head))


@register_runtime
class XGBoostRuntime(BoostedTreesRuntime):
    """An XGBoost Booster saved with `save_model` (`.ubj` or `.json`).

    The task comes from the objective (`binary:*`, `multi:*` are classifiers). XGBoost only
    knows classes as `0..k-1`; the manifest's `classes` name them. Option `intra_op_threads`
    sets XGBoost's `nthread` (default: XGBoost's own).
    """

    format: ClassVar[str] = "xgboost"
    extensions: ClassVar[tuple[str, ...]] = (".ubj", ".json")
    extra: ClassVar[str | None] = "xgboost"
    description: ClassVar[str] = "XGBoost Booster saved with save_model (UBJSON or JSON)"

    def __init__(self, path: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(path, options)
        self._iteration_range = (0, 0)
        self._sklearn = False

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        return members is None and looks_like_xgboost(head)

    def load(self) -> None:
        xgb = import_optional("xgboost", "xgboost")
        try:
            booster = xgb.Booster(model_file=str(self.path))
            learner = json.loads(booster.save_config())["learner"]
        except (xgb.core.XGBoostError, ValueError, KeyError) as exc:
            raise CorruptArtifact(
                f"{self.path.name} cannot be read by XGBoost {xgb.__version__} ({_one_line(exc)}); "
                "it is truncated, corrupt, or not an XGBoost model",
                hint="Save the model again with model.save_model('model.ubj')",
            ) from None
        self.objective = str(learner["objective"]["name"])
        classes = int(learner["learner_model_param"].get("num_class", "0"))
        self._n_classes = max(classes, 2) if self.objective.startswith(("binary:", "multi:")) else 0
        # The sklearn wrappers mark the file and predict with the best iteration after early
        # stopping; a plain Booster predicts with every tree, and so do we.
        self._sklearn = "scikit_learn" in booster.attributes()
        best = booster.attr("best_iteration")
        linear = learner.get("gradient_booster", {}).get("name") == "gblinear"
        if self._sklearn and best is not None and not linear:
            self._iteration_range = (0, int(best) + 1)
        if "intra_op_threads" in self.options:
            booster.set_param({"nthread": int(self.options["intra_op_threads"])})
        self.booster = booster
        self._check_classes()

    def describe(self) -> ModelDescription:
        xgb = import_optional("xgboost", "xgboost")
        names = self.booster.feature_names
        n_features = int(self.booster.num_features())
        if names:
            signature = Signature(tuple(Feature(str(n)) for n in names), input_kind="array", named=True)
        else:
            signature = Signature.positional(n_features)
        return ModelDescription(
            task=self._task,
            framework="xgboost",
            framework_version=str(xgb.__version__),
            signature=signature,
            classes=self._classes() if self._n_classes else None,
            extra={
                "objective": self.objective,
                "boosted_rounds": int(self.booster.num_boosted_rounds()),
                "sklearn_wrapper": self._sklearn,
            },
        )

    def predict(self, batch: Batch) -> Prediction:
        margin = self.objective in _MARGIN_OBJECTIVES
        raw = self.booster.inplace_predict(
            batch,
            iteration_range=self._iteration_range,
            predict_type="margin" if margin else "value",
        )
        raw = np.asarray(raw)
        if not self._n_classes:
            return Prediction(raw.astype("float64"))
        if self._n_classes == 2 and raw.ndim == 1:
            p = _sigmoid(raw) if margin else raw
            # 1 - p in the model's float32, as XGBClassifier.predict_proba computes it.
            probabilities = np.column_stack([1 - p, p]).astype("float64")
        else:
            probabilities = _softmax(raw) if margin else raw.astype("float64")
        return self._labelled(probabilities)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype("float64")))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x.astype("float64")
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return _LOG_PREFIX.sub("", lines[0]) if lines else type(exc).__name__
