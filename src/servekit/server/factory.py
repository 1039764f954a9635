"""Build the app inside each server worker from settings passed by `servekit serve`."""

from __future__ import annotations

import os

from fastapi import FastAPI

from servekit.server.app import create_app
from servekit.settings import Settings

SETTINGS_ENV = "_SERVEKIT_SETTINGS_JSON"


def app_from_environment() -> FastAPI:
    """The uvicorn factory: settings come as JSON in `_SERVEKIT_SETTINGS_JSON`."""
    text = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(text) if text else Settings()
    return create_app(settings)
