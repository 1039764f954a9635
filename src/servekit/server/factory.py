"""Build the app inside each server worker from settings passed by `servekit serve`."""

from __future__ import annotations

import os

from fastapi import FastAPI

from servekit.monitoring.jsonlog import configure_logging
from servekit.server.app import create_app
from servekit.settings import Settings

SETTINGS_ENV = "_SERVEKIT_SETTINGS_JSON"


def app_from_environment() -> FastAPI:
    """The uvicorn factory: settings come as JSON in `_SERVEKIT_SETTINGS_JSON`."""
    text = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(text) if text else Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
