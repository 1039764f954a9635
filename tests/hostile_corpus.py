"""Hostile requests for every protocol, and the answer each must get.

Each `Hostile` case is one raw HTTP request (method, path, headers, body bytes) with the exact
status it must get and a phrase its error message must contain. The cases run against a real
`servekit serve` (`serve_corpus_models`) answering three models:

- `iris`: a RandomForest bundle with named features, the default model (`/predict`, `/invocations`);
- `diabetes`: a Ridge regressor file with 10 positional features (`x0`..`x9`);
- `flowers`: version 1 from the registry, served as `flowers@production`.

The body limit is `BODY_LIMIT` (4 MiB, not the 16 MiB default): a 10**6-element JSON array fits
under it, a 10 MB string does not, and both are cheap to send. Cases whose `finding` is set
guard against a fixed fuzzing finding (the numbered list in docs/security.md).
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from tests.support import ServerProcess, diabetes_model, iris_bundle

__all__ = [
    "BODY_LIMIT",
    "CASES",
    "DIABETES_ROW",
    "HUGE",
    "IRIS_ROW",
    "LEAK_MARKERS",
    "Hostile",
    "error_shape",
    "serve_corpus_models",
]

MB = 1024 * 1024
BODY_LIMIT = 4 * MB
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
DIABETES_ROW = [0.0] * 10
HUGE = 1e308
"""Finite, but past float32's range (3.4e38): what tree models compute in."""
LEAK_MARKERS = ("Traceback", 'File "', "site-packages", "<Buffer>", "ndarray", "pyarrow", "numpy", " at 0x")
"""Text that only internals produce: an error message must contain none of it."""

JSON = {"content-type": "application/json"}
CSV = {"content-type": "text/csv"}
PARQUET = {"content-type": "application/vnd.apache.parquet"}
HEADER_LENGTH = "inference-header-content-length"

Body = bytes | Callable[[], bytes] | Callable[[], Iterator[bytes]]
"""Bytes, or a function making them (big bodies are built when sent); a generator is sent chunked."""


@dataclass(frozen=True)
class Hostile:
    """One request and the answer it must get."""

    name: str
    method: str
    path: str
    status: int
    phrase: str
    """Must appear (case-insensitive) in the error message."""
    body: Body = b""
    headers: dict[str, str] = field(default_factory=dict)
    allow: str | None = None
    """The `Allow` header a 405 must carry."""
    finding: int | None = None
    """The fuzzing finding this case guards against (the numbered list in docs/security.md)."""

    def content(self) -> bytes | Iterator[bytes]:
        return self.body() if callable(self.body) else self.body


def error_shape(path: str) -> str:
    """The error body of the protocol `path` belongs to: problem, oip, kserve or mlflow."""
    if path.startswith("/v2"):
        return "oip"
    if path.split("?")[0].endswith(":predict"):
        return "kserve"
    if path in ("/invocations", "/ping", "/version"):
        return "mlflow"
    return "problem"


def serve_corpus_models(tmp: Path, env: dict[str, str] | None = None) -> ServerProcess:
    """A started (not yet ready) `servekit serve` of iris, diabetes and flowers@production."""
    from servekit.bundle import Bundle
    from servekit.registry import Registry

    home = tmp / "home"
    (tmp / "registry").mkdir()
    with Registry(home) as registry:
        registry.push(Bundle.read(iris_bundle(tmp / "registry", name="flowers", trees=3)))
        registry.promote("flowers", 1, "production")
    iris = iris_bundle(tmp)
    diabetes, _ = diabetes_model(tmp)
    settings = {"SERVEKIT_HOME": str(home), "SERVEKIT_MAX_BODY_BYTES": str(BODY_LIMIT), **(env or {})}
    return ServerProcess(["serve", str(iris), str(diabetes), "flowers@production", "--trust"], env=settings)


# -- bodies -------------------------------------------------------------------------------------
def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _oip(data: Any, datatype: str = "FP64", shape: list[int] | None = None) -> bytes:
    tensor = {"name": "input", "shape": shape or [1, 4], "datatype": datatype, "data": data}
    return _json({"inputs": [tensor]})


def _binary(datatype: str, shape: list[int], raw: bytes, *, size: int | None = None) -> tuple[bytes, int]:
    """An OIP binary-extension body and its JSON header's length."""
    parameters = {"binary_data_size": len(raw) if size is None else size}
    head = _json({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "parameters": parameters}]})
    return head + raw, len(head)


