"""The prediction log: what `record` keeps, what the writer stores, and reading it back."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from servekit.errors import InvalidInput, ModelNotFound, NotFound
from servekit.monitoring import arraycodec, predlog
from servekit.monitoring.predlog import PredictionLog, export, load_inputs, parse_duration, parse_since, read_log
from servekit.prediction import Prediction
from tests.support import IRIS_FEATURES

ROUTE = "/v1/models/iris/predict"


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, Any]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    labels = np.asarray(data.target_names)[data.target]
    return data.data, LogisticRegression(max_iter=500).fit(data.data, labels)


def predict(model: Any, rows: np.ndarray) -> Prediction:
    return Prediction(model.predict(rows), model.predict_proba(rows), model.classes_)


def blocks(url: str) -> list[sqlite3.Row]:
    """The stored block rows, without their data."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        connection.row_factory = sqlite3.Row
        query = "SELECT id, model, version, first_ts, last_ts, records, rows, features, classes, layout"
        return connection.execute(f"{query} FROM prediction_log_blocks ORDER BY id").fetchall()


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def one_row_items(iris: tuple, prefix: str, count: int) -> list[tuple[Any, ...]]:
    """`record_many` tuples of one iris row each, request ids `{prefix}0`, `{prefix}1`, ..."""
    X, model = iris
    names = tuple(IRIS_FEATURES)
    return [
        (1.0e9 + i, "iris", 1, ROUTE, f"{prefix}{i}", 1.0, names, X[i : i + 1], predict(model, X[i : i + 1]))
        for i in range(count)
    ]


def record(log: PredictionLog, inputs: Any, outputs: Prediction, **fields: Any) -> None:
    names = fields.pop("feature_names", IRIS_FEATURES)
    values = {"model": "iris", "version": 1, "route": ROUTE, "request_id": "r", "latency_ms": 2.5, **fields}
    log.record(feature_names=names, inputs=inputs, outputs=outputs, **values)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


def test_every_record_is_written_once_with_its_content(url: str, iris: tuple) -> None:
    X, model = iris
    log = PredictionLog(url, batch_size=7, flush_interval_s=0.05).start()
    moment = datetime(2026, 3, 1, 12, 30, tzinfo=UTC).timestamp()
    for i in range(50):
        rows = X[i : i + 1 + i % 3]
        route = ROUTE if i % 4 else "/predict"
        record(log, rows, predict(model, rows), request_id=f"req-{i}", version=1 + i % 2, route=route, ts=moment + i)
    log.close()
    assert (log.written, log.lost, log.pending) == (50, 0, 0)
    stored = list(read_log(url))
    assert [r.request_id for r in stored] == [f"req-{i}" for i in range(50)]
    third = stored[3]
    assert third.model == "iris" and third.version == 2 and third.route == ROUTE and stored[4].route == "/predict"
    assert third.latency_ms == 2.5 and third.rows == 1 + 3 % 3
    assert third.ts == datetime.fromtimestamp(moment + 3, UTC)
    assert third.features == IRIS_FEATURES
    assert third.classes == ["setosa", "versicolor", "virginica"]
    assert third.inputs.dtype == np.float64 and np.array_equal(third.inputs, X[3:4])  # the exact bytes
    expected = predict(model, X[3:4])
    assert list(third.outputs) == expected.outputs.tolist()
    assert np.array_equal(third.probabilities, expected.probabilities)
    assert sum(r.rows for r in stored) == sum(1 + i % 3 for i in range(50))
    # Stored as blocks: one row per model version and batch, not per request.
    rows = blocks(url)
    assert sum(r["records"] for r in rows) == 50 and len(rows) < 50
    assert sum(r["rows"] for r in rows) == sum(1 + i % 3 for i in range(50))
    assert {(r["model"], r["version"], r["layout"]) for r in rows} == {("iris", 1, 1), ("iris", 2, 1)}
    assert all(json.loads(r["features"]) == IRIS_FEATURES for r in rows)


def test_a_full_batch_is_written_without_waiting_for_the_interval(url: str, iris: tuple) -> None:
    X, model = iris
    log = PredictionLog(url, batch_size=10, flush_interval_s=60).start()
    for _ in range(10):
        record(log, X[:1], predict(model, X[:1]))
    wait_until(lambda: log.written == 10)
    log.close()


