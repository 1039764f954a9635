"""Build the app inside each server worker from settings passed by `servekit serve`."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from servekit.server.app import create_app
from servekit.settings import Settings

SETTINGS_ENV = "_SERVEKIT_SETTINGS_JSON"


def app_from_environment() -> FastAPI:
    """The uvicorn factory: settings come as JSON in `_SERVEKIT_SETTINGS_JSON`."""
    text = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(text) if text else Settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def configure_logging(level: str) -> None:
    """servekit's own log lines on stderr, with time and level, beside uvicorn's."""
    logger = logging.getLogger("servekit")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())
