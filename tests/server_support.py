"""A real `leadscore serve` for the tests that need one: launched in its own process group, ready when
every worker reports a model in /metrics, stopped with SIGTERM (SIGKILL to the group if it hangs)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

SERVE = ["-m", "leadscore.cli", "serve"]  # the console script, run by this interpreter
START_TIMEOUT = 150.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A uvicorn server process (and its workers, in their own process group)."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    workers: int
    registry: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Until every worker serves a model (each reports itself in /metrics)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.text()[-3000:]}")
            try:
                metrics = httpx.get(f"{self.url}/metrics", timeout=2).text
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            pids = set(re.findall(r'leadscore_model_loaded\{[^}]*pid="(\d+)"[^}]*\} 1\.0', metrics))
            if len(pids) >= self.workers or (self.workers == 1 and "leadscore_model_loaded{" in metrics):
                return
            time.sleep(0.2)
        pytest.fail(f"server not ready after {START_TIMEOUT:.0f} s:\n{self.text()[-3000:]}")

    def stop(self) -> int | None:
        """SIGTERM (graceful), then SIGKILL to the whole group if it hangs; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


def launch(argv: list[str], log: Path, workers: int, registry: Path, env: dict[str, str] | None = None,
           port: int | None = None) -> Server:
    handle = log.open("wb")
    full_env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=full_env,
                            start_new_session=True)  # workers share the group: killpg reaches them
    handle.close()
    return Server(proc, f"http://127.0.0.1:{port}", log, workers, registry)


def serving_pids(url: str, version: str | None = None) -> set[str]:
    """Worker pids that report serving ``version`` (any version when None; the multiprocess
    ``leadscore_model_loaded`` gauge)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    label = re.escape(version) if version else r'[^"]+'
    return set(re.findall(rf'leadscore_model_loaded\{{model_version="{label}",pid="(\d+)"\}} 1\.0', text))


def wait_until_served(url: str, version: str, workers: int, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while len(serving_pids(url, version)) < workers:
        assert time.monotonic() < deadline, f"not every worker serves {version} after {timeout:.0f} s"
        time.sleep(0.05)
    return time.monotonic()