def test_close_without_start_still_writes_what_was_recorded(url: str, iris: tuple) -> None:
    X, model = iris
    log = PredictionLog(url)
    record(log, X[:2], predict(model, X[:2]))
    log.close()
    assert log.written == 1 and len(list(read_log(url))) == 1


def test_records_after_close_are_counted_lost(url: str, iris: tuple) -> None:
    X, model = iris
    log = PredictionLog(url).start()
    log.close()
    record(log, X[:1], predict(model, X[:1]))
    assert (log.written, log.lost) == (0, 1)


def test_sampling_keeps_about_the_rate_and_repeats_with_a_seed(url: str, iris: tuple) -> None:
    X, model = iris
    outputs = predict(model, X[:1])
    kept = []
    for _ in range(2):
        log = PredictionLog(url, sample_rate=0.5, seed=7, flush_interval_s=0.05).start()
        for _ in range(2000):
            record(log, X[:1], outputs)
        log.close()
        assert log.written + log.sampled_out == 2000 and log.lost == 0
        kept.append(log.written)
    assert kept[0] == kept[1] and 900 < kept[0] < 1100
    assert len(load_inputs(url, "iris", None)) == 2 * kept[0]


def test_record_is_cheap(url: str, iris: tuple) -> None:
    X, model = iris
    outputs = predict(model, X[:1])
    log = PredictionLog(url, flush_interval_s=0.05).start()
    started = time.perf_counter()
    for _ in range(20_000):
        record(log, X[:1], outputs)
    per_call = (time.perf_counter() - started) / 20_000
    log.close()
    assert per_call < 100e-6, per_call  # measured ~2 µs; nothing is serialized on the caller's side
    assert log.written == 20_000


def test_a_record_that_cannot_be_serialized_is_counted_and_reported(url: str, iris: tuple) -> None:
    X, model = iris
    reports: list[tuple[int, str]] = []
    log = PredictionLog(url, flush_interval_s=0.05, on_lost=lambda n, why: reports.append((n, why))).start()
    record(log, X[:1], predict(model, X[:1]))
    log.record(model="iris", version=1, route=ROUTE, request_id="bad", latency_ms=1.0, feature_names=[],
               inputs="not an array", outputs=None)  # type: ignore[arg-type]  # fmt: skip
    record(log, X[:1], predict(model, X[:1]))
    log.close()
    assert (log.written, log.lost) == (2, 1)
    assert len(reports) == 1 and reports[0][0] == 1 and "could not serialize" in reports[0][1]


def test_a_failing_on_lost_callback_does_not_stop_the_writer(url: str, iris: tuple) -> None:
    X, model = iris

    def broken(_count: int, _reason: str) -> None:
        raise RuntimeError("callback bug")

    log = PredictionLog(url, max_pending=1, flush_interval_s=60, on_lost=broken).start()
    for _ in range(3):
        record(log, X[:1], predict(model, X[:1]))
    log.close()
    assert (log.written, log.lost) == (1, 2)


def test_dataframe_inputs_with_text_columns(url: str) -> None:
    frame = pd.DataFrame({"city": ["Paris", None], "size": [3.5, np.nan], "rooms": [2, 3]})
    outputs = Prediction(np.array([120.5, 99.0]))
    log = PredictionLog(url)
    record(log, frame, outputs, feature_names=["city", "size", "rooms"])
    log.close()
    loaded = load_inputs(url, "iris", None)
    assert loaded.columns.tolist() == ["city", "size", "rooms"]
    assert loaded["city"].tolist()[0] == "Paris" and pd.isna(loaded["city"].tolist()[1])
    assert loaded["size"].tolist()[0] == 3.5 and np.isnan(loaded["size"].tolist()[1])
    assert loaded["rooms"].tolist() == [2, 3]


def test_load_inputs_filters_by_model_and_time_and_joins_feature_sets(url: str, iris: tuple) -> None:
    X, model = iris
    now = time.time()
    log = PredictionLog(url)
    record(log, X[:3], predict(model, X[:3]), ts=now - 7200)
    record(log, X[3:5], predict(model, X[3:5]), ts=now - 60)
    record(log, X[5:6], predict(model, X[5:6]), model="other", ts=now - 60)
    wide = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    record(log, wide, Prediction(np.array(["setosa"])), version=2, feature_names=[*IRIS_FEATURES, "extra"], ts=now)
    log.close()
    everything = load_inputs(url, "iris", None)
    assert len(everything) == 6
    recent = load_inputs(url, "iris", datetime.now(UTC) - timedelta(hours=1))
    assert recent.columns.tolist() == [*IRIS_FEATURES, "extra"]
    assert np.allclose(recent[IRIS_FEATURES].to_numpy(), np.vstack([X[3:5], wide[:, :4]]))
    assert recent["extra"].isna().tolist() == [True, True, False]
    naive_since = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None)
    assert len(load_inputs(url, "iris", naive_since)) == 3


