"""In-process cost of one single-row prediction (the floor under any HTTP server).

    python benchmarks/floor.py BUNDLE MODEL.joblib ROW_JSON [CALLS]

Prints one JSON object: the median microseconds of `servekit.load(bundle).predict_batch(batch)`
on a one-row batch, and of the raw sklearn object's `predict` + `predict_proba` (what the
reference server does per request), each over CALLS calls after a warm-up.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

WARMUP_CALLS = 200


def median_us(call: Callable[[], object], calls: int) -> float:
    for _ in range(WARMUP_CALLS):
        call()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        start = clock()
        call()
        samples.append(clock() - start)
    return statistics.median(samples) / 1000


def main(argv: list[str]) -> int:
    bundle, model_file, row_json = argv[:3]
    calls = int(argv[3]) if len(argv) > 3 else 2000
    import joblib
    import numpy as np

    import servekit

    row = json.loads(row_json)
    predictor = servekit.load(bundle, trust=True)
    batch = predictor.batch([row])
    estimator = joblib.load(model_file)
    x = np.asarray([row], dtype=np.float64)

    def raw() -> object:
        return estimator.predict(x), estimator.predict_proba(x)

    result = {
        "servekit_us": median_us(lambda: predictor.predict_batch(batch), calls),
        "sklearn_us": median_us(raw, calls),
        "runtime": predictor.runtime.format,
        "variant": getattr(predictor, "variant", None),
        "calls": calls,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
