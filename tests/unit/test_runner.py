"""`Runner`: micro-batching, back-pressure, timeouts, failures and draining, on a real packed model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import joblib
import numpy as np
import pandas as pd
import pytest

from servekit.errors import Overloaded, PredictionFailed, PredictionTimeout
from servekit.loading import load
from servekit.prediction import Prediction
from servekit.predictor import Predictor
from servekit.runner import Runner
from servekit.settings import RunnerSettings

T = TypeVar("T")
POISON = 999.0


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny packed regressors: one taking a plain array, one a named DataFrame."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    from servekit.packing import pack

    folder = tmp_path_factory.mktemp("runner-models")
    X, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(X[:, :3], y), folder / "array.joblib")
    frame = pd.DataFrame(X[:, :3], columns=["age", "sex", "bmi"])
    joblib.dump(Ridge().fit(frame, y), folder / "frame.joblib")
    return {
        kind: pack(folder / f"{kind}.joblib", name=kind, output=folder / f"{kind}.bundle", trust=True).path
        for kind in ("array", "frame")
    }


@pytest.fixture
def predictor(bundles: dict[str, Path]) -> Predictor:
    return load(bundles["array"], trust=True)


class Recorder:
    """Wraps `predictor.predict_batch`: records each call's row count, optionally sleeps first."""

    def __init__(self, predictor: Predictor, delay: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self._predict = predictor.predict_batch
        predictor.predict_batch = self  # type: ignore[method-assign]

    def __call__(self, batch: Any) -> Prediction:
        self.sizes.append(len(batch))
        if self.delay:
            time.sleep(self.delay)
        return self._predict(batch)

    def expected(self, batch: Any) -> list[float]:
        return self._predict(batch).outputs.tolist()


def poison_runtime(predictor: Predictor) -> None:
    """Make the runtime raise, as a broken model would, for any batch holding POISON."""
    real = predictor.runtime.predict

    def predict(batch: Any) -> Prediction:
        if (np.asarray(batch) == POISON).any():
            raise ValueError("the model cannot handle this")
        return real(batch)

    predictor.runtime.predict = predict  # type: ignore[method-assign]


def run(settings: RunnerSettings, predictor: Predictor, scenario: Callable[[Runner], Awaitable[T]]) -> T:
    """Start a runner, play the scenario, and always stop the runner."""

    async def main() -> T:
        runner = Runner(predictor, settings)
        await runner.start()
        try:
            return await scenario(runner)
        finally:
            await runner.stop()

    return asyncio.run(main())


def distinct_batches(predictor: Predictor, sizes: list[int]) -> list[Any]:
    """One batch per request, every row different from every other row."""
    batches, value = [], 0.0
    for size in sizes:
        rows = []
        for _ in range(size):
            value += 0.01
            rows.append([value, -value, value / 2])
        batches.append(predictor.batch(rows))
    return batches


def test_concurrent_requests_are_stacked_and_each_gets_its_own_rows(predictor: Predictor) -> None:
    recorder = Recorder(predictor, delay=0.02)
    sizes = [1, 2, 3, 1, 1, 2, 1, 3, 1, 1]
    batches = distinct_batches(predictor, sizes)
    expected = [recorder.expected(b) for b in batches]
    assert len({v for e in expected for v in e}) == sum(sizes)  # every row predicts a different value

    async def scenario(runner: Runner) -> list[Prediction]:
        return await asyncio.gather(*(runner.infer(b) for b in batches))

    results = run(RunnerSettings(max_latency_ms=5), predictor, scenario)
    assert len(recorder.sizes) < len(batches)
    assert sum(recorder.sizes) == sum(sizes)
    assert [len(r) for r in results] == sizes
    for result, want in zip(results, expected, strict=True):
        assert result.outputs.tolist() == pytest.approx(want)


def test_frames_are_stacked_too(bundles: dict[str, Path]) -> None:
    predictor = load(bundles["frame"], trust=True)
    assert predictor.signature.input_kind == "frame"
    recorder = Recorder(predictor, delay=0.02)
    batches = [predictor.batch({"age": i / 100, "sex": -i / 100, "bmi": i / 50}) for i in range(6)]
    expected = [recorder.expected(b) for b in batches]

    async def scenario(runner: Runner) -> list[Prediction]:
        return await asyncio.gather(*(runner.infer(b) for b in batches))

    results = run(RunnerSettings(), predictor, scenario)
    assert len(recorder.sizes) < len(batches)
    for result, want in zip(results, expected, strict=True):
        assert result.outputs.tolist() == pytest.approx(want)


def test_max_batch_size_is_respected(predictor: Predictor) -> None:
    recorder = Recorder(predictor, delay=0.01)
    batches = distinct_batches(predictor, [1] * 12)
    expected = [recorder.expected(b) for b in batches]

    async def scenario(runner: Runner) -> list[Prediction]:
        return await asyncio.gather(*(runner.infer(b) for b in batches))

    results = run(RunnerSettings(max_batch_size=4, max_latency_ms=5), predictor, scenario)
    assert max(recorder.sizes) == 4
    assert sum(recorder.sizes) == 12
    assert [r.outputs.tolist() for r in results] == [pytest.approx(e) for e in expected]


def test_max_batch_size_is_respected_with_multi_row_requests(predictor: Predictor) -> None:
    recorder = Recorder(predictor, delay=0.01)
    batches = distinct_batches(predictor, [3, 2])

    async def scenario(runner: Runner) -> list[Prediction]:
        return await asyncio.gather(*(runner.infer(b) for b in batches))

    run(RunnerSettings(max_batch_size=4, max_latency_ms=5), predictor, scenario)
    assert max(recorder.sizes) <= 4


def test_full_queue_answers_overloaded_at_once(predictor: Predictor) -> None:
    Recorder(predictor, delay=0.02)
    batches = distinct_batches(predictor, [1, 1, 1, 1])

    async def scenario(runner: Runner) -> tuple[list[Any], Prediction]:
        # The requests are queued before the worker wakes up: two fit, the others are refused.
        outcomes = await asyncio.gather(*(runner.infer(b) for b in batches), return_exceptions=True)
        later = await runner.infer(batches[0])
        return outcomes, later

    outcomes, later = run(RunnerSettings(max_queue=2), predictor, scenario)
    assert [type(o) for o in outcomes] == [Prediction, Prediction, Overloaded, Overloaded]
    error = outcomes[2]
    assert error.message == "model array has 2 requests waiting"
    assert error.hint == "Retry after a moment"
    assert isinstance(error.retry_after, int)
    assert error.retry_after >= 1
    assert len(later) == 1  # the queue drained, so new requests are served again


@pytest.mark.parametrize("batching", [True, False])
def test_timeout(predictor: Predictor, batching: bool) -> None:
    Recorder(predictor, delay=0.3)
    (batch,) = distinct_batches(predictor, [1])

    async def scenario(runner: Runner) -> PredictionTimeout:
        with pytest.raises(PredictionTimeout) as info:
            await runner.infer(batch)
        assert runner.in_flight == 0
        return info.value

    error = run(RunnerSettings(timeout_s=0.05, batching=batching), predictor, scenario)
    assert error.message == "the prediction took longer than 0.05 s"
    assert error.status == 504


def test_runtime_error_reaches_every_caller_of_the_batch_and_later_requests_work(predictor: Predictor) -> None:
    recorder = Recorder(predictor, delay=0.02)
    poison_runtime(predictor)
    good = distinct_batches(predictor, [1, 2, 1])
    bad = predictor.batch([[POISON, 0.0, 0.0]])
    expected = [recorder.expected(b) for b in good]

    async def scenario(runner: Runner) -> tuple[list[Any], list[Prediction]]:
        failed = await asyncio.gather(
            runner.infer(good[0]), runner.infer(bad), runner.infer(good[1]), return_exceptions=True
        )
        calls_for_the_failed_batch = len(recorder.sizes)
        assert calls_for_the_failed_batch == 1  # the three requests shared one predict call
        after = await asyncio.gather(runner.infer(good[2]), runner.infer(good[0]))
        return failed, after

    failed, after = run(RunnerSettings(), predictor, scenario)
    assert all(isinstance(f, PredictionFailed) for f in failed)
    assert failed[0].message == "the model raised ValueError while predicting"
    assert [r.outputs.tolist() for r in after] == [pytest.approx(expected[2]), pytest.approx(expected[0])]


def test_stop_drains_queued_work(predictor: Predictor) -> None:
    recorder = Recorder(predictor, delay=0.03)
    batches = distinct_batches(predictor, [1, 2, 1, 1])
    expected = [recorder.expected(b) for b in batches]

    async def main() -> tuple[list[asyncio.Task[Prediction]], int]:
        runner = Runner(predictor, RunnerSettings(max_batch_size=1))
        await runner.start()
        tasks = [asyncio.create_task(runner.infer(b)) for b in batches]
        await asyncio.sleep(0)  # every request is queued; none has run yet
        queued = runner.queue_depth
        await runner.stop()
        return tasks, queued

    tasks, queued = asyncio.run(main())
    assert queued >= 3
    assert all(t.done() and not t.cancelled() for t in tasks)
    assert [t.result().outputs.tolist() for t in tasks] == [pytest.approx(e) for e in expected]
    assert len(recorder.sizes) == len(batches)
    assert predictor.runtime.model is None  # stop() unloads the model


def test_stop_answers_a_request_whose_task_has_not_started_yet(predictor: Predictor) -> None:
    recorder = Recorder(predictor, delay=0.01)  # slow enough for the thread: `infer` gives a coroutine
    [batch] = distinct_batches(predictor, [1])
    expected = recorder.expected(batch)  # before stop() unloads the model

    async def main() -> Prediction:
        runner = Runner(predictor, RunnerSettings(inline_below_ms=0))
        await runner.start()
        task = asyncio.ensure_future(runner.infer(batch))  # as the fast path starts it: not run yet
        await runner.stop()
        return await asyncio.wait_for(task, 5)

    assert asyncio.run(main()).outputs.tolist() == pytest.approx(expected)
    assert recorder.sizes == [1]


def test_stop_answers_a_request_queued_as_the_last_job_is_marked_done(predictor: Predictor) -> None:
    """`Queue.join` wakes up on the event its last `task_done` set even when a job was queued in
    between; the worker may then hold that job while the queue looks empty. `stop` must still
    wait for its answer (an alias swap once left such a request unanswered)."""
    recorder = Recorder(predictor, delay=0.01)  # slow enough for the thread: `infer` gives a coroutine
    first, second = distinct_batches(predictor, [1, 1])
    expected = recorder.expected(second)

    async def main() -> Prediction:
        runner = Runner(predictor, RunnerSettings(inline_below_ms=0))
        await runner.start()
        queue = runner._queue
        assert queue is not None
        late: list[asyncio.Future[Prediction]] = []
        mark_done = queue.task_done

        def task_done() -> None:  # a request arrives just as the first job is marked done
            if not late:
                late.append(asyncio.ensure_future(runner.infer(second)))
            mark_done()

        queue.task_done = task_done  # type: ignore[method-assign]
        answer = asyncio.ensure_future(runner.infer(first))
        await asyncio.sleep(0)  # queued; the worker takes it to the thread
        await runner.stop()
        await answer
        return await asyncio.wait_for(late[0], 5)

    assert asyncio.run(main()).outputs.tolist() == pytest.approx(expected)
    assert recorder.sizes == [1, 1]


def test_without_batching_each_request_runs_alone(predictor: Predictor) -> None:
    recorder = Recorder(predictor)
    batches = distinct_batches(predictor, [1, 3, 2])
    expected = [recorder.expected(b) for b in batches]

    async def scenario(runner: Runner) -> list[Prediction]:
        assert runner.queue_depth == 0
        return await asyncio.gather(*(runner.infer(b) for b in batches))

    results = run(RunnerSettings(batching=False), predictor, scenario)
    assert sorted(recorder.sizes) == [1, 2, 3]
    assert [r.outputs.tolist() for r in results] == [pytest.approx(e) for e in expected]


def test_without_batching_runtime_errors_are_raised(predictor: Predictor) -> None:
    poison_runtime(predictor)
    bad = predictor.batch([[POISON, 0.0, 0.0]])

    async def scenario(runner: Runner) -> None:
        with pytest.raises(PredictionFailed):
            await runner.infer(bad)
        assert len(await runner.infer(predictor.batch([[0.1, 0.2, 0.3]]))) == 1

    run(RunnerSettings(batching=False), predictor, scenario)


def on_the_loop(
    predictor: Predictor, settings: RunnerSettings, sizes: list[int], delays: list[float] | None = None
) -> list[tuple[int, bool]]:
    """Run one request per size in turn: (rows, predicted on the event loop's thread) per call;
    call k first sleeps `delays[k]` seconds when given."""
    import threading

    calls: list[tuple[int, bool]] = []
    original = predictor.predict_batch

    def recording(batch):
        calls.append((len(batch), threading.current_thread() is threading.main_thread()))
        if delays:
            time.sleep(delays[len(calls) - 1])
        return original(batch)

    predictor.predict_batch = recording  # type: ignore[method-assign]
    batches = distinct_batches(predictor, sizes)

    async def scenario(runner: Runner) -> None:
        for batch in batches:
            await runner.infer(batch)

    run(settings, predictor, scenario)
    return calls


def test_fast_models_run_inline_on_the_event_loop(predictor: Predictor) -> None:
    # Unmeasured, the first call goes to the model's thread; measured fast, no hand-off.
    calls = on_the_loop(predictor, RunnerSettings(inline_below_ms=1000), [1, 1, 1])
    assert calls == [(1, False), (1, True), (1, True)]


def test_inline_is_off_when_disabled(predictor: Predictor) -> None:
    calls = on_the_loop(predictor, RunnerSettings(inline_below_ms=0), [1, 1, 1])
    assert calls == [(1, False)] * 3


def test_one_stalled_call_does_not_send_a_fast_model_to_the_thread(predictor: Predictor) -> None:
    # A 150 ms stall counts as at most 4 x 10 ms: the average stays under the threshold.
    calls = on_the_loop(predictor, RunnerSettings(inline_below_ms=10), [1] * 6, [0.0, 0.0, 0.15, 0.0, 0.0, 0.0])
    assert [on_loop for _, on_loop in calls] == [False] + [True] * 5


def test_a_model_slow_on_every_call_stays_off_the_event_loop(predictor: Predictor) -> None:
    calls = on_the_loop(predictor, RunnerSettings(inline_below_ms=5), [1] * 5, [0.03] * 5)
    assert [on_loop for _, on_loop in calls] == [False] * 5


def test_a_request_bigger_than_a_batch_never_runs_on_the_event_loop(predictor: Predictor) -> None:
    calls = on_the_loop(predictor, RunnerSettings(inline_below_ms=1000, max_batch_size=4), [1, 1, 9, 1])
    assert calls == [(1, False), (1, True), (9, False), (1, True)]


def test_prediction_cache_answers_repeated_rows_without_the_model(predictor: Predictor) -> None:
    recorder = Recorder(predictor)
    first, second = distinct_batches(predictor, [2, 2])

    async def scenario(runner: Runner) -> list[Prediction]:
        return [await runner.infer(b) for b in (first, first.copy(), second, first)]

    results = run(RunnerSettings(cache_size=1, batching=False), predictor, scenario)
    # first: miss; its copy: hit; second: miss (evicts first); first again: miss
    assert sum(recorder.sizes) == 6
    assert results[0].outputs.tolist() == results[1].outputs.tolist() == results[3].outputs.tolist()


def test_cache_is_off_by_default(predictor: Predictor) -> None:
    assert Runner(predictor).cache is None