def test_load_inputs_of_a_missing_log_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "registry.db"
    assert load_inputs(f"sqlite:///{path}", "iris", None).empty
    assert not path.parent.exists()


def test_retention_deletes_old_rows(url: str, iris: tuple) -> None:
    X, model = iris
    now = time.time()
    log = PredictionLog(url, retention_s=3600)
    for age in (7200, 5000, 100, 0):
        record(log, X[:1], predict(model, X[:1]), request_id=f"age-{age}", ts=now - age)
    log.close()
    assert log.written == 4 and log.pruned == 2
    assert [r.request_id for r in read_log(url)] == ["age-100", "age-0"]


@pytest.fixture
def filled(url: str, iris: tuple) -> tuple[str, list[dict[str, Any]]]:
    """Two versions of a classifier; the expected export rows."""
    X, model = iris
    log = PredictionLog(url, batch_size=3)
    expected: list[dict[str, Any]] = []
    start = datetime(2026, 5, 1, tzinfo=UTC).timestamp()
    for i in range(12):
        rows = X[i * 10 : i * 10 + 1 + i % 2]
        outputs = predict(model, rows)
        record(log, rows, outputs, request_id=f"r{i}", version=1 + i // 6, latency_ms=float(i), ts=start + i)
        for values, out in zip(rows.tolist(), outputs.to_records(), strict=True):
            row = {"ts": pd.Timestamp(start + i, unit="s", tz="UTC"), "request_id": f"r{i}", "version": 1 + i // 6,
                   "route": ROUTE, "latency_ms": float(i), **dict(zip(IRIS_FEATURES, values, strict=True)),
                   "prediction": out["prediction"]}  # fmt: skip
            row.update({f"probability_{k}": p for k, p in out["probabilities"].items()})
            expected.append(row)
    log.close()
    return url, expected


COLUMNS = ["ts", "request_id", "version", "route", "latency_ms", *IRIS_FEATURES, "prediction"] + [
    f"probability_{c}" for c in ("setosa", "versicolor", "virginica")
]


def assert_matches(frame: pd.DataFrame, expected: list[dict[str, Any]]) -> None:
    assert frame.columns.tolist() == COLUMNS
    assert len(frame) == len(expected)
    want = pd.DataFrame(expected, columns=COLUMNS)
    assert (pd.to_datetime(frame["ts"], utc=True) == want["ts"]).all()
    for column in ("request_id", "route", "prediction"):
        assert frame[column].astype(str).tolist() == want[column].tolist()
    assert frame["version"].astype(int).tolist() == want["version"].tolist()
    numeric = ["latency_ms", *IRIS_FEATURES, *COLUMNS[-3:]]
    assert np.allclose(frame[numeric].to_numpy(float), want[numeric].to_numpy(float))


def test_export_csv_round_trips(tmp_path: Path, filled: tuple) -> None:
    url, expected = filled
    out = tmp_path / "log.csv"
    assert export(url, "iris", None, "csv", out) == len(expected)
    assert_matches(pd.read_csv(out), expected)


def test_export_parquet_round_trips(tmp_path: Path, filled: tuple) -> None:
    url, expected = filled
    out = tmp_path / "log.parquet"
    assert export(url, "iris", None, "parquet", out) == len(expected)
    frame = pd.read_parquet(out)
    assert str(frame["ts"].dtype).startswith("datetime64") and str(frame["ts"].dt.tz) == "UTC"
    assert_matches(frame, expected)


def test_export_jsonl_round_trips_to_a_stream(filled: tuple) -> None:
    url, expected = filled
    stream = io.StringIO()
    assert export(url, "iris", None, "jsonl", stream) == len(expected)
    lines = stream.getvalue().splitlines()
    assert list(orjson.loads(lines[0])) == COLUMNS
    assert_matches(pd.read_json(io.StringIO(stream.getvalue()), lines=True, convert_dates=["ts"]), expected)


def test_export_streams_in_chunks_with_one_schema(
    tmp_path: Path, filled: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks smaller than the log: Parquet row groups share the first chunk's schema, CSV has one header."""
    import pyarrow.parquet as pq

    from servekit.monitoring import predlog_export

    url, expected = filled
    monkeypatch.setattr(predlog_export, "_EXPORT_CHUNK_ROWS", 4)
    export(url, "iris", None, "parquet", tmp_path / "log.parquet")
    assert pq.ParquetFile(tmp_path / "log.parquet").num_row_groups > 2
    assert_matches(pd.read_parquet(tmp_path / "log.parquet"), expected)
    export(url, "iris", None, "csv", tmp_path / "log.csv")
    assert_matches(pd.read_csv(tmp_path / "log.csv"), expected)


def test_export_since_and_regressors(url: str) -> None:
    log = PredictionLog(url)
    now = time.time()
    for age, value in ((3 * 86400, 1.0), (600, 2.0)):
        record(log, np.array([[age, 0.5]]), Prediction(np.array([value])), feature_names=["a", "b"], ts=now - age)
    log.close()
    stream = io.StringIO()
    assert export(url, "iris", parse_since("1d"), "csv", stream) == 1
    frame = pd.read_csv(io.StringIO(stream.getvalue()))
    assert frame.columns.tolist() == ["ts", "request_id", "version", "route", "latency_ms", "a", "b", "prediction"]
    assert frame["prediction"].tolist() == [2.0] and frame["a"].tolist() == [600]


def test_export_errors_say_what_is_missing(tmp_path: Path, filled: tuple) -> None:
    url, _ = filled
    with pytest.raises(ModelNotFound, match="'wine'") as caught:
        export(url, "wine", None, "csv", io.StringIO())
    assert caught.value.hint == "logged models: iris"
    with pytest.raises(NotFound, match="no prediction log"):
        export(f"sqlite:///{tmp_path / 'none.db'}", "iris", None, "csv", io.StringIO())
    with pytest.raises(InvalidInput, match="'xlsx'"):
        export(url, "iris", None, "xlsx", io.StringIO())
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    ("text", "delta"),
    [("30m", timedelta(minutes=30)), ("1h", timedelta(hours=1)), ("24h", timedelta(days=1)), ("7d", timedelta(7))],
)
def test_parse_since_durations(text: str, delta: timedelta) -> None:
    now = datetime(2026, 1, 10, tzinfo=UTC)
    assert parse_duration(text) == delta
    assert parse_since(text, now=now) == now - delta


def test_parse_since_dates_and_errors() -> None:
    assert parse_since("2026-01-31T12:00") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_since("2026-01-31T12:00+02:00") == datetime(2026, 1, 31, 10, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="'soon'"):
        parse_since("soon")


@pytest.mark.parametrize(
    "settings",
    [{"sample_rate": 1.5}, {"batch_size": 0}, {"flush_interval_s": 0}, {"max_pending": 0}, {"retention_s": -1}],
)
def test_bad_settings_are_refused(url: str, settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match=next(iter(settings))):
        PredictionLog(url, **settings)


def test_a_bad_url_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not a database URL"):
        PredictionLog("registry.db")


def test_record_many_keeps_order_counts_overflow_and_samples(url: str, iris: tuple) -> None:
    items = one_row_items(iris, "m", 12)
    log = PredictionLog(url, max_pending=10, batch_size=100)
    log.record_many(items)
    assert (log.pending, log.lost) == (10, 2)  # the two that did not fit are counted, not dropped silently
    log.close()
    stored = list(read_log(url))
    assert [r.request_id for r in stored] == [f"m{i}" for i in range(10)]
    assert stored[3].features == IRIS_FEATURES
    half = PredictionLog(url, sample_rate=0.5, seed=3)
    half.record_many(items * 50)
    assert 240 < half.pending < 360 and half.sampled_out == 600 - half.pending
    half.close()


@pytest.mark.parametrize(
    "values",
    [
        [np.arange(12, dtype="float32").reshape(3, 4)],
        [np.array(["setosa", "virginica"], dtype=object), np.array([[0.9, 0.1], [0.2, 0.8]])],
        [np.array([1, 2, 3], dtype="int64"), None],
        [np.array([[1.5, np.nan, -np.inf]]), [["a", 1.0]]],
        [np.zeros((0, 30))],
    ],
)
def test_the_blob_codec_round_trips(values: list) -> None:
    decoded = arraycodec.decode(arraycodec.encode(*values))
    assert len(decoded) == len(values)
    for got, want in zip(decoded, values, strict=True):
        if isinstance(want, np.ndarray) and want.dtype.kind != "O":
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got, want, equal_nan=True)
        else:
            assert got == (want.tolist() if isinstance(want, np.ndarray) else want)
    with pytest.raises(ValueError, match="not a prediction-log blob"):
        arraycodec.decode(b"x123")


