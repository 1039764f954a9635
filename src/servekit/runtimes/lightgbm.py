"""LightGBM models saved as text with `booster.save_model("model.txt")`.

The file starts with `tree\\nversion=v4\\n`, then a header of `key=value` lines (objective,
num_class, feature_names, tree_sizes), the trees, `end of trees`, and the parameters.

LightGBM's parser crashes the whole process (abort or segfault) on a truncated file instead of
raising, so `load` checks the structure first: the byte sizes in `tree_sizes` must lead exactly
to `end of trees`, and a `parameters:` section must be closed by `end of parameters`.
"""

from __future__ import annotations

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

_MAGIC = re.compile(rb"tree\r?\nversion=v\d")
_CLASSIFIER_OBJECTIVES = frozenset({"binary", "multiclass", "multiclassova"})
_END_OF_TREES = b"end of trees"


def looks_like_lightgbm(head: bytes) -> bool:
    """True when `head` starts like a LightGBM text model."""
    return bool(_MAGIC.match(head))


@register_runtime
class LightGBMRuntime(BoostedTreesRuntime):
    """A LightGBM Booster saved as a text model (`.txt`).

    The task comes from the objective (`binary`, `multiclass`, `multiclassova` are
    classifiers). LightGBM only knows classes as `0..k-1`; the manifest's `classes` name them
    (an `LGBMClassifier` keeps its own labels in the Python object, not in the file). Option
    `intra_op_threads` sets LightGBM's `num_threads` for predictions.
    """

    format: ClassVar[str] = "lightgbm"
    extensions: ClassVar[tuple[str, ...]] = (".txt",)
    extra: ClassVar[str | None] = "lightgbm"
    description: ClassVar[str] = "LightGBM Booster saved as a text model (booster.save_model)"

    def __init__(self, path: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(path, options)
        self._predict_options: dict[str, Any] = {}

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        return members is None and looks_like_lightgbm(head)

    def load(self) -> None:
        lgb = import_optional("lightgbm", "lightgbm")
        text, header = _read_model(self.path)
        try:
            booster = lgb.Booster(model_str=text)
        except (lgb.basic.LightGBMError, ValueError) as exc:
            raise CorruptArtifact(
                f"{self.path.name} cannot be read by LightGBM {lgb.__version__} ({_one_line(exc)})",
                hint="Save the model again with booster.save_model('model.txt')",
            ) from None
        objective = header.get("objective", "").split()
        self.objective = objective[0] if objective else None
        if self.objective in _CLASSIFIER_OBJECTIVES:
            self._n_classes = max(int(header.get("num_class", "1")), 2)
        if "intra_op_threads" in self.options:
            self._predict_options = {"num_threads": int(self.options["intra_op_threads"])}
        self.booster = booster
        self._check_classes()

    def describe(self) -> ModelDescription:
        lgb = import_optional("lightgbm", "lightgbm")
        n_features = int(self.booster.num_feature())
        names = [str(n) for n in self.booster.feature_name()]
        if names and names != [f"Column_{i}" for i in range(n_features)]:
            signature = Signature(tuple(Feature(n) for n in names), input_kind="array", named=True)
        else:  # LightGBM invents Column_0.. when it was trained without names
            signature = Signature.positional(n_features)
        return ModelDescription(
            task=self._task,
            framework="lightgbm",
            framework_version=str(lgb.__version__),
            signature=signature,
            classes=self._classes() if self._n_classes else None,
            extra={"objective": self.objective, "trees": int(self.booster.num_trees())},
        )

    def predict(self, batch: Batch) -> Prediction:
        raw = np.asarray(self.booster.predict(batch, **self._predict_options), dtype="float64")
        if not self._n_classes:
            return Prediction(raw)
        probabilities = np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw
        return self._labelled(probabilities)


def _read_model(path: Path) -> tuple[str, dict[str, str]]:
    """The model text and its header, or `CorruptArtifact` when the file is cut or damaged."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptArtifact(f"cannot read {path.name}: {exc.strerror or exc}") from None
    problem = _structure_problem(data)
    text = ""
    if problem is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            problem = "it is not UTF-8 text"
    if problem is not None:
        raise CorruptArtifact(
            f"{path.name} is not a complete LightGBM text model: {problem}",
            hint="Save the model again with booster.save_model('model.txt')",
        )
    header_end = data.find(b"\n\n")
    header: dict[str, str] = {}
    for line in text[:header_end].splitlines():
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    return text, header


def _structure_problem(data: bytes) -> str | None:
    if not looks_like_lightgbm(data[:32]):
        return "it does not start with 'tree' and 'version=v'"
    end = data.find(b"\n" + _END_OF_TREES)
    if end < 0:
        return f"'{_END_OF_TREES.decode()}' is missing (the file is truncated)"
    sizes = re.search(rb"^tree_sizes=([\d ]*)$", data[:end], re.MULTILINE)
    first_tree = data.find(b"\nTree=0\n", 0, end)
    if sizes is not None and first_tree >= 0:
        try:
            expected = first_tree + 1 + sum(int(s) for s in sizes.group(1).split())
        except ValueError:
            return "its tree_sizes line is damaged"
        if not data.startswith(_END_OF_TREES, expected):
            return "its trees do not have the sizes its header records (the file is truncated or edited)"
    parameters = data.find(b"\nparameters:\n", end)
    if parameters >= 0 and data.find(b"\nend of parameters", parameters) < 0:
        return "its parameters section is cut short (the file is truncated)"
    return None


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