@cache
def _long_string(size: int) -> bytes:
    """A native one-row body whose first feature is a string of `size` bytes."""
    return b'{"features": ["' + b"a" * size + b'", 1, 2, 3]}'


@cache
def _million_oip() -> bytes:
    return b'{"inputs": [{"name": "input", "shape": [1000000], "datatype": "FP64", "data": [' + (
        b",".join([b"0"] * 1_000_000) + b"]}]}"
    )


def _deep() -> bytes:
    return b"[" * 100_000


def _gzip_bomb() -> bytes:
    """200 MB of spaces, then a valid OIP request, in ~200 KB of gzip."""
    return _bomb("gzip")


@cache
def _bomb(kind: str) -> bytes:
    data = b" " * (200 * MB) + _oip(IRIS_ROW)
    return gzip.compress(data, compresslevel=9) if kind == "gzip" else zlib.compress(data, 9)


def _chunks(size: int) -> Callable[[], Iterator[bytes]]:
    def stream() -> Iterator[bytes]:
        yield b'{"features": ["'
        for _ in range(size // (64 * 1024)):
            yield b"a" * (64 * 1024)
        yield b'", 1, 2, 3]}'

    return stream


def _parquet(columns: dict[str, list[Any]]) -> Callable[[], bytes]:
    def build() -> bytes:
        import pandas as pd

        out = io.BytesIO()
        pd.DataFrame(columns).to_parquet(out)
        return out.getvalue()

    return build


def _iris_columns(first: Any) -> dict[str, list[Any]]:
    return {"sepal_length": [first], "sepal_width": [3.5], "petal_length": [1.4], "petal_width": [0.2]}


# -- the cases ------------------------------------------------------------------------------------
NATIVE = "/v1/models/iris/predict"
OIP = "/v2/models/iris/infer"
KSERVE = "/v1/models/iris:predict"
MLFLOW = "/invocations"
JSON_ROUTES = {
    "native": NATIVE,
    "native-version": "/v1/models/flowers/versions/production/predict",
    "seed": "/predict",
    "seed-v1": "/v1/predict",
    "seed-batch": "/predict/batch",
    "kserve": KSERVE,
    "mlflow": MLFLOW,
}


def _row_body(path: str, row: bytes) -> bytes:
    """A one-row body in the shape `path` takes, with `row` as raw JSON text."""
    if path == "/predict/batch":
        return b'[{"features": ' + row + b"}]"
    if path in (KSERVE, MLFLOW):
        return b'{"instances": [' + row + b"]}"
    return b'{"features": ' + row + b"}"


def _lazy_row(path: str, row: Callable[[], bytes]) -> Callable[[], bytes]:
    return lambda: _row_body(path, row())


def _duplicate_keys(path: str) -> bytes:
    """The row given twice under the same key: a parser that keeps the last one sees another row."""
    first, second = _json(IRIS_ROW), _json([6.7, 3.0, 5.2, 2.3])
    if path == "/predict/batch":
        return b'[{"features": ' + first + b', "features": ' + second + b"}]"
    if path in (KSERVE, MLFLOW):
        return b'{"instances": [' + first + b'], "instances": [' + second + b"]}"
    return b'{"features": ' + first + b', "features": ' + second + b"}"


def _per_json_route() -> list[Hostile]:
    """The same hostile inputs on every JSON prediction route."""
    cases: list[Hostile] = []
    for key, path in JSON_ROUTES.items():
        unusable = 400 if path == MLFLOW else 422  # MLflow answers every unusable input with 400
        gzipped = {**JSON, "content-encoding": "gzip"}
        rows: list[tuple[str, int, str, Body, dict[str, str], int | None]] = [
            ("empty-body", 400, "body is empty", b"", JSON, None),
            ("empty-body-no-content-type", 400, "body is empty", b"", {}, None),
            ("xml", 415, "not accepted", b"<features/>", {"content-type": "application/xml"}, None),
            ("invalid-utf8", 400, "not valid JSON", _row_body(path, b'["\xff\xfe", 1, 2, 3]'), JSON, None),
            ("utf16", 400, "not valid JSON", '{"features": [1, 2, 3, 4]}'.encode("utf-16"), JSON, None),
            ("nan-literal", 400, "not valid JSON", _row_body(path, b"[NaN, 3.5, 1.4, 0.2]"), JSON, None),
            ("infinity-literal", 400, "not valid JSON", _row_body(path, b"[Infinity, 3.5, 1.4, 0.2]"), JSON, None),
            ("float-1e400", 400, "infinity", _row_body(path, b"[1e400, 3.5, 1.4, 0.2]"), JSON, None),
            ("int-10**400", 400, "infinity", _row_body(path, b"[1" + b"0" * 400 + b", 3.5, 1.4, 0.2]"), JSON, None),
            ("huge-finite", unusable, "too large", _row_body(path, b"[1e308, 3.5, 1.4, 0.2]"), JSON, 1),
            ("booleans", unusable, "boolean", _row_body(path, b"[true, false, true, 1]"), JSON, None),
            ("nan-string", unusable, "expected a number", _row_body(path, b'["NaN", 3.5, 1.4, 0.2]'), JSON, None),
            ("deep-nesting", 400, "not valid JSON", _deep, JSON, None),
            ("trailing-garbage", 400, "not valid JSON", _row_body(path, _json(IRIS_ROW)) + b" }{", JSON, None),
            ("million-values", unusable, "1000000", _lazy_row(path, _million_row), JSON, None),
            ("string-3MB", unusable, "expected a number", _lazy_row(path, _string_row), JSON, None),
            ("string-10MB", 413, "at most", lambda: _long_string(10 * MB), JSON, None),
            ("gzip", 415, "Content-Encoding", gzip.compress(_row_body(path, _json(IRIS_ROW))), gzipped, 3),
            ("gzip-bomb", 415, "Content-Encoding", _gzip_bomb, gzipped, 3),
            ("duplicate-keys", 400, "more than once", _duplicate_keys(path), JSON, 7),
        ]
        cases += [Hostile(f"{key}-{name}", "POST", path, s, p, b, h, finding=f) for name, s, p, b, h, f in rows]
        cases.append(Hostile(f"{key}-string-10MB-chunked", "POST", path, 413, "over", _chunks(10 * MB), JSON))
    return cases


@cache
def _million_row() -> bytes:
    """One row of 10**6 zeros (2 MB: within the body limit)."""
    return b"[" + b",".join([b"0"] * 1_000_000) + b"]"


def _string_row() -> bytes:
    """A row whose first value is a 3 MB string (within the body limit)."""
    return b'["' + b"a" * (3 * MB) + b'", 1, 2, 3]'


def _oip_cases() -> list[Hostile]:
    raw = struct.pack("<4d", *IRIS_ROW)
    ok, ok_len = _binary("FP64", [1, 4], raw)
    cases = [
        Hostile("oip-empty-body", "POST", OIP, 400, "body is empty"),
        Hostile("oip-xml", "POST", OIP, 400, "not valid JSON", b"<inputs/>", {"content-type": "application/xml"}),
        Hostile("oip-invalid-utf8", "POST", OIP, 400, "not valid JSON", b'{"id": "\xff", "inputs": []}'),
        Hostile("oip-not-an-object", "POST", OIP, 400, "JSON object", b"[1, 2, 3]"),
        Hostile("oip-no-inputs", "POST", OIP, 400, "non-empty list", b'{"inputs": []}'),
        Hostile("oip-nan-literal", "POST", OIP, 400, "not valid JSON", _oip(IRIS_ROW).replace(b"5.1", b"NaN")),
        Hostile("oip-float-1e400", "POST", OIP, 400, "infinity", _oip(IRIS_ROW).replace(b"5.1", b"1e400")),
        Hostile("oip-int-10**400", "POST", OIP, 400, "infinity", _oip(IRIS_ROW).replace(b"5.1", b"1" + b"0" * 400)),
        Hostile("oip-huge-finite", "POST", OIP, 422, "too large", _oip([HUGE, 3.5, 1.4, 0.2]), finding=1),
        Hostile("oip-fp32-overflow", "POST", OIP, 422, "NaN and Infinity", _oip([1e300, 3.5, 1.4, 0.2], "FP32")),
        Hostile("oip-booleans-as-fp64", "POST", OIP, 422, "cannot hold the boolean", _oip([True, False, True, 1.0])),
        Hostile("oip-bool-tensor", "POST", OIP, 422, "takes numbers", _oip([True, False, True, False], "BOOL")),
        Hostile("oip-int8-out-of-range", "POST", OIP, 422, "out of range", _oip([300, 1, 2, 3], "INT8")),
        Hostile("oip-int64-out-of-range", "POST", OIP, 422, "out of range", _oip([2**63, 1, 2, 3], "INT64")),
        Hostile("oip-uint8-negative", "POST", OIP, 422, "out of range", _oip([-1, 1, 2, 3], "UINT8")),
        Hostile("oip-null", "POST", OIP, 422, "cannot hold null", _oip([None, 3.5, 1.4, 0.2])),
        Hostile(
            "oip-shape-lies",
            "POST",
            OIP,
            400,
            "holds 1000000000000000000000000000 values",
            _oip([1.0], shape=[10**9] * 3),
        ),
        Hostile("oip-negative-shape", "POST", OIP, 400, "non-negative integers", _oip(IRIS_ROW, shape=[-1, 4])),
        Hostile(
            "oip-deep-data",
            "POST",
            OIP,
            400,
            "holds 4 values",
            _oip(IRIS_ROW).replace(b"[5.1,3.5,1.4,0.2]", b"[" * 200 + b"5.1" + b"]" * 200),
        ),
        # 1000 levels: orjson reads them (its limit is 1024); the standard library's parser does not.
        Hostile(
            "oip-deeper-data",
            "POST",
            OIP,
            400,
            "",
            _oip(IRIS_ROW).replace(b"[5.1,3.5,1.4,0.2]", b"[" * 1000 + b"5.1" + b"]" * 1000),
        ),
        Hostile("oip-deep-nesting", "POST", OIP, 400, "not valid JSON", _deep),
        Hostile("oip-million-values", "POST", OIP, 422, "4 values", _million_oip),
        Hostile(
            "oip-too-many-rows", "POST", OIP, 413, "at most 10000", lambda: _oip([1.0] * 80_000, shape=[20_000, 4])
        ),
        Hostile("oip-string-10MB", "POST", OIP, 413, "at most", lambda: _long_string(10 * MB)),
        Hostile("oip-string-10MB-chunked", "POST", OIP, 413, "over", _chunks(10 * MB)),
        Hostile(
            "oip-id-not-string",
            "POST",
            OIP,
            400,
            "'id' must be a string",
            _json({"id": 5, "inputs": orjson.loads(_oip(IRIS_ROW))["inputs"]}),
        ),
        Hostile(
            "oip-duplicate-input",
            "POST",
            OIP,
            400,
            "given twice",
            _json({"inputs": [orjson.loads(_oip(IRIS_ROW))["inputs"][0]] * 2}),
        ),
        Hostile(
            "oip-unknown-output",
            "POST",
            OIP,
            400,
            "unknown output",
            _json({**orjson.loads(_oip(IRIS_ROW)), "outputs": [{"name": "nope"}]}),
        ),
        Hostile(
            "oip-duplicate-keys",
            "POST",
            OIP,
            400,
            "more than once",
            b'{"inputs": [], "inputs": ' + _json(orjson.loads(_oip(IRIS_ROW))["inputs"]) + b"}",
            finding=7,
        ),
        # Content-Encoding: decompressed at most to the body limit.
        Hostile(
            "oip-gzip-bomb", "POST", OIP, 413, "decompressed body is over", _gzip_bomb, {"content-encoding": "gzip"}
        ),
        Hostile(
            "oip-deflate-bomb",
            "POST",
            OIP,
            413,
            "decompressed body is over",
            lambda: _bomb("deflate"),
            {"content-encoding": "deflate"},
        ),
        Hostile(
            "oip-gzip-truncated",
            "POST",
            OIP,
            400,
            "truncated",
            lambda: gzip.compress(_oip(IRIS_ROW))[:-12],
            {"content-encoding": "gzip"},
        ),
        Hostile(
            "oip-gzip-garbage", "POST", OIP, 400, "not valid gzip", b"not gzip at all", {"content-encoding": "gzip"}
        ),
        Hostile("oip-brotli", "POST", OIP, 415, "not supported", _oip(IRIS_ROW), {"content-encoding": "br"}),
        # The binary tensor extension, with an Inference-Header-Content-Length that lies.
        Hostile("oip-binary-length-negative", "POST", OIP, 400, "whole number", ok, {HEADER_LENGTH: "-5"}),
        Hostile("oip-binary-length-not-a-number", "POST", OIP, 400, "whole number", ok, {HEADER_LENGTH: "abc"}),
        Hostile("oip-binary-length-fraction", "POST", OIP, 400, "whole number", ok, {HEADER_LENGTH: "12.5"}),
        Hostile("oip-binary-length-zero", "POST", OIP, 400, "is 0", ok, {HEADER_LENGTH: "0"}),
        Hostile(
            "oip-binary-length-past-body", "POST", OIP, 400, "body has only", ok, {HEADER_LENGTH: str(ok_len + 1000)}
        ),
        Hostile("oip-binary-length-10**30", "POST", OIP, 400, "body has only", ok, {HEADER_LENGTH: "1" + "0" * 30}),
        Hostile("oip-binary-length-short", "POST", OIP, 400, "not valid JSON", ok, {HEADER_LENGTH: str(ok_len - 5)}),
        Hostile("oip-binary-length-long", "POST", OIP, 400, "not valid JSON", ok, {HEADER_LENGTH: str(ok_len + 5)}),
        _binary_case("oip-binary-size-past-end", 400, "goes past the end", "FP64", [1, 4], raw[:16], size=32),
        _binary_case("oip-binary-size-negative", 400, "non-negative integer", "FP64", [1, 4], raw, size=-32),
        _binary_case("oip-binary-size-disagrees-with-shape", 400, "takes 32", "FP64", [1, 4], raw[:24]),
        _binary_case("oip-binary-unclaimed-bytes", 400, "not claimed", "FP64", [1, 4], raw, size=32, extra=b"xx"),
        _binary_case(
            "oip-binary-bytes-length-lies",
            400,
            "goes past the end",
            "BYTES",
            [1, 4],
            struct.pack("<I", 2**31) + b"abcd",
        ),
        _binary_case("oip-binary-bytes-not-utf8", 422, "not UTF-8", "BYTES", [1], struct.pack("<I", 2) + b"\xff\xfe"),
        _binary_case("oip-binary-bool-not-0-or-1", 400, "0 or 1", "BOOL", [1, 4], b"\x07\x00\x01\x00"),
        _binary_case(
            "oip-binary-nan", 422, "NaN and Infinity", "FP64", [1, 4], struct.pack("<4d", float("nan"), 1, 2, 3)
        ),
        _binary_case(
            "oip-binary-huge-finite", 422, "too large", "FP64", [1, 4], struct.pack("<4d", HUGE, 1, 2, 3), finding=1
        ),
    ]
    return cases


def _binary_case(
    name: str,
    status: int,
    phrase: str,
    datatype: str,
    shape: list[int],
    raw: bytes,
    *,
    size: int | None = None,
    extra: bytes = b"",
    finding: int | None = None,
) -> Hostile:
    body, length = _binary(datatype, shape, raw, size=size)
    return Hostile(name, "POST", OIP, status, phrase, body + extra, {HEADER_LENGTH: str(length)}, finding=finding)


def _mlflow_cases() -> list[Hostile]:
    header = ",".join(IRIS).encode() + b"\n"
    return [
        Hostile("mlflow-csv-empty", "POST", MLFLOW, 400, "CSV body is empty", b"", CSV),
        Hostile("mlflow-csv-header-only", "POST", MLFLOW, 400, "no rows", header, CSV),
        Hostile("mlflow-csv-invalid-utf8", "POST", MLFLOW, 400, "not UTF-8", header + b"\xff\xfe,1,2,3\n", CSV),
        Hostile("mlflow-csv-nan", "POST", MLFLOW, 400, "NaN and Infinity", header + b"NaN,1,2,3\n", CSV),
        Hostile("mlflow-csv-1e400", "POST", MLFLOW, 400, "NaN and Infinity", header + b"1e400,1,2,3\n", CSV),
        Hostile("mlflow-csv-huge-finite", "POST", MLFLOW, 400, "too large", header + b"1e308,1,2,3\n", CSV, finding=1),
        Hostile("mlflow-csv-boolean", "POST", MLFLOW, 400, "expected a number", header + b"true,1,2,3\n", CSV),
        Hostile("mlflow-csv-ragged", "POST", MLFLOW, 400, "3 values for 4 columns", header + b"1,2,3\n", CSV),
        Hostile(
            "mlflow-csv-duplicate-column",
            "POST",
            MLFLOW,
            400,
            "more than once",
            b"sepal_length,sepal_length,petal_length,petal_width\n1,2,3,4\n",
            CSV,
        ),
        Hostile("mlflow-csv-unknown-columns", "POST", MLFLOW, 400, "unknown feature", b"a,b\n1,2\n", CSV),
        Hostile(
            "mlflow-csv-huge-field",
            "POST",
            MLFLOW,
            400,
            "field limit",
            header + b'"' + b"9" * 200_000 + b'",2,3,4\n',
            CSV,
        ),
        Hostile(
            "mlflow-csv-million-cells",
            "POST",
            MLFLOW,
            400,
            "values for 4 columns",
            lambda: header + b",".join([b"1"] * 1_000_000) + b"\n",
            CSV,
        ),
        Hostile("mlflow-csv-too-many-rows", "POST", MLFLOW, 413, "at most 10000", header + b"1,2,3,4\n" * 20_000, CSV),
        Hostile("mlflow-csv-10MB", "POST", MLFLOW, 413, "at most", lambda: header + b"1,2,3,4\n" * (10 * MB // 8), CSV),
        Hostile(
            "mlflow-csv-latin1",
            "POST",
            MLFLOW,
            415,
            "UTF-8",
            header + b"1,2,3,4\n",
            {"content-type": "text/csv; charset=latin-1"},
        ),
        Hostile(
            "mlflow-csv-unknown-parameter",
            "POST",
            MLFLOW,
            415,
            "unknown Content-Type parameter",
            header + b"1,2,3,4\n",
            {"content-type": "text/csv; header=present"},
        ),
        Hostile("mlflow-json-no-field", "POST", MLFLOW, 400, "exactly one of", b"{}", JSON),
        Hostile(
            "mlflow-json-two-fields",
            "POST",
            MLFLOW,
            400,
            "exactly one of",
            _json({"instances": [IRIS_ROW], "inputs": [IRIS_ROW]}),
            JSON,
        ),
        Hostile(
            "mlflow-split-ragged",
            "POST",
            MLFLOW,
            400,
            "row 0 has 2 values",
            _json({"dataframe_split": {"columns": IRIS, "data": [[1, 2]]}}),
            JSON,
        ),
        Hostile("mlflow-parquet-empty", "POST", MLFLOW, 400, "not a Parquet file", b"", PARQUET, finding=8),
        Hostile(
            "mlflow-parquet-garbage", "POST", MLFLOW, 400, "not a Parquet file", b"PAR1garbagePAR1", PARQUET, finding=8
        ),
        Hostile(
            "mlflow-parquet-nested",
            "POST",
            MLFLOW,
            400,
            "expected a number",
            _parquet(_iris_columns([1.0, 2.0])),
            PARQUET,
            finding=8,
        ),
        Hostile(
            "mlflow-parquet-strings", "POST", MLFLOW, 400, "expected a number", _parquet(_iris_columns("x")), PARQUET
        ),
        Hostile("mlflow-parquet-boolean", "POST", MLFLOW, 400, "boolean", _parquet(_iris_columns(True)), PARQUET),
        Hostile(
            "mlflow-parquet-nan",
            "POST",
            MLFLOW,
            400,
            "NaN and Infinity",
            _parquet(_iris_columns(float("nan"))),
            PARQUET,
        ),
        Hostile(
            "mlflow-parquet-huge-finite",
            "POST",
            MLFLOW,
            400,
            "too large",
            _parquet(_iris_columns(HUGE)),
            PARQUET,
            finding=1,
        ),
        Hostile(
            "mlflow-parquet-unknown-columns", "POST", MLFLOW, 400, "unknown feature", _parquet({"a": [1.0]}), PARQUET
        ),
        Hostile(
            "mlflow-parquet-no-rows", "POST", MLFLOW, 400, "no rows", _parquet({name: [] for name in IRIS}), PARQUET
        ),
        Hostile("mlflow-yaml", "POST", MLFLOW, 415, "not accepted", b"a: 1", {"content-type": "application/yaml"}),
        Hostile("mlflow-csv-to-native", "POST", NATIVE, 415, "not accepted", header + b"1,2,3,4\n", CSV),
    ]


def _regressor_cases() -> list[Hostile]:
    """Finite inputs that make the linear regressor's output overflow to infinity."""
    row = [HUGE] * 10
    return [
        Hostile(
            "regressor-overflow-native",
            "POST",
            "/v1/models/diabetes/predict",
            422,
            "not a finite number",
            _json({"features": row}),
            JSON,
            finding=2,
        ),
        Hostile(
            "regressor-overflow-kserve",
            "POST",
            "/v1/models/diabetes:predict",
            422,
            "not a finite number",
            _json({"instances": [row]}),
            JSON,
            finding=2,
        ),
        Hostile(
            "regressor-overflow-oip",
            "POST",
            "/v2/models/diabetes/infer",
            422,
            "not a finite number",
            _json({"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP64", "data": row}]}),
            finding=2,
        ),
    ]


def _method_cases() -> list[Hostile]:
    wrong = [
        ("GET", NATIVE, "POST", None),
        ("PUT", "/v1/models/iris/versions/latest/predict", "POST", None),
        ("DELETE", "/predict", "POST", None),
        ("GET", "/predict/batch", "POST", None),
        ("GET", "/v1/predict", "POST", None),
        ("GET", OIP, "POST", None),
        ("PUT", "/v2/models/iris/versions/latest/infer", "POST", None),
        ("PUT", KSERVE, "POST", 4),
        ("DELETE", KSERVE, "POST", 4),
        ("GET", MLFLOW, "POST", None),
        ("POST", "/ping", "GET", None),
        ("POST", "/health/live", "GET", None),
        ("POST", "/v1/models", "GET", None),
        ("DELETE", "/v1/models/iris", "GET", None),
        ("POST", "/metrics", "GET", None),
        ("POST", "/v2/health/ready", "GET", None),
    ]
    return [
        Hostile(f"method-{method}-{path}", method, path, 405, "method not allowed", allow=allow, finding=finding)
        for method, path, allow, finding in wrong
    ]


def _unknown_cases() -> list[Hostile]:
    one = _json({"features": IRIS_ROW})
    oip = _oip(IRIS_ROW)
    unknown_model = "no model named 'nope'"
    return [
        Hostile("unknown-model-native", "POST", "/v1/models/nope/predict", 404, unknown_model, one, JSON),
        Hostile(
            "unknown-version-native",
            "POST",
            "/v1/models/iris/versions/7/predict",
            404,
            "no version or alias '7'",
            one,
            JSON,
        ),
        Hostile(
            "unknown-alias-native",
            "POST",
            "/v1/models/flowers/versions/staging/predict",
            404,
            "no version or alias 'staging'",
            one,
            JSON,
        ),
        Hostile(
            "unpushed-version-native",
            "POST",
            "/v1/models/flowers/versions/2/predict",
            404,
            "no version or alias '2'",
            one,
            JSON,
        ),
        Hostile("dot-dot-model-native", "POST", "/v1/models/%2e%2e/predict", 404, "no model named '..'", one, JSON),
        Hostile("unknown-model-detail", "GET", "/v1/models/nope", 404, unknown_model),
        Hostile("unknown-model-drift", "GET", "/v1/models/nope/drift", 404, unknown_model),
        Hostile(
            "unknown-model-kserve",
            "POST",
            "/v1/models/nope:predict",
            404,
            unknown_model,
            _json({"instances": [IRIS_ROW]}),
            JSON,
        ),
        Hostile("unknown-model-oip", "POST", "/v2/models/nope/infer", 404, unknown_model, oip),
        Hostile(
            "unknown-version-oip", "POST", "/v2/models/flowers/versions/3/infer", 404, "no version or alias '3'", oip
        ),
        Hostile("unknown-model-oip-metadata", "GET", "/v2/models/nope", 404, unknown_model),
        Hostile("unknown-model-oip-ready", "GET", "/v2/models/nope/ready", 404, unknown_model),
        Hostile("unknown-version-oip-ready", "GET", "/v2/models/iris/versions/9/ready", 404, "no version or alias '9'"),
        Hostile("unknown-route", "POST", "/v1/models/iris/versions/latest/predict/extra", 404, "no route", one, JSON),
    ]


CASES: list[Hostile] = [
    *_per_json_route(),
    *_oip_cases(),
    *_mlflow_cases(),
    *_regressor_cases(),
    *_method_cases(),
    *_unknown_cases(),
]
"""Every hostile request, by protocol."""
