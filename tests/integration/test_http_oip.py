"""Open Inference Protocol v2: the real `tritonclient.http` against a real server process, and raw
requests in-process for datatypes and malformed bodies."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from servekit import __version__
from servekit.settings import Settings
from tests.support import IRIS_FEATURES, ServerProcess, diabetes_model, iris_bundle, iris_model, running_app

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Any:
    _, model = iris_model(tmp_path_factory.mktemp("iris-model"))
    return model


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    bundle = iris_bundle(tmp_path_factory.mktemp("oip-server"))
    with ServerProcess(["serve", str(bundle), "--trust"]) as process:
        yield process.wait_ready()


@pytest.fixture
def client(server: ServerProcess):
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield client
    client.close()


def _input(name: str, array: np.ndarray, datatype: str, *, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


# -- tritonclient against the real server -----------------------------------------------------
def test_server_and_model_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert not client.is_model_ready("nope")
    assert client.get_server_metadata() == {
        "name": "servekit",
        "version": __version__,
        "extensions": ["binary_tensor_data"],
    }
    metadata = client.get_model_metadata("iris")
    assert metadata["name"] == "iris"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert metadata["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
    ]


def test_binary_inputs_and_outputs_match_the_model(client: triton.InferenceServerClient, iris: Any) -> None:
    rows = ROWS.astype(np.float32)
    result = client.infer("iris", [_input("input", rows, "FP32")], request_id="req-7")
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_name"] == "iris"
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    assert result.as_numpy("label").tolist() == [label.encode() for label in iris.predict(rows)]
    np.testing.assert_allclose(result.as_numpy("probabilities"), iris.predict_proba(rows))


def test_json_inputs_and_json_outputs(client: triton.InferenceServerClient, iris: Any) -> None:
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("label", "probabilities")]
    result = client.infer("iris", [_input("input", ROWS, "FP64", binary=False)], outputs=outputs)
    response = result.get_response()
    assert response["outputs"][0]["data"] == iris.predict(ROWS).tolist()
    assert response["outputs"][1]["shape"] == [3, 3]
    np.testing.assert_allclose(result.as_numpy("probabilities"), iris.predict_proba(ROWS))


def test_requested_outputs_are_honoured(client: triton.InferenceServerClient, iris: Any) -> None:
    outputs = [triton.InferRequestedOutput("probabilities")]
    result = client.infer("iris", [_input("input", ROWS, "FP64")], outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    assert result.as_numpy("label") is None
    np.testing.assert_allclose(result.as_numpy("probabilities"), iris.predict_proba(ROWS))


def test_one_input_per_feature(client: triton.InferenceServerClient, iris: Any) -> None:
    inputs = [_input(name, ROWS[:, i].copy(), "FP64") for i, name in enumerate(IRIS_FEATURES)]
    inputs[1] = _input(IRIS_FEATURES[1], ROWS[:, 1:2].astype(np.float32), "FP32", binary=False)  # [n, 1], JSON
    result = client.infer("iris", inputs)
    assert result.as_numpy("label").tolist() == [label.encode() for label in iris.predict(ROWS)]


def test_versions_and_compressed_requests(client: triton.InferenceServerClient, iris: Any) -> None:
    result = client.infer(
        "iris", [_input("input", ROWS, "FP64")], model_version="latest", request_compression_algorithm="gzip"
    )
    assert result.as_numpy("label").tolist() == [label.encode() for label in iris.predict(ROWS)]
    with pytest.raises(InferenceServerException) as error:
        client.infer("iris", [_input("input", ROWS, "FP64")], model_version="7")
    assert error.value.status() == "404"
    assert "no version or alias '7'" in error.value.message()


def test_client_sees_errors_with_status_and_message(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", [_input("input", ROWS, "FP64")])
    assert unknown.value.status() == "404"
    assert "no model named 'nope'" in unknown.value.message()
    with pytest.raises(InferenceServerException) as shape:
        client.infer("iris", [_input("input", ROWS[:, :3].copy(), "FP64")])
    assert shape.value.status() == "422"
    assert "each row must have 4 values" in shape.value.message()


def test_raw_errors_are_error_objects(server: ServerProcess) -> None:
    with server.client() as http:
        unknown = http.get("/v2/models/nope")
        assert unknown.status_code == 404
        assert unknown.json() == {"error": "no model named 'nope' is served here. Served models: iris"}
        header = orjson.dumps({"inputs": [_binary_input("input", [1, 4], "FP64", 32)]})
        lying = http.post(
            "/v2/models/iris/infer",
            content=header + np.ones(4).tobytes(),
            headers={HEADER: str(len(header) + 100)},
        )
        assert lying.status_code == 400
        assert lying.json() == {
            "error": f"Inference-Header-Content-Length is {len(header) + 100} but the body has only "
            f"{len(header) + 32} bytes"
        }


# -- raw requests, in-process -----------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("oip-app")
    regressor, _ = diabetes_model(tmp)
    settings = Settings(models=[str(iris_bundle(tmp)), str(regressor)], trust=True, max_body_bytes=64 * 1024)
    with running_app(settings) as client:
        yield client


def _binary_input(name: str, shape: list[int], datatype: str, size: int) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}


def _json_input(data: Any, datatype: str = "FP64", shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": "input", "shape": shape or list(np.shape(data)), "datatype": datatype, "data": data}


def _infer(app: Any, request: dict[str, Any], raw: bytes = b"") -> Any:
    return _infer_model(app, "iris", request, raw)


def _infer_model(app: Any, model: str, request: dict[str, Any], raw: bytes = b"") -> Any:
    header = orjson.dumps(request)
    headers = {HEADER: str(len(header))} if raw else {}
    return app.post(f"/v2/models/{model}/infer", content=header + raw, headers=headers)


@pytest.mark.parametrize(
    ("datatype", "encode"),
    [
        ("INT64", lambda rows: rows.round().astype("<i8")),
        ("UINT8", lambda rows: rows.round().astype(np.uint8)),
        ("INT16", lambda rows: rows.round().astype("<i2")),
        ("FP16", lambda rows: rows.astype("<f2")),
    ],
)
def test_numeric_datatypes_are_accepted(app: Any, iris: Any, datatype: str, encode: Any) -> None:
    values = encode(ROWS)
    binary = _infer(app, {"inputs": [_binary_input("input", [3, 4], datatype, values.nbytes)]}, values.tobytes())
    as_json = _infer(app, {"inputs": [_json_input(values.tolist(), datatype)]})
    expected = iris.predict(values.astype(np.float64)).tolist()
    for response in (binary, as_json):
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == expected


@pytest.mark.parametrize(
    ("request_input", "raw", "message"),
    [
        (_json_input([[True, False, True, True]], "BOOL"), b"", "input 'input' is BOOL; this model takes numbers"),
        (_json_input([["a", "b", "c", "d"]], "BYTES"), b"", "input 'input' is BYTES; this model takes numbers"),
        (_binary_input("input", [1, 4], "BOOL", 4), b"\x01\x00\x01\x01", "is BOOL; this model takes numbers"),
    ],
)
def test_bool_and_bytes_are_refused_by_a_numeric_model(app: Any, request_input: Any, raw: bytes, message: str) -> None:
    response = _infer(app, {"inputs": [request_input]}, raw)
    assert response.status_code == 422
    assert message in response.json()["error"]


def _bytes_elements(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


FOUR = [5.1, 3.5, 1.4, 0.2]
ONE = _json_input(FOUR)


def _req(*inputs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"inputs": list(inputs), **fields}


def _column(name: str, data: list[Any]) -> dict[str, Any]:
    return _json_input(data) | {"name": name}


DEEP = b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP64", "data": ' + b"[" * 900 + b"]" * 900 + b"}]}"
MALFORMED = [
    # (body: bytes or a request to send as JSON, status, message)
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b"[1, 2]", 400, "JSON object with 'inputs'"),
    (_req(), 400, "non-empty list"),
    (_req(7), 400, "inputs[0] must be an object"),
    (_req({"shape": [1, 4], "datatype": "FP64", "data": FOUR}), 400, "needs a 'name'"),
    (_req(_json_input(FOUR, "FP99")), 400, "unknown datatype 'FP99'"),
    (_req(_json_input(FOUR, shape=[-1, 4])), 400, "non-negative integers"),
    (_req(_json_input(FOUR, shape=[2, 4])), 400, "holds 8 values but 'data' has 4"),
    (_req({"name": "input", "shape": [4], "datatype": "FP64"}), 400, "has no 'data'"),
    (DEEP, 400, "holds 1 values but 'data' has 0"),
    (_req(_json_input([1, 2, "x", 4])), 422, "cannot hold the string 'x'"),
    (_req(_json_input([1, 2, True, 4])), 422, "cannot hold the boolean true"),
    (_req(_json_input([1, 2, None, 4])), 422, "cannot hold null"),
    (_req(_json_input([1, 2, 3.5, 4], "INT64")), 422, "the non-integer 3.5"),
    (_req(_json_input([1, 2, 300, 4], "INT8")), 422, "out of range for INT8"),
    (_req(_json_input([1, 2, 3])), 422, "each row must have 4 values"),
    (_req(_json_input(FOUR, shape=[1, 2, 2])), 422, "each row must have shape [4], got [2, 2]"),
    (_req(ONE, id=5), 400, "'id' must be a string"),
    (_req(ONE, parameters=[]), 400, "'parameters' must be an object"),
    (_req(ONE, parameters={"binary_data_output": "yes"}), 400, "'binary_data_output' must be true or false"),
    (_req(ONE, outputs=[{"name": "score"}]), 400, "unknown output 'score'; this model gives label, probabilities"),
    (_req(ONE, outputs={"name": "label"}), 400, "'outputs' must be a list"),
    (
        _req(ONE, outputs=[{"name": "label", "parameters": {"classification": 2}}]),
        400,
        "classification extension is not supported",
    ),
    (_req(ONE, ONE), 400, "input 'input' is given twice"),
    (_req(*(_column(n, [1.0, 2.0][: 1 + (n != "petal_width")]) for n in IRIS_FEATURES)), 422, "different lengths"),
    (_req(_column("sepal_length", [[1.0, 2.0]]), _column("x", [1.0])), 422, "an input per feature must have shape"),
    (_req(*(_column(n, [1.0]) for n in ["sepal_length", "x", "y"])), 422, "unknown feature(s) x, y"),
    (_req(_binary_input("input", [1, 4], "FP64", 32)), 400, "goes past the end"),
    (_req(_binary_input("input", [1, 4], "FP64", 32) | {"data": FOUR}), 400, "both 'data' and binary_data_size"),
    (_req(_binary_input("input", [1, 4], "FP64", -8)), 400, "binary_data_size must be a non-negative integer"),
]
LYING_HEADER = [
    ("-2", "must be a whole number of bytes, got '-2'"),
    ("abc", "must be a whole number of bytes, got 'abc'"),
    ("0", "Inference-Header-Content-Length is 0"),
    ("999", "is 999 but the body has only 10 bytes"),
    ("5", "not valid JSON"),
]
MALFORMED_BINARY = [
    # (inputs, raw tensor bytes, status, message)
    ([_binary_input("input", [1, 4], "FP64", 24)], bytes(24), 400, "binary_data_size is 24 bytes but shape [1, 4]"),
    ([_binary_input("input", [1, 4], "FP32", 16)], bytes(20), 400, "4 bytes after the JSON header are not claimed"),
    ([_binary_input("input", [1, 4], "BOOL", 4)], b"\x01\x02\x00\x00", 400, "BOOL elements must be the bytes 0 or 1"),
    ([_binary_input("input", [2], "BYTES", 6)], b"\x05\x00\x00\x00ab", 400, "goes past the end of its data"),
    ([_binary_input("input", [2], "BYTES", 6)], b"\x01\x00\x00\x00ab", 400, "ends inside an element's 4-byte length"),
    ([_binary_input("input", [3], "BYTES", 12)], _bytes_elements(b"ab", b"cd"), 400, "holds 3 values but the binary"),
    ([_binary_input("input", [1], "BYTES", 6)], _bytes_elements(b"\xff\xfe"), 422, "is not UTF-8 text"),
    ([_binary_input("input", [1, 4], "FP64", 32)], np.array([1, 2, np.nan, 4]).tobytes(), 422, "NaN and Infinity"),
]


@pytest.mark.parametrize(("body", "status", "message"), MALFORMED)
def test_malformed_bodies_get_an_error_object(app: Any, body: Any, status: int, message: str) -> None:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = app.post("/v2/models/iris/infer", content=content)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


@pytest.mark.parametrize(("length", "message"), LYING_HEADER)
def test_lying_header_length_is_400(app: Any, length: str, message: str) -> None:
    response = app.post("/v2/models/iris/infer", content=b"{}" + bytes(8), headers={HEADER: length})
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


@pytest.mark.parametrize(("inputs", "raw", "status", "message"), MALFORMED_BINARY)
def test_malformed_binary_data_gets_an_error_object(
    app: Any, inputs: list, raw: bytes, status: int, message: str
) -> None:
    response = _infer(app, {"inputs": inputs}, raw)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


def test_content_encodings(app: Any) -> None:
    body = orjson.dumps({"inputs": [_json_input(FOUR)]})
    assert app.post("/v2/models/iris/infer", content=gzip.compress(body), headers={"content-encoding": "gzip"}).json()[
        "outputs"
    ][0]["data"] == ["setosa"]
    garbage = app.post("/v2/models/iris/infer", content=b"not gzip", headers={"content-encoding": "gzip"})
    assert garbage.status_code == 400 and garbage.json() == {"error": "the body is not valid gzip data"}
    brotli = app.post("/v2/models/iris/infer", content=body, headers={"content-encoding": "br"})
    assert brotli.status_code == 415 and "'br' is not supported" in brotli.json()["error"]
    bomb = app.post(
        "/v2/models/iris/infer", content=gzip.compress(bytes(1 << 20)), headers={"content-encoding": "gzip"}
    )
    assert bomb.status_code == 413 and "decompressed body is over 65536 bytes" in bomb.json()["error"]


def test_binary_response_layout(app: Any, iris: Any) -> None:
    request = {"id": "r1", "inputs": [_json_input(ROWS.tolist())], "parameters": {"binary_data_output": True}}
    response = _infer(app, request)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers[HEADER])
    header, raw = orjson.loads(response.content[:length]), response.content[length:]
    assert header["id"] == "r1"
    label, probabilities = header["outputs"]
    labels = _bytes_elements(*(v.encode() for v in iris.predict(ROWS)))  # 4-byte little-endian length + UTF-8
    assert label == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [3],
        "parameters": {"binary_data_size": len(labels)},
    }
    size = len(labels)
    assert raw[:size] == labels
    np.testing.assert_allclose(np.frombuffer(raw[size:], "<f8").reshape(3, 3), iris.predict_proba(ROWS))
    assert len(raw) == size + probabilities["parameters"]["binary_data_size"] == size + 72


def test_output_flag_overrides_the_request_default(app: Any) -> None:
    request = {
        "inputs": [_json_input(FOUR)],
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "label", "parameters": {"binary_data": False}}, {"name": "probabilities"}],
    }
    response = _infer(app, request)
    header = orjson.loads(response.content[: int(response.headers[HEADER])])
    assert header["outputs"][0]["data"] == ["setosa"]
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 24}


def test_id_defaults_to_the_request_id_and_json_is_the_default(app: Any) -> None:
    response = app.post("/v2/models/iris/infer", content=orjson.dumps({"inputs": [_json_input(FOUR)]}))
    assert response.headers["content-type"] == "application/json"
    assert HEADER not in response.headers
    body = response.json()
    assert body["id"] == response.headers["x-request-id"]
    assert "model_version" not in body  # a bare bundle has no version: the spec says leave it out


def test_regressor_outputs(app: Any, tmp_path: Path) -> None:
    _, model = diabetes_model(tmp_path)
    rows = np.full((2, 10), 0.01)
    response = app.post("/v2/models/diabetes/infer", content=orjson.dumps({"inputs": [_json_input(rows.tolist())]}))
    (output,) = response.json()["outputs"]
    assert output["name"] == "predictions" and output["datatype"] == "FP64" and output["shape"] == [2]
    np.testing.assert_allclose(output["data"], model.predict(rows))
    assert app.get("/v2/models/diabetes").json()["outputs"] == [
        {"name": "predictions", "datatype": "FP64", "shape": [-1]}
    ]
    label = app.post(
        "/v2/models/diabetes/infer",
        content=orjson.dumps({"inputs": [_json_input(rows.tolist())], "outputs": [{"name": "label"}]}),
    )
    assert label.status_code == 400 and label.json() == {
        "error": "unknown output 'label'; this model gives predictions"
    }


def test_unknown_routes_and_methods_answer_error_objects(app: Any) -> None:
    missing = app.get("/v2/nowhere")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    wrong_method = app.get("/v2/models/iris/infer")
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"error"}


def test_not_ready_is_a_non_200_status(tmp_path: Path) -> None:
    path, _ = iris_model(tmp_path)
    from fastapi.testclient import TestClient

    from servekit.server import create_app

    with TestClient(create_app(Settings(models=[str(path)]))) as client:  # untrusted pickle: never ready
        assert client.get("/v2/health/live").json() == {"live": True}
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        assert client.get("/v2/models/iris/ready").status_code == 503
        infer = client.post("/v2/models/iris/infer", content=orjson.dumps({"inputs": [_json_input(FOUR)]}))
        assert infer.status_code == 503
        error = infer.json()["error"]
        assert error.startswith("model 'iris' "), error  # still loading, or failed to load
        assert "trust" not in error and "joblib" not in error  # the reason stays in the log and metadata


def test_text_features_take_bytes_tensors(tmp_path: Path) -> None:
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    data = load_iris(as_frame=True).frame.drop(columns="target")
    data.columns = IRIS_FEATURES
    data["size"] = np.where(data["petal_length"] > 3, "big", "small")
    encode = ColumnTransformer([("size", OneHotEncoder(), ["size"])], remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression(max_iter=500)).fit(data, load_iris().target)
    joblib.dump(model, tmp_path / "sized.joblib")
    rows = data.iloc[[0, 70, 140]]
    with running_app(Settings(models=[str(tmp_path / "sized.joblib")], trust=True)) as client:
        inputs = client.get("/v2/models/sized").json()["inputs"]
        assert inputs[-1] == {"name": "size", "datatype": "BYTES", "shape": [-1]}
        assert [i["name"] for i in inputs] == [*IRIS_FEATURES, "size"]
        sizes = _bytes_elements(*(s.encode() for s in rows["size"]))
        request = {
            "inputs": [_column(n, rows[n].tolist()) for n in IRIS_FEATURES]
            + [_binary_input("size", [3], "BYTES", len(sizes))]
        }
        response = _infer_model(client, "sized", request, sizes)
        assert response.status_code == 200, response.text
        label = response.json()["outputs"][0]
        assert label["datatype"] == "INT64"  # integer classes
        assert label["data"] == model.predict(pd.DataFrame(rows)).tolist()
        numbers = _req(*(_column(n, rows[n].tolist()) for n in IRIS_FEATURES), _column("size", [1.0, 2.0, 3.0]))
        refused = _infer_model(client, "sized", numbers)
        assert refused.status_code == 422 and "feature 'size': expected a string" in refused.json()["error"]
