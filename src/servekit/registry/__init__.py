"""The model registry: numbered versions of named models with aliases, in SQL plus a file store."""

from __future__ import annotations

from servekit.registry.database import metadata
from servekit.registry.registry import (
    DEFAULT_HOME,
    ModelSummary,
    RegisteredVersion,
    Registry,
    default_home,
)
from servekit.registry.store import FileStore

__all__ = [
    "DEFAULT_HOME",
    "FileStore",
    "ModelSummary",
    "RegisteredVersion",
    "Registry",
    "default_home",
    "metadata",
]
