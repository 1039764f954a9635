"""The policy for artifacts that run code when loaded (pickle, joblib, full torch pickles).

Such a file loads only when (a) its sha256 matches the one the registry recorded when a user
pushed it with `--trust`, or (b) the operator trusts it now with `--trust` or
`SERVEKIT_TRUST_PICKLE=1`. Everything else is refused before a single byte is unpickled.
"""

from __future__ import annotations

import os

from servekit.errors import UntrustedArtifact
from servekit.runtimes.base import Runtime

__all__ = ["TRUST_ENV", "authorize", "env_trusts"]

TRUST_ENV = "SERVEKIT_TRUST_PICKLE"
_TRUE = frozenset({"1", "true", "yes", "on"})


def env_trusts() -> bool:
    """True when `SERVEKIT_TRUST_PICKLE` is set to a true value."""
    return os.environ.get(TRUST_ENV, "").strip().lower() in _TRUE


def authorize(runtime: Runtime, *, trust: bool, verified_record: bool = False) -> None:
    """Allow `runtime` to load its artifact, or raise `UntrustedArtifact` saying why.

    `verified_record` means the caller checked the file against the sha256 that the registry
    recorded at a trusted push.
    """
    explicit = trust or env_trusts()
    runtime.trusted = explicit
    if not runtime.needs_trust() or explicit or verified_record:
        return
    raise UntrustedArtifact(
        f"{runtime.path.name} is a {runtime.format} file: loading it runs whatever code it "
        "contains, and nobody vouched for it",
        hint=f"If you trust its source, pass --trust (or set {TRUST_ENV}=1), or push it once with "
        "`servekit push FILE --trust` so the registry records its sha256; skops and ONNX files "
        "need no trust",
    )
