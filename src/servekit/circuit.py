"""`CircuitBreaker`: stop sending requests to a model that keeps failing.

Closed: requests pass. After `failures` consecutive failed predictions the circuit opens: every
request gets a fast `CircuitOpen` (503 + Retry-After) and the model reports not ready. Once
`reset_after_s` has passed, one request is let through as a probe (half-open): if it succeeds the
circuit closes, if it fails the circuit opens again for another `reset_after_s`.
"""

from __future__ import annotations

import math
import time

from servekit.errors import CircuitOpen

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker"]

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half-open"}


class CircuitBreaker:
    """Consecutive-failure circuit breaker for one model version (event-loop only, no locks)."""

    def __init__(self, name: str, *, failures: int = 5, reset_after_s: float = 10.0) -> None:
        self.name = name
        self.threshold = failures
        self.reset_after_s = reset_after_s
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    def allow(self) -> bool:
        """Raise `CircuitOpen` unless a request may run now; `True` when it is the probe."""
        if self.state == CLOSED:
            return False
        waited = time.monotonic() - self.opened_at
        if self.state == OPEN and waited >= self.reset_after_s:
            self.state = HALF_OPEN
        if self.state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        retry = max(1, math.ceil(self.reset_after_s - waited)) if self.state == OPEN else 1
        raise CircuitOpen(
            f"model {self.name} failed {self.failures} times in a row and is paused",
            hint=f"Retry in {retry} s; the server log says why it failed",
            retry_after=retry,
        )

    def success(self, probe: bool = False) -> None:
        if probe:
            self._probing = False
        if self.state != CLOSED or self.failures:
            self.state, self.failures = CLOSED, 0

    def release_probe(self) -> None:
        """The probe ended without a verdict (e.g. the client went away): let another one run."""
        self._probing = False

    def failure(self, probe: bool = False) -> None:
        if probe:
            self._probing = False
        self.failures += 1
        if probe or self.failures >= self.threshold:
            self.state, self.opened_at = OPEN, time.monotonic()
