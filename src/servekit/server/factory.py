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
"""Net container allocations between two collections of the cyclic collector's youngest generation
(Python's default is 700). What a request leaves alive for a moment (the monitor's queue, the
prediction log's segments) keeps that count climbing: at the default a busy worker ran a collection
every ~200 requests, ~1.5 % of its CPU in `gc` (docs/performance.md §4)."""


def app_from_environment() -> FastAPI:
    """The uvicorn factory: settings come as JSON in `_SERVEKIT_SETTINGS_JSON`."""
    text = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(text) if text else Settings()
    configure_logging(settings.log_level, settings.log_format)
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
    return create_app(settings)
