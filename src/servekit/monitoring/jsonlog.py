"""servekit's log lines as JSON objects, one per line (for log pipelines), or plain text."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure_logging"]


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message"}`, plus `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data).decode()


def configure_logging(level: str, fmt: str = "json") -> None:
    """servekit's own log lines on stderr, as JSON or as text with time and level."""
    logger = logging.getLogger("servekit")
    handler = next((h for h in logger.handlers if getattr(h, "_servekit", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._servekit = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.setLevel(level.upper())
