"""Secrets never reach the logs: credentials in a request's query string are masked in the access log.

Keys belong in the ``X-API-Key`` header, but a client may still put one in the URL (``?api_key=...``);
uvicorn would then write it verbatim to the access log, even for a refused request.
"""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access[_-]?token|password|secret)=)[^&#\s]*")


def redact_query(text: str) -> str:
    """``text`` with the values of credential-like query parameters replaced by ``***``.

    Examples
    --------
    >>> redact_query("/v1/model?api_key=lsk_abc&reasons=3")
    '/v1/model?api_key=***&reasons=3'
    """
    return SECRET_PARAMS.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    """Masks credential query parameters in the arguments of uvicorn's access-log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query(a) if isinstance(a, str) else a for a in record.args)
        return True


def install() -> None:
    """Add the filter to uvicorn's access logger (idempotent)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in access.filters):
        access.addFilter(RedactSecrets())