def test_memory_is_bounded_by_input_rows_too(url: str, iris: tuple) -> None:
    X, model = iris
    names = tuple(IRIS_FEATURES)
    big = np.repeat(X[:1], 1000, axis=0)
    item = (1.0e9, "iris", 1, ROUTE, "big", 1.0, names, big, predict(model, big))
    log = PredictionLog(url, max_pending=100, max_pending_rows=2500)
    log.record_many([item, item, item])
    assert (log.pending, log.lost) == (2, 1)  # the third 1000-row request would pass 2,500 rows
    log.start()
    wait_until(lambda: log.written == 2)
    log.record_many([item])  # written rows no longer count against the bound
    log.close()
    assert (log.written, log.lost) == (3, 1)


def test_records_that_do_not_stack_are_kept_exactly(url: str, iris: tuple) -> None:
    """One model and names object, but inputs of other dtypes and widths, outputs of other kinds:
    the group is split by layout and every record reads back as it was given."""
    X, model = iris
    names = tuple(IRIS_FEATURES)
    given = [
        (X[:2], predict(model, X[:2])),
        (X[:1].astype(np.float32), predict(model, X[:1])),
        (np.array([[1, 2, 3, 4]], dtype=np.int64), Prediction(np.array([0.5]))),
        (np.array([[1.0, 2.0]]), Prediction(np.array(["a"], dtype=object))),
        (X[2:3], predict(model, X[2:3])),
        (X[3:4], Prediction(model.predict(X[3:4]), None, model.classes_)),  # same classes, no probabilities
    ]
    items = [(1.0e9 + i, "iris", 1, ROUTE, f"r{i}", 1.0, names, x, p) for i, (x, p) in enumerate(given)]
    log = PredictionLog(url)
    log.record_many(items)
    log.close()
    assert (log.written, log.lost) == (6, 0)
    stored = list(read_log(url))
    assert [r.request_id for r in stored] == [f"r{i}" for i in range(6)]
    for got, (x, p) in zip(stored, given, strict=True):
        assert got.inputs.dtype == x.dtype and np.array_equal(got.inputs, x)
        assert list(got.outputs) == p.outputs.tolist()
    assert stored[3].features == ["x0", "x1"]  # the model's names do not fit two columns
    assert stored[2].probabilities is None and stored[2].classes == []
    assert stored[5].probabilities is None and np.array_equal(stored[4].probabilities, given[4][1].probabilities)
    assert len(blocks(url)) == 5  # the float64 classifications with probabilities share one block


