"""`servekit serve` and `servekit demo`: run the HTTP server."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from servekit.cli._output import console
from servekit.errors import InvalidInput
from servekit.settings import Settings, load_settings


def serve_command(
    models: list[str] | None = typer.Argument(
        None, help="Model files, bundle folders or registry refs (name, name:3, name@production)."
    ),
    host: str | None = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", "-p", help="Port (default 8000)."),
    workers: int | None = typer.Option(None, "--workers", "-w", help="Worker processes."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Settings file (YAML)."),
    trust: bool = typer.Option(False, "--trust", help="Trust pickle-based model files given as paths."),
    default_model: str | None = typer.Option(None, "--default-model", help="Model answering /predict."),
    home: Path | None = typer.Option(None, "--home", help="Registry home."),
    log_level: str | None = typer.Option(None, "--log-level", help="debug, info, warning or error."),
    no_docs: bool = typer.Option(False, "--no-docs", help="Do not serve /docs and /openapi.json."),
    no_optimize: bool = typer.Option(
        False, "--no-optimize", help="Serve the original artifact even when a verified ONNX variant exists."
    ),
    ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="Serve HTTPS: certificate chain (PEM)."),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="Serve HTTPS: private key (PEM)."),
) -> None:
    """Serve models over HTTP (native /v1 API, compatible routes, health, docs at /docs)."""
    settings = load_settings(
        config,
        models=models or None,
        host=host,
        port=port,
        workers=workers,
        trust=trust or None,
        default_model=default_model,
        home=home,
        log_level=log_level,
        docs=False if no_docs else None,
        optimized=False if no_optimize else None,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    run_server(settings)


def demo_command(
    host: str | None = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", "-p", help="Port (default 8000)."),
    home: Path | None = typer.Option(None, "--home", help="Registry home."),
) -> None:
    """Train the example iris model, push it to the registry and serve it."""
    from servekit.demo import DEMO_ALIAS, DEMO_MODEL, ensure_demo_model
    from servekit.registry import Registry

    registry = Registry(home)
    version = ensure_demo_model(registry)
    registry.close()
    console.print(f"[green]demo model[/] {DEMO_MODEL}@{DEMO_ALIAS} → version {version.version}", highlight=False)
    settings = load_settings(None, models=[f"{DEMO_MODEL}@{DEMO_ALIAS}"], host=host, port=port, home=home)
    run_server(settings)


def preflight(settings: Settings) -> None:
    """Fail before binding a port when a model source cannot work at all."""
    from servekit.dataplane import DataPlane

    if not settings.models:
        raise typer.BadParameter("name at least one model (file, bundle folder or registry ref)")
    plane = DataPlane(settings)  # parses every source: missing files, bad refs, duplicate names
    for model in plane.models.values():
        model.source.check(settings, lambda: plane.registry)
    for option, path in (("--ssl-certfile", settings.ssl_certfile), ("--ssl-keyfile", settings.ssl_keyfile)):
        if path is not None and not Path(path).is_file():
            raise InvalidInput(f"{option} {path}: no such file")


def run_server(settings: Settings) -> None:
    import uvicorn

    from servekit.server.factory import SETTINGS_ENV

    preflight(settings)
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    metrics_dir = _share_metrics(settings)
    scheme = "https" if settings.ssl_certfile else "http"
    base = f"{scheme}://{settings.host}:{settings.port}"
    console.print(escape(f"serving {', '.join(settings.models)} at {base} (docs: {base}/docs)"), highlight=False)
    # uvicorn re-raises SIGTERM once its graceful shutdown is done, so the default action would
    # end the process with status -15; a completed graceful shutdown is a normal exit (0).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _run_uvicorn(uvicorn, settings)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _share_metrics(settings: Settings) -> str | None:
    """Several workers: a fresh folder where each writes its Prometheus values, so that any of
    them can report the totals (prometheus-client's multiprocess mode)."""
    from servekit.monitoring.metrics import MULTIPROC_ENV

    if settings.workers < 2 or not settings.metrics or os.environ.get(MULTIPROC_ENV):
        return None  # one process, no metrics, or a folder the operator chose
    folder = tempfile.mkdtemp(prefix="servekit-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    return folder


def _run_uvicorn(uvicorn: Any, settings: Settings) -> None:
    from servekit.server import listening

    config = uvicorn.Config(
        "servekit.server.factory:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="servekit.server.fastpath:ServekitHttpProtocol",  # httptools, plus the fast path
        # Accepted requests may run up to the prediction timeout: wait for them before stopping.
        timeout_graceful_shutdown=max(30, int(settings.runner.timeout_s) + 5),
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        **({"log_config": _json_log_config()} if settings.log_format == "json" else {}),
    )
    listening.serve(config, reuse_port=settings.reuse_port)  # the address bound before any model loads


def _json_log_config() -> dict[str, Any]:
    """uvicorn's own lines (startup, shutdown, errors) in the same JSON shape as servekit's."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "servekit.monitoring.jsonlog.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {"uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
    }


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("demo")(demo_command)
