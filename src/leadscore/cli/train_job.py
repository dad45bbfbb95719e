"""The process of one training job: ``python -m leadscore.cli.train_job JOB.json``.

Runs ``leadscore retrain`` with the job's arguments (its output goes to the job's log), then writes the
job's end into JOB.json: ``succeeded`` (the cycle ran, or had nothing to do) or ``failed``, the exit
status, the cycle as JSON and the duration.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from leadscore.core.files import atomic_write_text


def run(job_file: Path) -> int:
    """Run the job described in ``job_file`` and record how it ended; its exit status."""
    from leadscore.cli.main import main

    job = json.loads(job_file.read_text())
    started = time.perf_counter()
    captured = io.StringIO()
    error: str | None = None
    try:
        with contextlib.redirect_stdout(captured):
            status = main(job["argv"])
    except BaseException as exc:  # noqa: BLE001 - whatever happens, the job's end is recorded
        status, error = 1, f"{type(exc).__name__}: {exc}"
    output = captured.getvalue()
    sys.stdout.write(output)
    result = None
    for line in reversed(output.strip().splitlines()):
        try:
            result = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    job.update(state="succeeded" if status in (0, 3) else "failed", exit_code=status, result=result,
               error=error, finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
               seconds=round(time.perf_counter() - started, 1))
    atomic_write_text(job_file, json.dumps(job))
    return status


if __name__ == "__main__":
    sys.exit(0 if run(Path(sys.argv[1])) in (0, 3) else 1)
