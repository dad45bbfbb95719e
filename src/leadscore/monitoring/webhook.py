"""Raised alert states posted to a webhook as Slack-compatible JSON (``text`` plus ``blocks``).

Transient failures (connection errors, timeouts, HTTP 429 and 5xx) are retried with exponential
backoff; other answers are final. A webhook that keeps failing is reported, never raised: monitoring
has already stored its states and must not be blocked by a chat service.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from leadscore.monitoring.alerts import CheckState

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_LINES = 20   # raised states listed in one message; the rest are counted


@dataclass(frozen=True)
class Delivery:
    """What became of one post: delivered or not, after how many attempts, and the last error."""

    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


def slack_message(states: list[CheckState], *, title: str = "leadscore monitoring") -> dict[str, Any]:
    """A Slack-compatible message (``text`` for any receiver, ``blocks`` for Slack) of raised states."""
    icon = {"alert": ":red_circle:", "warn": ":large_yellow_circle:"}
    alerts = sum(s.state == "alert" for s in states)
    headline = f"{title}: {alerts} alert(s), {len(states) - alerts} warning(s)"
    lines = [f"{icon.get(s.state, '')} *{s.state.upper()}* {s.check} `{s.subject}` "
             f"(model {s.model_version}, {s.period}): {s.reason}" for s in states[:MAX_LINES]]
    if len(states) > MAX_LINES:
        lines.append(f"... and {len(states) - MAX_LINES} more")
    body = "\n".join(lines)
    return {"text": f"{headline}\n{body}",
            "blocks": [{"type": "header", "text": {"type": "plain_text", "text": headline}},
                       {"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}}]}


def post_json(url: str, payload: dict[str, Any], *, attempts: int = 4, backoff: float = 0.5,
              timeout: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """POST ``payload`` to ``url``, retrying transient failures ``attempts`` times in all."""
    error: str | None = None
    status: int | None = None
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, json=payload, timeout=timeout)
            status = response.status_code
            if response.is_success:
                return Delivery(True, attempt, status)
            error = f"HTTP {status}"
            if status not in RETRY_STATUS:
                return Delivery(False, attempt, status, error)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if attempt < attempts:
            sleep(backoff * 2 ** (attempt - 1))
    return Delivery(False, attempts, status, error)
