"""Jinja rendering of the deployment templates: context in, text out, nothing written.

Templates run in a `SandboxedEnvironment` with `StrictUndefined` (a misspelt variable fails
the render instead of printing nothing). Anything that reaches a shell goes through `shquote`;
any string in YAML or JSON through `tojson` (a JSON string is a valid YAML scalar).
"""

from __future__ import annotations

import json
import shlex
from functools import cache
from typing import Any

from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from servekit.deploy.context import DeployContext

__all__ = ["render_template"]


@cache
def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=PackageLoader("servekit.deploy", "templates"),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shquote"] = lambda value: shlex.quote(str(value))
    env.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)
    env.filters["shjoin"] = lambda values: " ".join(shlex.quote(str(v)) for v in values)
    return env


def render_template(name: str, ctx: DeployContext, **extra: Any) -> str:
    """Render `templates/{name}` with `ctx` (and any `extra` variables)."""
    return _environment().get_template(name).render(ctx=ctx, **extra)
