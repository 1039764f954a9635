"""The circuit breaker: repeated runtime failures give fast 503s and not-ready until a probe succeeds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import joblib
import pytest

from servekit.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from servekit.errors import CircuitOpen, PredictionFailed
from servekit.loading import load
from servekit.predictor import Predictor
from servekit.runner import Runner
from servekit.settings import RunnerSettings
from tests.unit.test_runner import POISON, poison_runtime


def test_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker("m", failures=3, reset_after_s=60)
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    breaker.failure()
    assert breaker.state == CLOSED
    breaker.failure()
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpen) as raised:
        breaker.allow()
    assert raised.value.status == 503
    assert 55 <= raised.value.retry_after <= 60
    assert "failed 3 times in a row" in raised.value.message


def test_after_the_pause_one_probe_goes_through_and_decides() -> None:
    breaker = CircuitBreaker("m", failures=1, reset_after_s=0.05)
    breaker.failure()
    time.sleep(0.06)
    assert breaker.allow() is True  # the probe
    assert breaker.state == HALF_OPEN
    with pytest.raises(CircuitOpen):
        breaker.allow()  # only one probe at a time
    breaker.failure(probe=True)
    assert breaker.state == OPEN  # a failed probe opens it again at once
    time.sleep(0.06)
    assert breaker.allow() is True
    breaker.success(probe=True)
    assert breaker.state == CLOSED
    assert breaker.allow() is False


@pytest.fixture
def predictor(tmp_path: Path) -> Predictor:
    """A real Ridge model whose runtime raises for any row holding POISON, as a broken model would."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(X[:, :3], y), tmp_path / "ridge.joblib")
    predictor = load(tmp_path / "ridge.joblib", trust=True)
    poison_runtime(predictor)
    return predictor


@pytest.mark.parametrize("inline", [True, False], ids=["on-the-loop", "in-the-thread"])
def test_runner_opens_the_circuit_then_closes_it_after_a_good_probe(predictor: Predictor, inline: bool) -> None:
    settings = RunnerSettings(circuit_failures=3, circuit_reset_s=0.2, inline_below_ms=1000 if inline else 0)
    good = predictor.batch([[0.01, 0.02, 0.03]])
    bad = predictor.batch([[POISON, 0.0, 0.0]])

    async def scenario(runner: Runner) -> None:
        await runner.infer(good)  # measured: decides inline vs thread
        for _ in range(3):
            with pytest.raises(PredictionFailed):
                await runner.infer(bad)
        assert runner.circuit.state == OPEN
        started = time.perf_counter()
        with pytest.raises(CircuitOpen):
            await runner.infer(good)  # refused without touching the model
        assert time.perf_counter() - started < 0.05
        await asyncio.sleep(0.25)
        assert len(await runner.infer(good)) == 1  # the probe succeeds
        assert runner.circuit.state == CLOSED
        assert len(await runner.infer(good)) == 1

    with_runner(predictor, settings, scenario)


def with_runner(predictor: Predictor, settings: RunnerSettings, scenario: Callable[[Runner], Awaitable[None]]) -> None:
    """Start a runner, play `scenario(runner)`, always stop the runner."""

    async def main() -> None:
        runner = Runner(predictor, settings)
        await runner.start()
        try:
            await scenario(runner)
        finally:
            await runner.stop()

    asyncio.run(main())


def test_a_failed_micro_batch_counts_each_of_its_requests_and_a_good_one_resets(predictor: Predictor) -> None:
    settings = RunnerSettings(circuit_failures=3, circuit_reset_s=60, inline_below_ms=1000)
    good = predictor.batch([[0.01, 0.02, 0.03]])
    bad = predictor.batch([[POISON, 0.0, 0.0]])

    async def scenario(runner: Runner) -> None:
        await runner.infer(good)  # measured fast: the next requests share loop batches
        outcomes = await asyncio.gather(runner.infer(bad), runner.infer(good), return_exceptions=True)
        assert all(isinstance(o, PredictionFailed) for o in outcomes)  # one call for both
        assert runner.circuit.failures == 2 and runner.circuit.state == CLOSED
        assert len(await runner.infer(good)) == 1
        assert runner.circuit.failures == 0
        outcomes = await asyncio.gather(*(runner.infer(bad) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(o, PredictionFailed) for o in outcomes)
        assert runner.circuit.state == OPEN

    with_runner(predictor, settings, scenario)
