"""Open Inference Protocol v2 tensors on the wire: datatypes, JSON data and binary tensor data.

The request is the OIP `$inference_request` JSON object. With the binary tensor data extension
(Triton's `binary_tensor_data`) the header `Inference-Header-Content-Length: N` says the first N
bytes of the body are that JSON; the rest are the inputs' raw bytes, concatenated in input order,
each sized by the input's `parameters.binary_data_size`. Raw data is little-endian, row-major,
unpadded; BOOL is one byte (0 or 1); a BYTES element is a 4-byte little-endian length and then
its bytes. Responses use the same layout for outputs asked for with `binary_data: true`.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from typing import Any, NamedTuple

import numpy as np
import orjson

from servekit.errors import InvalidInput, MalformedRequest, PayloadTooLarge, UnsupportedMediaType
from servekit.server.bodies import parse_json

__all__ = [
    "BYTES",
    "DATATYPES",
    "NUMBER_TYPES",
    "InferenceRequest",
    "OutputTensor",
    "RequestedOutput",
    "Tensor",
    "decompress",
    "encode_response",
    "output_tensor",
    "parse_request",
    "split_body",
]

NUMPY_TYPES: dict[str, str] = {
    "BOOL": "|b1",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
BYTES = "BYTES"
DATATYPES = (*NUMPY_TYPES, BYTES)
NUMBER_TYPES = frozenset(t for t in NUMPY_TYPES if t != "BOOL")
_JSON_TYPES: dict[str, frozenset[type]] = {"BOOL": frozenset({bool}), BYTES: frozenset({str})}
_JSON_NUMBER = frozenset({int, float})
_JSON_INTEGER = frozenset({int})
_LENGTH = struct.Struct("<I")
_WHOLE_NUMBER = re.compile(r"^[0-9]+$")
_ITEMSIZES = {datatype: np.dtype(numpy_type).itemsize for datatype, numpy_type in NUMPY_TYPES.items()}
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Tensor(NamedTuple):
    """One decoded input: `data` has the declared shape; BYTES elements are `str`."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


class RequestedOutput(NamedTuple):
    name: str
    binary: bool | None
    """`parameters.binary_data` of the output, `None` when not given."""


class InferenceRequest(NamedTuple):
    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None
    binary_output: bool
    """The request's `parameters.binary_data_output`."""


class OutputTensor(NamedTuple):
    name: str
    datatype: str
    data: np.ndarray


# -- request ----------------------------------------------------------------------------------
def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo a gzip/deflate `Content-Encoding` (tritonclient can compress), at most `limit` bytes."""
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in _ENCODINGS:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(_ENCODINGS[encoding])
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise MalformedRequest(f"the body is not valid {encoding} data") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the decompressed body is over {limit} bytes, the most this server accepts")
    if not inflater.eof:
        raise MalformedRequest(f"the {encoding} body is truncated")
    return out


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensor data that follows it."""
    if header_length is None:
        return body, b""
    text = header_length.strip()
    if not _WHOLE_NUMBER.match(text):
        raise MalformedRequest(f"Inference-Header-Content-Length must be a whole number of bytes, got {text[:20]!r}")
    size = int(text)
    if size == 0:
        raise MalformedRequest("Inference-Header-Content-Length is 0; it must give the length of the JSON header")
    if size > len(body):
        raise MalformedRequest(f"Inference-Header-Content-Length is {size} but the body has only {len(body)} bytes")
    return body[:size], body[size:]


def parse_request(header: bytes, binary: bytes = b"") -> InferenceRequest:
    """Validate an `$inference_request` and decode its input tensors."""
    body = parse_json(header)
    if not isinstance(body, dict):
        raise MalformedRequest("the inference request must be a JSON object with 'inputs'")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise MalformedRequest("'id' must be a string")
    parameters = _parameters(body, "the request")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise MalformedRequest("'inputs' must be a non-empty list of input tensors")
    tensors: list[Tensor] = []
    offset = 0
    for number, item in enumerate(inputs):
        tensor, offset = _input(item, number, binary, offset)
        if any(t.name == tensor.name for t in tensors):
            raise MalformedRequest(f"input {tensor.name!r} is given twice")
        tensors.append(tensor)
    if offset != len(binary):
        raise MalformedRequest(
            f"{len(binary) - offset} bytes after the JSON header are not claimed by any input's binary_data_size"
        )
    return InferenceRequest(
        id=request_id,
        inputs=tensors,
        outputs=_requested_outputs(body.get("outputs")),
        binary_output=_flag(parameters, "binary_data_output", "the request") or False,
    )