def test_a_block_holds_one_minute_and_a_bounded_number_of_rows(
    url: str, iris: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servekit.monitoring import predlog_blocks

    monkeypatch.setattr(predlog_blocks, "MAX_BLOCK_ROWS", 5)
    X, model = iris
    start = datetime(2026, 5, 1, 10, 0, 58, tzinfo=UTC).timestamp()
    log = PredictionLog(url)
    for i in range(8):  # 2 rows each, over 10:00:58 - 10:01:05
        record(log, X[i : i + 2], predict(model, X[i : i + 2]), request_id=f"r{i}", ts=start + i)
    log.close()
    rows = blocks(url)
    assert [r["records"] for r in rows] == [2, 2, 2, 2]
    assert all(r["rows"] <= 5 for r in rows)
    assert rows[0]["last_ts"] < "2026-05-01 10:01" <= rows[1]["first_ts"]
    assert [r.request_id for r in read_log(url)] == [f"r{i}" for i in range(8)]


def test_overlapping_blocks_of_two_writers_read_back_in_time_order(url: str, iris: tuple) -> None:
    X, model = iris
    outputs = predict(model, X[:1])
    start = datetime(2026, 5, 1, 10, 0, tzinfo=UTC).timestamp()
    for parity in (0, 1):  # two replicas: interleaved moments in two blocks
        log = PredictionLog(url)
        for i in range(parity, 20, 2):
            record(log, X[:1], outputs, request_id=f"r{i}", ts=start + i)
        log.close()
    assert len(blocks(url)) == 2
    assert [r.request_id for r in read_log(url)] == [f"r{i}" for i in range(20)]
    since = datetime.fromtimestamp(start + 15, UTC)
    assert [r.request_id for r in read_log(url, "iris", since)] == [f"r{i}" for i in range(15, 20)]
    assert list(read_log(url, "other")) == []


def test_a_block_in_an_unknown_layout_is_a_clear_error(url: str, iris: tuple) -> None:
    from servekit.errors import RegistryError

    X, model = iris
    log = PredictionLog(url)
    record(log, X[:1], predict(model, X[:1]))
    log.close()
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        connection.execute("UPDATE prediction_log_blocks SET layout = 99")
    with pytest.raises(RegistryError, match="layout 99") as caught:
        list(read_log(url))
    assert caught.value.hint is not None


def test_a_micro_batch_segment_is_sampled_and_bounded_per_request(url: str, iris: tuple) -> None:
    """A segment (requests answered by one predict call) keeps, per request, its rows and outputs
    through sampling and the pending bounds."""
    from servekit.monitoring.predlog_blocks import Segment

    X, model = iris
    rows = [1 + i % 3 for i in range(10)]
    stacked = X[: sum(rows)]
    whole = predict(model, stacked)
    segment = Segment(
        tuple(1.0e9 + i for i in range(10)), "iris", 1, (ROUTE,) * 10, tuple(f"s{i}" for i in range(10)),
        (1.0,) * 10, tuple(IRIS_FEATURES), stacked, whole, tuple(rows), tuple(rows),
    )  # fmt: skip
    log = PredictionLog(url, sample_rate=0.5, seed=5)
    log.record_segments([segment])
    kept = log.pending
    assert 0 < kept < 10 and log.sampled_out == 10 - kept
    log.close()
    stored = list(read_log(url))
    assert len(stored) == kept
    starts = np.cumsum([0, *rows])
    for request in stored:
        i = int(request.request_id[1:])
        assert np.array_equal(request.inputs, stacked[starts[i] : starts[i + 1]])
        assert list(request.outputs) == whole.outputs[starts[i] : starts[i + 1]].tolist()
        assert np.array_equal(request.probabilities, whole.probabilities[starts[i] : starts[i + 1]])
    bounded = PredictionLog(url, max_pending=4)
    bounded.record_segments([segment])  # ten requests do not fit four places: all counted lost
    assert (bounded.pending, bounded.lost) == (0, 10)
    bounded.close()


def test_the_writer_takes_batch_size_requests_per_transaction_in_order(url: str, iris: tuple) -> None:
    items = one_row_items(iris, "b", 20)
    log = PredictionLog(url, batch_size=7)
    log.record_many(items)  # one hand-over of 20 requests, split 7 + 7 + 6
    log.close()
    assert [r["records"] for r in blocks(url)] == [7, 7, 6]
    assert [r.request_id for r in read_log(url)] == [f"b{i}" for i in range(20)]


def connections(log: PredictionLog) -> int:
    """Open connections of the log's engine: in its pool, or held by the writer between blocks."""
    pool = log._engine.pool  # type: ignore[union-attr]
    return pool.checkedin() + pool.checkedout()  # type: ignore[attr-defined]


def test_a_quiet_writer_lets_go_of_its_connection_after_many_rows(
    url: str, iris: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(predlog, "RECONNECT_AFTER_ROWS", 2000)
    released: list[bool] = []
    monkeypatch.setattr(predlog, "release_free_memory", lambda: released.append(True) or True)
    X, model = iris
    big = np.repeat(X[:1], 1000, axis=0)
    item = (1.0e9, "iris", 1, ROUTE, "big", 1.0, tuple(IRIS_FEATURES), big, predict(model, big))
    log = PredictionLog(url, flush_interval_s=0.05).start()
    try:
        log.record_many([item])
        wait_until(lambda: log.written == 1)
        time.sleep(0.3)  # several quiet intervals, but only 1,000 rows written: the connection stays
        assert log._engine is not None and connections(log) == 1 and not released
        log.record_many([item, item])
        wait_until(lambda: log.written == 3)
        wait_until(lambda: bool(released))  # the trim comes right after the connection is closed
        assert connections(log) == 0 and released == [True]  # closed once the log went quiet
        log.record_many([item])  # and the next write connects again
        wait_until(lambda: log.written == 4)
    finally:
        log.close()
    assert log.lost == 0 and len(list(read_log(url))) == 4
