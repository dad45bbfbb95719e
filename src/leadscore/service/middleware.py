"""Pure ASGI middleware: request ids, request metrics, the request-body size limit, and draining."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadscore.service.metrics import ServiceMetrics

log = logging.getLogger("leadscore.service")

REQUEST_ID_HEADER = "x-request-id"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
ERROR_KINDS = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
               422: "validation", 429: "rate_limited", 503: "unavailable"}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _endpoint(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The route's path template (bounded label values), also for requests answered before routing."""
    route = scope.get("route")
    if route is None:  # answered before routing (413), or no route matched
        route = next((r for r in routes if r.matches(scope)[0] is not Match.NONE), None)
    return str(getattr(route, "path", "unmatched"))


class Draining:
    """Becomes set when the process is asked to stop (SIGTERM/SIGINT); the server's handler still runs.

    uvicorn closes idle keep-alive connections when it starts a graceful shutdown, but a connection
    accepted in the same instant can escape that and keep being served until the graceful-shutdown
    timeout. Once draining, every response says ``Connection: close``, so no connection outlives its
    next response.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def install(self) -> None:
        """Chain onto the current handlers (only possible in the main thread, where uvicorn runs)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            previous = signal.getsignal(sig)
            if callable(previous):
                self._previous[sig] = previous
                signal.signal(sig, self._handle)

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        if not self.event.is_set():
            log.info("worker %d is draining: each response now closes its connection", os.getpid())
        self.event.set()
        self._previous[sig](sig, frame)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, previous)
        self._previous.clear()


class RequestContext:
    """Give each request an id (``X-Request-ID``, the client's if well-formed), time it and count it;
    while draining, close each connection after its response."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: Sequence[BaseRoute],
                 draining: Draining) -> None:
        self.app, self.metrics, self.routes, self.draining = app, metrics, routes, draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = sent if sent and _CLIENT_ID.match(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (REQUEST_ID_HEADER.encode(), request_id.encode())]
                if self.draining.event.is_set():
                    message["headers"].append((b"connection", b"close"))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            endpoint = _endpoint(scope, self.routes)
            self.metrics.observe_request(endpoint, scope["method"], status, time.perf_counter() - started)
            if status >= 400:
                self.metrics.errors.labels(endpoint, ERROR_KINDS.get(status, "internal" if status >= 500
                                                                     else "client")).inc()


class BodyLimit:
    """Answer 413 to request bodies over ``limit`` bytes, before anything parses them.

    A ``Content-Length`` over the limit is refused without reading; bodies without one (chunked) are
    counted as they arrive and refused as soon as they pass the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    def _message(self) -> str:
        return f"request body too large: expected at most {self.limit} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            body = json.dumps({"detail": self._message() if declared.isdigit() else
                               "invalid Content-Length header",
                               "request_id": scope.get("state", {}).get("request_id")}).encode()
            await send({"type": "http.response.start", "status": 413 if declared.isdigit() else 400,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, self._message(), headers={"Connection": "close"})
            return message

        await self.app(scope, counting_receive, send)
