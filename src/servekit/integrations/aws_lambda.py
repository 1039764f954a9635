"""Serve models from AWS Lambda: the same ASGI app as `servekit serve`, behind Mangum.

    Handler: servekit.integrations.aws_lambda.handler
    Environment: SERVEKIT_MODELS='["/var/task/models/iris"]'  SERVEKIT_HOME=/tmp/servekit

Settings come from the `SERVEKIT_*` environment variables (a YAML file named by
`SERVEKIT_CONFIG` too). Every route works as it does over HTTP: API Gateway REST (payload 1.0),
HTTP APIs (2.0), function URLs and ALB events are translated by Mangum. The app is built and
its models loaded once per container, on the first event (the cold start); later events reuse
them. Needs `pip install servekit[lambda]`.

Lambda runs an invocation only while the handler is running, so the app's event loop runs
then too: background work (micro-batching, the prediction log's writes) advances during
invocations, and whatever is still buffered when Lambda freezes the container is written on
the next one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from servekit.runtimes.base import import_optional
from servekit.settings import Settings, load_settings

__all__ = ["LambdaApp", "handler"]

logger = logging.getLogger("servekit.lambda")

CONFIG_ENV = "SERVEKIT_CONFIG"
BASE_PATH_ENV = "SERVEKIT_LAMBDA_BASE_PATH"
"""A path prefix to strip, e.g. an API Gateway stage name that is part of the path."""
DEFAULT_LOAD_TIMEOUT_S = 600.0
# Bodies of these types go back to API Gateway as text; anything else is base64-encoded.
TEXT_TYPES = [
    "text/",
    "application/json",
    "application/problem+json",
    "application/javascript",
    "application/xml",
    "application/vnd.oai.openapi",
]


class LambdaApp:
    """The servekit app with its models loaded, callable as a Lambda handler.

    Building one runs the app's startup (models load, monitoring starts) on an event loop
    kept for the life of the container; `cold_start_s` is how long that took.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        base_path: str | None = None,
        load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
    ) -> None:
        mangum = import_optional("mangum", "lambda")
        from servekit.server.app import create_app

        started = time.perf_counter()
        self.settings = settings if settings is not None else _settings_from_environment()
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # Mangum runs each event on the current loop
        self.app = create_app(self.settings)
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.loop.run_until_complete(self._start(load_timeout_s))
        self.adapter = mangum.Mangum(
            self.app,
            lifespan="off",  # ran once above; Mangum would run it again for every event
            api_gateway_base_path=base_path or os.environ.get(BASE_PATH_ENV) or "/",
            text_mime_types=TEXT_TYPES,
        )
        self.cold_start_s = time.perf_counter() - started
        states = {name: model.state for name, model in self.app.state.dataplane.models.items()}
        logger.info("servekit ready for Lambda in %.2f s: %s", self.cold_start_s, states)

    async def _start(self, timeout_s: float) -> None:
        await self._lifespan.__aenter__()
        plane = self.app.state.dataplane
        deadline = time.monotonic() + timeout_s
        # A model that fails to load is reported by /health/ready and its routes (503), not here.
        while any(m.state == "loading" for m in plane.models.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        asyncio.set_event_loop(self.loop)
        return self.adapter(event, context)

    def close(self) -> None:
        """Run the app's shutdown (flush the prediction log, unload models) and close the loop."""
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        finally:
            self.loop.close()
            asyncio.set_event_loop(None)


def _settings_from_environment() -> Settings:
    config = os.environ.get(CONFIG_ENV)
    return load_settings(Path(config) if config else None)


_app: LambdaApp | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: builds the app on the container's first event, then reuses it."""
    global _app
    if _app is None:
        _app = LambdaApp()
    return _app(event, context)
