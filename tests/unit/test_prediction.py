"""`Prediction`: JSON-ready records for classifiers and regressors, and splitting/joining micro-batches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from servekit.prediction import Prediction


def strict_json(value: object) -> str:
    """The stdlib encoder with NaN/Infinity refused, as a strict JSON parser would."""
    return json.dumps(value, allow_nan=False)


def test_classifier_records_key_probabilities_by_class_name() -> None:
    prediction = Prediction(
        np.array(["setosa", "virginica"]),
        np.array([[0.7, 0.1, 0.2], [0.1, 0.3, 0.6]]),
        ["setosa", "versicolor", "virginica"],
    )
    assert prediction.to_records() == [
        {
            "prediction": "setosa",
            "probabilities": {"setosa": 0.7, "versicolor": 0.1, "virginica": 0.2},
            "confidence": 0.7,
        },
        {
            "prediction": "virginica",
            "probabilities": {"setosa": 0.1, "versicolor": 0.3, "virginica": 0.6},
            "confidence": 0.6,
        },
    ]


def test_numeric_classes_become_string_keys_and_labels_plain_ints() -> None:
    prediction = Prediction(
        np.array([0, 2], dtype=np.int64), np.array([[0.5, 0.2, 0.3], [0.1, 0.1, 0.8]]), np.array([0, 1, 2])
    )
    records = prediction.to_records()
    assert [sorted(r["probabilities"]) for r in records] == [["0", "1", "2"], ["0", "1", "2"]]
    assert [r["confidence"] for r in records] == [0.5, 0.8]
    assert type(records[0]["prediction"]) is int
    assert strict_json(records) == (
        '[{"prediction": 0, "probabilities": {"0": 0.5, "1": 0.2, "2": 0.3}, "confidence": 0.5}, '
        '{"prediction": 2, "probabilities": {"0": 0.1, "1": 0.1, "2": 0.8}, "confidence": 0.8}]'
    )


def test_boolean_classes() -> None:
    prediction = Prediction(np.array([True]), np.array([[0.25, 0.75]]), [False, True])
    assert prediction.to_records() == [
        {"prediction": True, "probabilities": {"False": 0.25, "True": 0.75}, "confidence": 0.75}
    ]


def test_float32_probabilities_are_plain_floats() -> None:
    prediction = Prediction(np.array(["a"]), np.array([[0.25, 0.75]], dtype=np.float32), ["a", "b"])
    (record,) = prediction.to_records()
    assert type(record["confidence"]) is float
    assert all(type(p) is float for p in record["probabilities"].values())
    assert record["confidence"] == pytest.approx(0.75)
    strict_json(record)


def test_regressor_records_have_only_the_prediction() -> None:
    prediction = Prediction(np.array([1.5, -2.25], dtype=np.float32))
    records = prediction.to_records()
    assert records == [{"prediction": 1.5}, {"prediction": -2.25}]
    assert all(type(r["prediction"]) is float for r in records)


def test_integer_regression_outputs_are_plain_ints() -> None:
    records = Prediction(np.array([3, 4], dtype=np.int32)).to_records()
    assert records == [{"prediction": 3}, {"prediction": 4}]
    assert type(records[0]["prediction"]) is int


def test_non_finite_regression_outputs_become_none() -> None:
    records = Prediction(np.array([1.0, np.nan, np.inf, -np.inf])).to_records()
    assert records == [{"prediction": 1.0}, {"prediction": None}, {"prediction": None}, {"prediction": None}]
    assert (
        strict_json(records)
        == '[{"prediction": 1.0}, {"prediction": null}, {"prediction": null}, {"prediction": null}]'
    )


def test_multi_output_regression_rows_are_lists() -> None:
    records = Prediction(np.array([[1.0, np.nan], [2.0, 3.0]])).to_records()
    assert records == [{"prediction": [1.0, None]}, {"prediction": [2.0, 3.0]}]
    strict_json(records)


def test_probabilities_without_classes_are_treated_as_regression() -> None:
    assert Prediction(np.array([1.0]), np.array([[0.5, 0.5]]), None).to_records() == [{"prediction": 1.0}]


def test_len_take_and_concat_round_trip() -> None:
    prediction = Prediction(
        np.array(["a", "b", "c", "a"]),
        np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]]),
        ["a", "b", "c"],
    )
    assert len(prediction) == 4
    parts = [prediction.take(0, 1), prediction.take(1, 3), prediction.take(3, 4)]
    assert [len(p) for p in parts] == [1, 2, 1]
    assert parts[1].to_records() == prediction.to_records()[1:3]
    joined = Prediction.concat(parts)
    assert joined.outputs.tolist() == prediction.outputs.tolist()
    assert joined.probabilities is not None
    assert np.array_equal(joined.probabilities, prediction.probabilities)
    assert joined.classes == ["a", "b", "c"]
    assert joined.to_records() == prediction.to_records()


def test_take_and_concat_for_regressors() -> None:
    prediction = Prediction(np.arange(5, dtype=np.float64))
    joined = Prediction.concat([prediction.take(0, 2), prediction.take(2, 5)])
    assert joined.probabilities is None
    assert joined.outputs.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(prediction.take(2, 2)) == 0


def test_parts_of_a_micro_batch_convert_the_whole_once() -> None:
    whole = Prediction(
        np.array([0, 1, 2, 1]),
        np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]]),
        ["setosa", "versicolor", "virginica"],
    )
    parts = [whole.take(0, 1), whole.take(1, 3), whole.take(3, 4)]
    for part in parts:  # each the same as its own rows converted alone
        alone = Prediction(part.outputs.copy(), part.probabilities.copy(), part.classes)  # type: ignore[union-attr]
        assert part.to_records() == alone.to_records()
    assert whole._records is not None  # converted once, for every part
    assert [r["prediction"] for p in parts for r in p.to_records()] == [0, 1, 2, 1]
    assert parts[1].to_records() is not parts[1].to_records()  # each call its own list


def test_parts_of_a_regression_batch_keep_non_finite_as_none() -> None:
    whole = Prediction(np.array([1.5, np.nan, 2.5]))
    assert whole.take(1, 3).to_records() == [{"prediction": None}, {"prediction": 2.5}]


def test_detached_keeps_the_outputs_and_drops_the_cached_records() -> None:
    whole = Prediction(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), ["a", "b"])
    assert whole.detached() is whole  # nothing to drop
    part = whole.take(1, 2)
    part.to_records()
    assert whole._records is not None
    for kept in (part.detached(), whole.detached()):
        assert kept._part_of is None and kept._records is None
    assert part.detached().outputs.tolist() == [1]
    assert whole.detached().to_records() == whole.to_records()
