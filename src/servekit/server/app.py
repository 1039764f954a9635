"""`create_app`: the one ASGI application, configured by `Settings`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import import_module
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from servekit import __version__
from servekit.dataplane import DataPlane
from servekit.monitoring.drift_monitor import DriftMonitor
from servekit.monitoring.monitor import Monitor
from servekit.server.guard import Guard, guard_dependency
from servekit.server.headers import CORS_ALLOWED_HEADERS, CORS_EXPOSED
from servekit.server.hotpath import ServekitApp
from servekit.server.middleware import RequestIdMiddleware
from servekit.server.problems import install_error_handlers
from servekit.server.schemas import BODY_SCHEMAS
from servekit.settings import Settings

__all__ = ["create_app"]

# Each protocol module has a `router`, and may have `install(app)` to add its own error shape.
# KServe's `/v1/models/{name}:predict` comes before the native `/v1/models/{name}`, which also
# matches it: the first route a path matches answers a wrong method, with its methods in `Allow`.
PROTOCOL_MODULES = (
    "servekit.server.routes.health",
    "servekit.server.routes.kserve",
    "servekit.server.routes.native",
    "servekit.server.routes.seed",
    "servekit.server.routes.mlflow",
    "servekit.server.routes.oip",
    "servekit.server.routes.monitoring",
)

DESCRIPTION = """Predictions from the served models, over every protocol clients already speak.

* **Native API** (`/v1/models/...`): versioned, one row or many, errors as `application/problem+json`.
* **Compatible routes** (`/predict`, `/predict/batch`, `/v1/predict`, `/health`, `/model/info`): the shapes
  tutorials use, answered by the default model.
* **Open Inference Protocol v2** (`/v2/...`): KServe, Triton and MLServer clients, JSON and binary tensors.
* **KServe v1** (`POST /v1/models/{name}:predict`) and the **MLflow scoring protocol** (`/invocations`,
  `/ping`, `/version`).
* **Health**: `/health/live` and `/health/ready` for orchestrators.
"""


def create_app(settings: Settings, *, registry: Any | None = None, dataplane: DataPlane | None = None) -> FastAPI:
    """Build the application. Models load in the background once it starts: `/health/ready`
    answers 503 until every one of them is ready.

    Mounted under another ASGI app, the outer app must run this app's lifespan (Starlette does
    not run a mounted app's lifespan), e.g. `FastAPI(lifespan=lambda _: inner.router.lifespan_context(inner))`
    (see docs/embedding.md).
    """
    plane = dataplane or DataPlane(settings, registry)
    database_url = _registry_database(settings, registry)
    guard = Guard(settings, database_url=database_url)
    monitor = Monitor(settings)
    monitor.prediction_log = _prediction_log(settings, monitor, database_url)
    monitor.drift = DriftMonitor(settings.drift, monitor.metrics)
    plane.monitor = monitor

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await monitor.start()
        await plane.start()
        try:
            yield
        finally:
            try:
                await plane.stop()
            finally:
                await monitor.stop()  # after the runners drained: every answered request is recorded

    app = ServekitApp(
        title="servekit",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        openapi_url="/openapi.json" if settings.docs else None,
        dependencies=[Depends(guard_dependency)],
    )
    app.state.settings = settings
    app.state.dataplane = plane
    app.state.monitor = monitor
    app.state.guard = guard
    install_error_handlers(app)
    for name in PROTOCOL_MODULES:
        module = import_module(name)
        app.include_router(module.router)
        app.add_hot_routes(getattr(module, "HOT", ()))
        if hasattr(module, "install"):
            module.install(app)
    if settings.cors_origins:  # preflights and FastAPI routes; the hot path adds its own CORS headers
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=list(CORS_ALLOWED_HEADERS),
            expose_headers=[h.strip() for h in CORS_EXPOSED.split(",")],
        )
    app.add_middleware(RequestIdMiddleware, monitor=monitor, settings=settings)
    _document_parsed_bodies(app)
    return app


def _registry_database(settings: Settings, registry: Any | None) -> str:
    """The registry's database URL: API keys and, by default, the prediction log live there."""
    if registry is not None and getattr(registry, "database_url", None):
        return str(registry.database_url)
    if settings.database_url:
        return settings.database_url
    from servekit.registry.registry import DATABASE_ENV, default_home

    if os.environ.get(DATABASE_ENV):
        return os.environ[DATABASE_ENV]
    home = settings.home.expanduser().absolute() if settings.home is not None else default_home()
    return f"sqlite:///{home / 'registry.db'}"


def _prediction_log(settings: Settings, monitor: Monitor, database_url: str) -> Any | None:
    """The prediction log the settings ask for: by default every prediction, in the registry database."""
    options = settings.prediction_log
    if not options.enabled:
        return None
    from servekit.monitoring.predlog import PredictionLog

    return PredictionLog(
        options.url or database_url,
        sample_rate=options.sample_rate,
        batch_size=options.batch_size,
        flush_interval_s=options.flush_interval_s,
        max_pending=options.max_pending,
        max_pending_rows=options.max_pending_rows,
        retention_s=None if options.retention_days is None else options.retention_days * 86_400,
        retry_s=options.retry_s,
        on_lost=monitor.on_prediction_log_loss(),
    )


def _document_parsed_bodies(app: FastAPI) -> None:
    """Add the request-body schemas that routes parse themselves to the OpenAPI components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in BODY_SCHEMAS.items():
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[name] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