def _input(item: Any, number: int, binary: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise MalformedRequest(f"inputs[{number}] must be an object with name, shape, datatype and data")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedRequest(f"inputs[{number}] needs a 'name' string")
    where = f"input {name!r}"
    datatype = item.get("datatype")
    if datatype not in DATATYPES:
        raise MalformedRequest(f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}")
    shape = item.get("shape")
    if type(shape) is not list or not _dimensions(shape):
        raise MalformedRequest(f"{where}: 'shape' must be a list of non-negative integers")
    size = _parameters(item, where).get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise MalformedRequest(f"{where} has no 'data' (and no binary_data_size parameter)")
        return Tensor(name, datatype, tuple(shape), _from_json(where, datatype, shape, item["data"])), offset
    if "data" in item:
        raise MalformedRequest(f"{where} has both 'data' and binary_data_size; give one")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise MalformedRequest(f"{where}: binary_data_size must be a non-negative integer")
    if offset + size > len(binary):
        raise MalformedRequest(
            f"{where}: binary_data_size {size} goes past the end of the body "
            f"({len(binary) - offset} bytes of binary data are left)"
        )
    raw = binary[offset : offset + size]
    return Tensor(name, datatype, tuple(shape), _from_bytes(where, datatype, shape, raw)), offset + size


def _dimensions(shape: list[Any]) -> bool:
    """Every dimension a non-negative integer (a JSON boolean is none); a loop, cheaper than
    `all()` over a generator for the one or two dimensions of a usual request."""
    for dimension in shape:  # noqa: SIM110
        if type(dimension) is not int or dimension < 0:
            return False
    return True


def _requested_outputs(outputs: Any) -> list[RequestedOutput] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise MalformedRequest("'outputs' must be a list of objects with a 'name'")
    requested = []
    for number, item in enumerate(outputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise MalformedRequest(f"outputs[{number}] must be an object with a 'name' string")
        where = f"output {item['name']!r}"
        parameters = _parameters(item, where)
        if parameters.get("classification"):
            raise MalformedRequest(
                f"{where}: the classification extension is not supported; ask for 'label' and 'probabilities'"
            )
        requested.append(RequestedOutput(item["name"], _flag(parameters, "binary_data", where)))
    return requested


def _parameters(item: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = item.get("parameters", {})
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise MalformedRequest(f"{where}: 'parameters' must be an object")
    return parameters


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise MalformedRequest(f"{where}: parameter {key!r} must be true or false")
    return value


def _from_json(where: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    values = _flatten(data)
    count = math.prod(shape)
    if len(values) != count:
        raise MalformedRequest(f"{where}: shape {shape} holds {count} values but 'data' has {len(values)}")
    allowed = _JSON_TYPES.get(datatype) or (_JSON_NUMBER if datatype.startswith("FP") else _JSON_INTEGER)
    wrong = set(map(type, values)).difference(allowed)  # exact types: a JSON boolean is no number
    if wrong:
        value = next(v for v in values if type(v) in wrong)
        raise InvalidInput(f"{where}: a {datatype} tensor cannot hold {_describe(value)}")
    if datatype == BYTES:
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    try:
        return np.asarray(values, dtype=NUMPY_TYPES[datatype]).reshape(shape)
    except OverflowError:
        raise InvalidInput(f"{where}: a value is out of range for {datatype}") from None


def _from_bytes(where: str, datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    count = math.prod(shape)
    if datatype == BYTES:
        values = _split_bytes(where, raw)
        if len(values) != count:
            raise MalformedRequest(f"{where}: shape {shape} holds {count} values but the binary data has {len(values)}")
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    itemsize = _ITEMSIZES[datatype]
    if len(raw) != count * itemsize:
        raise MalformedRequest(
            f"{where}: binary_data_size is {len(raw)} bytes but shape {shape} of {datatype} takes {count * itemsize}"
        )
    if datatype == "BOOL":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if (octets > 1).any():
            raise MalformedRequest(f"{where}: BOOL elements must be the bytes 0 or 1")
        return octets.astype(bool).reshape(shape)
    return np.frombuffer(raw, dtype=NUMPY_TYPES[datatype]).reshape(shape)


def _split_bytes(where: str, raw: bytes) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length followed by that many bytes."""
    values: list[str] = []
    offset, end = 0, len(raw)
    while offset < end:
        if offset + _LENGTH.size > end:
            raise MalformedRequest(f"{where}: the BYTES data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > end:
            raise MalformedRequest(f"{where}: a BYTES element of {length} bytes goes past the end of its data")
        try:
            values.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"{where}: BYTES element {len(values)} is not UTF-8 text") from None
        offset += length
    return values


def _flatten(data: Any) -> list[Any]:
    """Row-major elements of flat or nested JSON data (iterative: nesting depth is untrusted)."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value[:20]!r}"
    if isinstance(value, float):
        return f"the non-integer {value!r}"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


# -- response ---------------------------------------------------------------------------------
def output_tensor(name: str, values: np.ndarray) -> OutputTensor:
    """An output with the datatype that holds `values` exactly: BOOL, INT64, FP64 or BYTES."""
    values = np.asarray(values)
    kind = values.dtype.kind
    if kind == "b":
        return OutputTensor(name, "BOOL", values)
    if kind in "iu":
        return OutputTensor(name, "INT64", values.astype(np.int64, copy=False))
    if kind == "f":
        return OutputTensor(name, "FP64", values.astype(np.float64, copy=False))
    return OutputTensor(name, BYTES, values)


def encode_response(header: dict[str, Any], outputs: list[tuple[OutputTensor, bool]]) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the length of its JSON header."""
    described: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor, binary in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.data.shape)}
        if binary:
            raw = _to_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _to_json(tensor)
        described.append(entry)
    head = orjson.dumps({**header, "outputs": described})
    if not chunks:
        return head, None
    return head + b"".join(chunks), len(head)


def _to_bytes(tensor: OutputTensor) -> bytes:
    if tensor.datatype == BYTES:
        parts = []
        for value in tensor.data.ravel().tolist():
            encoded = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(_LENGTH.pack(len(encoded)) + encoded)
        return b"".join(parts)
    dtype = np.uint8 if tensor.datatype == "BOOL" else NUMPY_TYPES[tensor.datatype]
    return np.ascontiguousarray(tensor.data, dtype=dtype).tobytes()


def _to_json(tensor: OutputTensor) -> list[Any]:
    values = tensor.data.ravel().tolist()
    if tensor.datatype == BYTES:
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
    return values
