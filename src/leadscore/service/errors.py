"""Error responses: ``{"detail": ..., "request_id": ...}`` for every error, never a traceback.

Validation errors list ``loc``, ``msg`` and ``type`` per field (the input is not echoed). Errors leadscore
raises on purpose map to status codes by kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from leadscore.core.exceptions import (
    ConfigError,
    DataValidationError,
    ExperimentNotFoundError,
    ExperimentStateError,
    LeadscoreError,
    ModelIntegrityError,
    ModelNotFoundError,
    StoreError,
)

STATUS_BY_ERROR: tuple[tuple[type[LeadscoreError], int], ...] = (
    (DataValidationError, 422), (ModelNotFoundError, 404), (ModelIntegrityError, 409), (StoreError, 503),
    (ConfigError, 400), (ExperimentNotFoundError, 404), (ExperimentStateError, 409))


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(request: Request, status: int, detail: Any,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "request_id": request_id(request)}, status_code=status,
                        headers=dict(headers) if headers else None)


def validation_detail(errors: Any, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """pydantic errors as ``{"loc", "msg", "type"}``, ``loc`` starting with ``prefix``."""
    return [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(request, exc.status_code, exc.detail, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(request, 422, validation_detail(exc.errors()))


async def _leadscore_error(request: Request, exc: Exception) -> Response:
    status = next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), 400)
    return error_response(request, status, str(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(LeadscoreError, _leadscore_error)
