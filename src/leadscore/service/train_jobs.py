"""Retraining jobs started through the API (``POST /v1/model/train``).

A job is a separate process (``python -m leadscore.cli.train_job JOB.json``) running the same cycle
as ``leadscore retrain --crm DIR``: serving never waits for it, and a worker that restarts loses
nothing. Its state lives in ``train-jobs/<id>.json`` next to the registry's versions, its output in
``<id>.log``, so any worker answers ``GET /v1/model/train/{id}``. At most one job runs per registry
(checked under a lock on the jobs folder; the cycle itself also holds the registry's retrain lock).
A new model the job promotes reaches every worker the way any activation does: through the registry.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from leadscore.core.exceptions import ConfigError, LeadscoreError
from leadscore.core.files import atomic_write_text

JOBS_FOLDER = "train-jobs"
_JOB_ID = re.compile(r"^[0-9]{14}-[0-9a-f]{6}$")
TAIL_LINES = 20


class TrainJobRunning(LeadscoreError):
    """A training job is already running for this registry."""


class UnknownTrainJob(LeadscoreError):
    """No training job has this id."""


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child not yet reaped is a zombie: not running
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class TrainJobs:
    """Start, list and read the training jobs of one registry."""

    def __init__(self, registry: Path, *, crm: Path | None, params: Path | None) -> None:
        self.registry, self.crm, self.params = Path(registry), crm, params
        self.root = self.registry / JOBS_FOLDER

    @property
    def configured(self) -> bool:
        return self.crm is not None

    def _path(self, job_id: str, suffix: str = ".json") -> Path:
        if not _JOB_ID.match(job_id):
            raise UnknownTrainJob(f"no training job {job_id!r}")
        return self.root / f"{job_id}{suffix}"

    def _read(self, path: Path) -> dict[str, Any]:
        job: dict[str, Any] = json.loads(path.read_text())
        if job.get("state") == "running" and not _alive(job.get("pid")) and job.get("pid"):
            job = {**json.loads(path.read_text())}  # the runner may have just written its end
            if job.get("state") == "running":
                job.update(state="failed", error="the job process ended without a result")
        return job

    def jobs(self) -> Iterator[dict[str, Any]]:
        """Every job's state, oldest first."""
        if self.root.is_dir():
            for path in sorted(self.root.glob("*.json")):
                yield self._read(path)

    def start(self) -> dict[str, Any]:
        """Start a job and return its state.

        Raises
        ------
        ConfigError
            If the server was started without ``--train-crm``.
        TrainJobRunning
            If one is running.
        """
        if self.crm is None:
            raise ConfigError("training from the API is not configured: start the server with "
                              "--train-crm DIR (the CRM tables to retrain on)")
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            running = [j for j in self.jobs() if j["state"] == "running"]
            if running:
                raise TrainJobRunning(f"training job {running[0]['job']} is running since "
                                      f"{running[0]['started_at']}: one at a time")
            now = datetime.now(UTC)
            job_id = f"{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
            argv = ["retrain", "--crm", str(self.crm), "--registry", str(self.registry), "--json", "-q",
                    *(["--params", str(self.params)] if self.params else [])]
            job: dict[str, Any] = {"job": job_id, "state": "running",
                                   "started_at": now.isoformat(timespec="seconds"), "argv": argv}
            path = self._path(job_id)
            atomic_write_text(path, json.dumps(job))
            with self._path(job_id, ".log").open("ab") as log:
                proc = subprocess.Popen([sys.executable, "-m", "leadscore.cli.train_job", str(path)],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            job["pid"] = proc.pid
            atomic_write_text(path, json.dumps(job))
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        """A job's state with the last lines of its output (``log_tail``).

        Raises
        ------
        UnknownTrainJob
            If there is no such job.
        """
        path = self._path(job_id)
        if not path.exists():
            raise UnknownTrainJob(f"no training job {job_id!r}")
        job = self._read(path)
        log = self._path(job_id, ".log")
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return {**job, "log_tail": lines[-TAIL_LINES:]}


def training_families(jobs: TrainJobs, events: Callable[[], list[dict[str, Any]]]) -> list[Metric]:
    """``leadscore_training_runs_total{status}`` and the last run's duration from the job files, and
    ``leadscore_gate_decisions_total{decision}`` from the registry's ``events``: the same on every worker
    (none while they cannot be read)."""
    try:
        finished = list(jobs.jobs())
        history = events()
    except (OSError, ValueError, LeadscoreError):
        return []
    runs = CounterMetricFamily("leadscore_training_runs", "Training jobs started from the API, by state",
                               labels=["status"])
    for status in ("running", "succeeded", "failed"):
        runs.add_metric([status], sum(j["state"] == status for j in finished))
    families: list[Metric] = [runs]
    done = [j for j in finished if j.get("seconds") is not None]
    if done:
        last = GaugeMetricFamily("leadscore_training_last_duration_seconds",
                                 "Duration of the last finished training job")
        last.add_metric([], float(done[-1]["seconds"]))
        families.append(last)
    gates = CounterMetricFamily("leadscore_gate_decisions", "Champion/challenger gate decisions",
                                labels=["decision"])
    for decision in ("promote", "keep", "reject"):
        gates.add_metric([decision], sum(e.get("event") == "gate" and e.get("decision") == decision
                                         for e in history))
    families.append(gates)
    return families
