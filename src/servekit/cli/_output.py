"""Shared helpers of the CLI commands: consoles, JSON output and option parsing."""

from __future__ import annotations

import json
from typing import Any

import orjson
from rich.console import Console

from servekit.errors import InvalidInput

console = Console()
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    """Machine-readable output for `--json`: plain JSON on stdout, nothing else."""
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode())


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """`["k=v", ...]` into a dict; a value without `=` is an `InvalidInput` naming the option."""
    pairs: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{option} takes KEY=VALUE, got {value!r}")
        pairs[key.strip()] = rest.strip()
    return pairs


def parse_metrics(values: list[str] | None) -> dict[str, float]:
    metrics = {}
    for key, value in parse_pairs(values, "--metrics").items():
        try:
            metrics[key] = float(value)
        except ValueError:
            raise InvalidInput(f"--metrics {key}={value}: the value must be a number") from None
    return metrics


def parse_list(value: str | None) -> list[Any] | None:
    """`a,b,c` into a list; all-integer lists become integers (class labels 0,1,2)."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [int(v) for v in items]
    except ValueError:
        return items


def parse_json_object(value: str | None, option: str) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{option} must be a JSON object: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{option} must be a JSON object")
    return data
