"""The HTTP service: one FastAPI application serving every protocol."""

from __future__ import annotations

from servekit.server.app import create_app

__all__ = ["create_app"]
