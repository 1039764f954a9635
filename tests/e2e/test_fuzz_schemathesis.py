"""Schemathesis against a real `servekit serve`, from the server's own `/openapi.json`.

Every documented operation is fuzzed with schema-valid data (schema examples, then generated
data) and, where it takes a body, schema-invalid data; every answer goes through all of
Schemathesis' response checks (no 5xx, documented status codes, content types, headers and
response schemas, negative data rejected, positive data accepted). Path parameters mix the
served models, versions and aliases with generated strings, so predictions run for real.

Generation is derandomized and bounded (`EXAMPLES` per operation and mode) so that CI runs are
repeatable and quick. Schemathesis' lazy pytest loader (`schemathesis.pytest.from_fixture`) fails
under pytest 9 (`Function` has no `_nodeid`), so each operation is a plain parametrized test
driving `operation.as_strategy(...)` with Hypothesis.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode
from schemathesis.generation.meta import TestPhase

from tests.hostile_corpus import IRIS_ROW, serve_corpus_models
from tests.support import ServerProcess

EXAMPLES = 60
"""Generated requests per operation and generation mode."""
NAMES = ("iris", "diabetes", "flowers")
VERSIONS = ("latest", "1", "production")
PREDICTION_STATUSES = ["2xx", "400", "404", "422"]
"""What a schema-valid prediction request may get: the documents cannot state each model's
signature (feature count, names, types) nor cross-field rules such as a tensor's shape matching its
data, so a schema-valid body may still not fit the model (422, or 400 where the protocol says so,
e.g. MLflow); unknown model names are 404."""

OPERATIONS: dict[str, int | None] = {
    "GET /health/live": None,
    "GET /health/ready": None,
    "GET /health": None,
    "GET /metrics": None,
    "GET /v1/models": None,
    "GET /v1/models/{name}": None,
    "GET /v1/models/{name}/drift": None,
    "POST /v1/models/{name}/predict": None,
    "POST /v1/models/{name}/versions/{version}/predict": None,
    "POST /v1/models/{name}:predict": None,
    "POST /predict": None,
    "POST /v1/predict": None,
    "POST /predict/batch": None,
    "GET /model/info": None,
    "POST /invocations": None,
    "GET /ping": 5,
    "GET /version": 5,
    "GET /v2": None,
    "GET /v2/health/live": None,
    "GET /v2/health/ready": None,
    "GET /v2/models/{model}": None,
    "GET /v2/models/{model}/versions/{version}": None,
    "GET /v2/models/{model}/ready": None,
    "GET /v2/models/{model}/versions/{version}/ready": None,
    "POST /v2/models/{model}/infer": None,
    "POST /v2/models/{model}/versions/{version}/infer": None,
}
"""Every operation the server documents, with the fuzzing finding it once showed (docs/security.md)."""
PREDICTIONS = {label for label in OPERATIONS if label.startswith("POST")}
"""The prediction operations."""
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
OIP_INPUT = {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}
VALID: dict[str, list[tuple[dict[str, str], Any, str]]] = {
    "POST /v1/models/{name}/predict": [
        ({"name": "iris"}, {"features": dict(zip(IRIS, IRIS_ROW, strict=True))}, "application/json"),
        ({"name": "diabetes"}, {"instances": [[0.0] * 10, [0.01] * 10]}, "application/json"),
    ],
    "POST /v1/models/{name}/versions/{version}/predict": [
        ({"name": "flowers", "version": "production"}, {"instances": [IRIS_ROW, IRIS_ROW]}, "application/json"),
    ],
    "POST /v1/models/{name}:predict": [({"name": "diabetes"}, {"instances": [[0.0] * 10]}, "application/json")],
    "POST /predict": [({}, {"features": IRIS_ROW}, "application/json")],
    "POST /v1/predict": [({}, {"features": IRIS_ROW}, "application/json")],
    "POST /predict/batch": [({}, [{"features": IRIS_ROW}, {"features": IRIS_ROW}], "application/json")],
    "POST /invocations": [
        ({}, {"dataframe_split": {"columns": IRIS, "data": [IRIS_ROW]}}, "application/json"),
        ({}, ",".join(IRIS) + "\n" + ",".join(map(str, IRIS_ROW)) + "\n", "text/csv"),
    ],
    "POST /v2/models/{model}/infer": [({"model": "iris"}, {"inputs": [OIP_INPUT]}, "application/json")],
    "POST /v2/models/{model}/versions/{version}/infer": [
        (
            {"model": "flowers", "version": "1"},
            {"id": "a", "inputs": [OIP_INPUT], "outputs": [{"name": "label"}]},
            "application/json",
        )
    ],
}
"""Requests each prediction operation must answer 200, through the same checks: the success
path of every protocol, whatever the generated data reaches."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serve_corpus_models(tmp_path_factory.mktemp("fuzz")) as process:
        yield process.wait_ready()


