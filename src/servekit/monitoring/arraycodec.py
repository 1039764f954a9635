"""The prediction log's compact binary form of arrays: a numeric array is its raw bytes behind a
small header (no text formatting of numbers), anything else JSON.

Writing a 1,000 x 30 float array this way is a memory copy (tens of microseconds); as JSON text it
would take milliseconds, on the server's one core. Layout, repeated for each array in a blob:
`kind` (1 byte: `n` numeric, `j` JSON), then for `n`: dtype string length (1 byte), the numpy
dtype string (e.g. `<f8`), the number of dimensions (1 byte), each dimension (8 bytes, little
endian), the data; for `j`: its length (8 bytes) and the UTF-8 JSON.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any

import numpy as np
import orjson

__all__ = ["decode", "encode", "json_default"]

_NUMERIC = b"n"
_JSON = b"j"
_SIZE = struct.Struct("<Q")


def _header(dtype: str, ndim: int) -> struct.Struct:
    """The packer of a numeric part's header, one per (dtype, ndim) seen."""
    found = _HEADERS.get((dtype, ndim))
    if found is None:
        found = _HEADERS[(dtype, ndim)] = struct.Struct(f"<cB{len(dtype)}sB{ndim}Q")
    return found


_HEADERS: dict[tuple[str, int], struct.Struct] = {}


def encode(*values: Any, default: Any = None) -> bytes:
    """One blob holding every value (numpy arrays, or anything JSON-able)."""
    parts: list[bytes | memoryview] = []
    for value in values:
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            dtype = value.dtype.str
            header = _header(dtype, value.ndim).pack(_NUMERIC, len(dtype), dtype.encode(), value.ndim, *value.shape)
            # The array's own buffer when it is C-ordered (the join is the only copy), else a copy.
            data = memoryview(value).cast("B") if value.size and value.flags.c_contiguous else value.tobytes()
            parts += [header, data]
        else:
            if isinstance(value, np.ndarray):
                value = value.tolist()
            text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=default)
            parts += [_JSON, _SIZE.pack(len(text)), text]
    return b"".join(parts)


def decode(blob: bytes) -> list[Any]:
    """The values of `encode`, in order: numpy arrays for numeric ones, JSON values otherwise."""
    values: list[Any] = []
    view = memoryview(blob)
    at = 0
    while at < len(view):
        kind = bytes(view[at : at + 1])
        at += 1
        if kind == _NUMERIC:
            length = view[at]
            dtype = np.dtype(bytes(view[at + 1 : at + 1 + length]).decode())
            at += 1 + length
            ndim = view[at]
            at += 1
            shape = tuple(_SIZE.unpack_from(view, at + 8 * i)[0] for i in range(ndim))
            at += 8 * ndim
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            values.append(np.frombuffer(view[at : at + nbytes], dtype=dtype).reshape(shape).copy())
            at += nbytes
        elif kind == _JSON:
            (length,) = _SIZE.unpack_from(view, at)
            at += 8
            values.append(orjson.loads(bytes(view[at : at + length])))
            at += length
        else:
            raise ValueError(f"not a prediction-log blob (unknown part {kind!r} at byte {at - 1})")
    return values


def json_default(value: Any) -> Any:
    """What orjson cannot write by itself: odd arrays, numpy scalars, timestamps, missing values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or (type(value).__name__ in {"NAType", "NaTType"}):
        return None
    return str(value)
