"""Offline batch scoring: `score(model, input, output)` over CSV, Parquet and JSON-lines files,
streamed in chunks, locally or on a Dask cluster, with an errors file and resumable runs.

    job.py           score(): the job, from input to output
    inputs.py        a file, a folder or a glob, resolved into described files
    columns.py       which input columns feed the model, which are kept
    readers.py       pieces of the input and reading one into columns
    validation.py    whole-column checks, the server's messages
    scoring.py       validate + predict + output columns for one chunk
    writers.py       part files, the final output, the errors file
    resume.py        the work folder and state of an unfinished run
    local_engine.py  read-ahead thread + scoring thread
    dask_engine.py   the same scoring over Dask partitions
    progress.py      rich bar or plain lines
"""

from __future__ import annotations

from servekit.batch.job import DEFAULT_CHUNK_SIZE, ENGINES, ScoreSummary, score

__all__ = ["DEFAULT_CHUNK_SIZE", "ENGINES", "ScoreSummary", "score"]
