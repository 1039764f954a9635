"""Runtimes: one module per model format, registered by name in one dict.

Third-party runtimes register through the `servekit.runtimes` entry-point group; each entry
point names a `Runtime` subclass.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from servekit.runtimes.base import ModelDescription, Runtime, import_optional

__all__ = [
    "RUNTIMES",
    "ModelDescription",
    "Runtime",
    "get_runtime",
    "import_optional",
    "register_runtime",
]

RUNTIMES: dict[str, type[Runtime]] = {}

_BUILTIN_MODULES = (
    "servekit.runtimes.sklearn",
    "servekit.runtimes.skops",
    "servekit.runtimes.onnx",
    "servekit.runtimes.torch",
    "servekit.runtimes.keras",
    "servekit.runtimes.xgboost",
    "servekit.runtimes.lightgbm",
)
_loaded = False


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    """Class decorator: make a runtime available under its `format` name."""
    if cls.format in RUNTIMES and RUNTIMES[cls.format] is not cls:
        raise ValueError(f"a runtime for format {cls.format!r} is already registered")
    RUNTIMES[cls.format] = cls
    return cls


def all_runtimes() -> dict[str, type[Runtime]]:
    """Every registered runtime, built-in and from entry points, by format name."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        for entry in entry_points(group="servekit.runtimes"):
            register_runtime(entry.load())
    return RUNTIMES


def get_runtime(format_name: str) -> type[Runtime]:
    """The runtime class for a format name, or `UnknownFormat` listing the known ones."""
    from servekit.errors import UnknownFormat

    runtimes = all_runtimes()
    try:
        return runtimes[format_name]
    except KeyError:
        raise UnknownFormat(
            f"no runtime for format {format_name!r}",
            hint=f"Known formats: {', '.join(sorted(runtimes))}",
        ) from None
