"""Build the app inside each server worker from settings passed by `servekit serve`."""

from __future__ import annotations

import gc
import os

from fastapi import FastAPI

from servekit.monitoring.jsonlog import configure_logging
from servekit.server.app import create_app
from servekit.settings import Settings

SETTINGS_ENV = "_SERVEKIT_SETTINGS_JSON"
YOUNG_COLLECTION_THRESHOLD = 10_000
"""Allocations between two collections of the cyclic collector's youngest generation (Python's
default is 700). A request allocates and frees dozens of containers, nearly all freed by reference
counting, so at the default a busy worker ran a collection every ~200 requests: ~1.5 % of its CPU
in `gc` (docs/performance.md)."""


def app_from_environment() -> FastAPI:
    """The uvicorn factory: settings come as JSON in `_SERVEKIT_SETTINGS_JSON`."""
    text = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(text) if text else Settings()
    configure_logging(settings.log_level, settings.log_format)
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
    return create_app(settings)
