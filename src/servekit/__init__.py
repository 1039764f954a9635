"""servekit: put a trained machine-learning model into production.

`import servekit` stays fast: the public names below are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Bundle",
    "Client",
    "Manifest",
    "Prediction",
    "Predictor",
    "Registry",
    "ServekitError",
    "Signature",
    "__version__",
    "load",
    "pack",
    "score",
]

_LAZY = {
    "AsyncClient": "servekit.client",
    "Client": "servekit.client",
    "Bundle": "servekit.bundle",
    "Manifest": "servekit.bundle",
    "Prediction": "servekit.prediction",
    "Predictor": "servekit.predictor",
    "Registry": "servekit.registry",
    "ServekitError": "servekit.errors",
    "Signature": "servekit.signature",
    "load": "servekit.loading",
    "pack": "servekit.packing",
    "score": "servekit.batch",
}

if TYPE_CHECKING:
    from servekit.batch import score
    from servekit.bundle import Bundle, Manifest
    from servekit.client import AsyncClient, Client
    from servekit.errors import ServekitError
    from servekit.loading import load
    from servekit.packing import pack
    from servekit.prediction import Prediction
    from servekit.predictor import Predictor
    from servekit.registry import Registry
    from servekit.signature import Signature


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'servekit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