@pytest.fixture(scope="module")
def api_schema(server: ServerProcess) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "checks": {"enabled": True},
            "operations": [
                {
                    "include-name": sorted(PREDICTIONS),
                    "checks": {"positive_data_acceptance": {"expected-statuses": PREDICTION_STATUSES}},
                }
            ],
        }
    )
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_every_documented_operation_is_fuzzed(api_schema: Any) -> None:
    documented = {result.ok().label for result in api_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


def test_every_post_operation_documents_its_body(api_schema: Any) -> None:
    """Routes that read their body themselves declare it (`openapi_extra`), so it is fuzzed."""
    assert set(VALID) == PREDICTIONS
    for label in PREDICTIONS:
        operation = api_schema.find_operation_by_label(label)
        assert [body.media_type for body in operation.body], label


def _param(label: str) -> Any:
    return pytest.param(label, id=label)


@pytest.mark.parametrize("label", [_param(label) for label in OPERATIONS])
def test_operation_conforms_to_its_documentation(api_schema: Any, session: requests.Session, label: str) -> None:
    operation = api_schema.find_operation_by_label(label)
    statuses: collections.Counter[int] = collections.Counter()
    for path_parameters, body, media_type in VALID.get(label, []):
        case = operation.Case(path_parameters=path_parameters, body=body, media_type=media_type)
        response = case.call_and_validate(session=session, timeout=30)
        assert response.status_code == 200, response.text
    runs = [(GenerationMode.POSITIVE, TestPhase.EXAMPLES), (GenerationMode.POSITIVE, TestPhase.FUZZING)]
    if len(operation.body):  # a path parameter is any string: only bodies can be schema-invalid
        runs.append((GenerationMode.NEGATIVE, TestPhase.FUZZING))
    for mode, phase in runs:

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=_cases(operation, mode, phase))
        def check(case: Any) -> None:
            response = case.call_and_validate(session=session, timeout=30)
            statuses[response.status_code] += 1

        check()
    varied = len(operation.body) or len(operation.path_parameters)  # else every request is the same one
    assert sum(statuses.values()) >= (EXAMPLES if varied else 1), f"too few requests for {label}: {dict(statuses)}"


def _cases(operation: Any, mode: GenerationMode, phase: TestPhase) -> Any:
    """Cases with path parameters drawn from the served models and versions, or generated."""
    names = [p.name for p in operation.path_parameters]
    generated = operation.as_strategy(mode, phase=phase)
    if not names:
        return generated
    served = {"name": NAMES, "model": NAMES, "version": VERSIONS}
    combos = {tuple((n, v) for n, v in zip(names, values, strict=True)) for values in _product(names, served)}
    fixed = [operation.as_strategy(mode, phase=phase, path_parameters=dict(c)) for c in sorted(combos)]
    return st.one_of(*fixed, generated)


def _product(names: list[str], served: dict[str, tuple[str, ...]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [()]
    for name in names:
        rows = [(*row, value) for row in rows for value in served[name]]
    return rows


# -- the documented bodies against the server's own structural rules ---------------------------------
ROW = IRIS_ROW
SCHEMA_GAPS = [
    ("POST /v1/models/{name}/predict", {}, "neither features nor instances"),
    ("POST /v1/models/{name}/predict", {"features": ROW, "instances": [ROW]}, "both features and instances"),
    ("POST /v1/models/{name}/predict", {"features": None}, "features null"),
    ("POST /v1/models/{name}/predict", {"instances": []}, "no instances"),
    ("POST /v1/models/{name}/versions/{version}/predict", {"instances": None}, "instances null"),
    ("POST /predict", {"features": []}, "empty row"),
    ("POST /predict/batch", [], "empty batch"),
    ("POST /v1/models/{name}:predict", {}, "neither instances nor inputs"),
    ("POST /v1/models/{name}:predict", {"instances": [ROW], "inputs": [ROW]}, "both instances and inputs"),
    ("POST /v1/models/{name}:predict", {"instances": []}, "no instances"),
    ("POST /v2/models/{model}/infer", {"inputs": []}, "no inputs"),
    ("POST /v2/models/{model}/infer", {"inputs": [{**OIP_INPUT, "datatype": "FP65"}]}, "unknown datatype"),
    ("POST /v2/models/{model}/infer", {"inputs": [{**OIP_INPUT, "name": ""}]}, "empty input name"),
    ("POST /v2/models/{model}/infer", {"inputs": [{**OIP_INPUT, "shape": [-1, 4]}]}, "negative shape"),
    ("POST /invocations", {}, "no input field"),
    ("POST /invocations", {"instances": [ROW], "inputs": [ROW]}, "two input fields"),
]
"""Bodies the server rejects before looking at the model, by rules a JSON schema can state."""


def _concrete(label: str) -> str:
    path = label.split(" ", 1)[1]
    return path.replace("{name}", "iris").replace("{model}", "iris").replace("{version}", "latest")


@pytest.mark.parametrize(("label", "body", "gap"), SCHEMA_GAPS, ids=[f"{lb} {gap}" for lb, _, gap in SCHEMA_GAPS])
def test_documented_body_schema_rejects_what_the_server_rejects(
    server: ServerProcess, api_schema: Any, label: str, body: Any, gap: str
) -> None:
    answer = httpx.post(f"{server.url}{_concrete(label)}", json=body, timeout=10)
    assert answer.status_code in (400, 422), answer.text  # the server refuses it...
    document = api_schema.raw_schema
    method, path = label.lower().split(" ", 1)
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    assert not validator.is_valid(body), f"the documented schema accepts a body the server refuses ({gap})"
