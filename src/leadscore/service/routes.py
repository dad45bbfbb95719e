"""The endpoints. Each is thin: a dependency checks the key, its role and its rate; the work is done by
:class:`~leadscore.service.state.Service` (scoring, logs) and the registry."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from leadscore.core.exceptions import ConfigError, ModelNotFoundError
from leadscore.service.auth import HEADER, ApiKey, Role, SlowHashThrottled
from leadscore.service.errors import error_response, request_id, validation_detail
from leadscore.service.holder import ServedModel
from leadscore.service.metrics import CONTENT_TYPE
from leadscore.service.ratelimit import retry_after
from leadscore.service.requests import OutcomeRequest
from leadscore.service.responses import (
    BatchResponse,
    ErrorResponse,
    ModelInfo,
    OutcomeResponse,
    ScoreResponse,
    Status,
    SwitchResponse,
    TrainJob,
    VersionEntry,
    VersionsResponse,
)
from leadscore.service.settings import MAX_REASONS
from leadscore.service.state import Service
from leadscore.service.train_jobs import TrainJobRunning, UnknownTrainJob

log = logging.getLogger("leadscore.service")
router = APIRouter()
SESSION_COOKIE = "leadscore_session"  # the dashboard's cookie: the key it was signed in with
api_key = APIKeyHeader(name=HEADER, auto_error=False, description="an API key from the keys file")
reasons_query = Query(None, ge=0, le=MAX_REASONS,
                      description="reasons per side (positive and negative); default: the server's (3)")
experiment_query = Query(None, min_length=1, max_length=64,
                         description="a running experiment: the lead gets its arm (sticky) and the answer "
                                     "carries that arm's score under `experiment`")


def _body(name: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def require(role: Role) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: 401 without a valid key, 403 for the wrong role, 429 over the key's rate.

    The key comes from the header or, when the header is absent, from the dashboard's session cookie.
    """
    async def check(request: Request, presented: str | None = Security(api_key)) -> ApiKey:
        svc = service(request)
        presented = presented or request.cookies.get(SESSION_COOKIE)
        if not presented:
            raise HTTPException(401, f"missing API key: send it in the {HEADER} header",
                                headers={"WWW-Authenticate": "ApiKey"})
        try:
            key = svc.keys.lookup(presented, request.client.host if request.client else "")
        except SlowHashThrottled as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": retry_after(exc.wait)}) from exc
        if key is None:
            log.info("request %s: unknown API key", request_id(request))
            raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "ApiKey"})
        if not key.allows(role):
            raise HTTPException(403, f"API key '{key.name}' has role '{key.role}'; this needs '{role}'")
        settings = svc.settings
        rate = settings.rate_limit if key.rate_limit is None else key.rate_limit
        wait = svc.buckets.take(key.name, rate, settings.burst if key.rate_limit is None else max(1.0, rate))
        if wait:
            raise HTTPException(429, f"rate limit of {rate:g} requests/s for API key '{key.name}' exceeded",
                                headers={"Retry-After": retry_after(wait)})
        return key

    return check


scorer_key, admin_key = Depends(require("scorer")), Depends(require("admin"))


def served_model(svc: Service) -> ServedModel:
    served = svc.holder.current  # read once: the whole request uses this version
    if served is None:
        raise HTTPException(503, f"no model loaded: {svc.holder.last_error or 'starting'}")
    return served


async def parse(request: Request, model: type[BaseModel]) -> BaseModel:
    """The body validated against ``model`` straight from JSON; 422 with field-level messages."""
    body = await request.body()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(validation_detail(exc.errors(include_url=False), ("body",))) from None


@router.post("/v1/score", response_model=ScoreResponse, openapi_extra=_body("Lead"), tags=["scoring"],
             responses=error_responses(401, 403, 404, 409, 413, 422, 429, 503))
async def score_one(request: Request, reasons: int | None = reasons_query,
                    experiment: str | None = experiment_query, key: ApiKey = scorer_key) -> Response:
    """Score one lead (raw CRM fields) with the active model."""
    svc = service(request)
    served = served_model(svc)
    lead = await parse(request, served.models.lead)
    rid = str(request_id(request))
    k = svc.settings.default_reasons if reasons is None else reasons
    results = await svc.score(served, [lead], k, rid, batch=False, experiment=experiment)
    return JSONResponse({**results[0], "request_id": rid})


@router.post("/v1/score/batch", response_model=BatchResponse, openapi_extra=_body("ScoreBatchRequest"),
             tags=["scoring"], responses=error_responses(401, 403, 404, 409, 413, 422, 429, 503))
async def score_batch(request: Request, reasons: int | None = reasons_query,
                      experiment: str | None = experiment_query, key: ApiKey = scorer_key) -> Response:
    """Score up to the batch limit of leads together, all with one model version."""
    svc = service(request)
    served = served_model(svc)
    batch = await parse(request, served.models.batch)
    rid = str(request_id(request))
    k = svc.settings.default_reasons if reasons is None else reasons
    results = await svc.score(served, list(batch.leads), k, rid, batch=True,  # type: ignore[attr-defined]
                              experiment=experiment)
    return JSONResponse({"request_id": rid, "model_version": served.version, "count": len(results),
                         "results": results})


@router.get("/v1/model", response_model=ModelInfo, tags=["model"],
            responses=error_responses(401, 403, 429, 503))
def model_info(request: Request, key: ApiKey = scorer_key) -> ModelInfo:
    """The model being served: version, metadata and test metrics."""
    svc = service(request)
    served = served_model(svc)
    meta = served.scorer.bundle.metadata
    return ModelInfo(
        version=served.version, active_in_registry=svc.registry.active_version(), loaded_at=served.loaded_at,
        model=meta.get("model"), created_at=meta.get("created_at"), metrics=meta.get("test_metrics") or {},
        threshold=meta.get("threshold"),
        tiers=[{"name": t.name, "min_probability": t.min_probability, "action": t.action}
               for t in served.scorer.tiers],
        features=served.scorer.schema.describe_columns(),  # type: ignore[arg-type]
        metadata=json.loads(json.dumps(meta, default=str)))


@router.get("/v1/model/versions", response_model=VersionsResponse, tags=["model"],
            responses=error_responses(401, 403, 429))
def model_versions(request: Request, key: ApiKey = scorer_key) -> VersionsResponse:
    """Every registered version, newest first."""
    svc = service(request)
    svc.holder.refresh()  # a switch made elsewhere (a training job, another worker): follow it now
    serving = svc.holder.current.version if svc.holder.current else None
    infos = svc.registry.versions()
    return VersionsResponse(
        active=next((i.version for i in infos if i.active), None), serving=serving,
        versions=[VersionEntry(version=i.version, created_at=i.created_at, model=i.model, metrics=i.metrics,
                               sha256=i.sha256, active=i.active, serving=i.version == serving)
                  for i in infos])


@router.post("/v1/model/activate/{version}", response_model=SwitchResponse, tags=["model"],
             responses=error_responses(401, 403, 404, 409, 429))
def activate(version: str, request: Request, key: ApiKey = admin_key) -> SwitchResponse:
    """Verify and load a version, make it active in the registry and serve it (admin)."""
    new, previous = service(request).holder.activate(version)
    log.info("key %s activated model %s (was %s)", key.name, new, previous)
    return SwitchResponse(active=new, previous=previous)


@router.post("/v1/model/rollback", response_model=SwitchResponse, tags=["model"],
             responses=error_responses(401, 403, 409, 429))
def rollback(request: Request, key: ApiKey = admin_key) -> Response | SwitchResponse:
    """Re-activate the previously active version (admin)."""
    try:
        new, previous = service(request).holder.rollback()
    except ModelNotFoundError as exc:
        return error_response(request, 409, str(exc))
    log.info("key %s rolled back to model %s (was %s)", key.name, new, previous)
    return SwitchResponse(active=new, previous=previous)


@router.post("/v1/model/train", response_model=TrainJob, status_code=202, tags=["model"],
             responses=error_responses(401, 403, 409, 429))
def train(request: Request, key: ApiKey = admin_key) -> Response:
    """Start a retraining job in the background (admin): the same cycle as `leadscore retrain --crm`
    (train on the refreshed CRM data, gate, activate only what passes). One job at a time; 409 while
    one runs or when the server was started without `--train-crm`."""
    try:
        job = service(request).train_jobs.start()
    except TrainJobRunning as exc:
        return error_response(request, 409, str(exc))
    except ConfigError as exc:  # not configured: the request cannot be served in this state
        return error_response(request, 409, str(exc))
    log.info("key %s started training job %s", key.name, job["job"])
    return JSONResponse(TrainJob(**job).model_dump(), status_code=202)


@router.get("/v1/model/train/{job}", response_model=TrainJob, tags=["model"],
            responses=error_responses(401, 403, 404, 429))
def train_status(job: str, request: Request, key: ApiKey = admin_key) -> Response:
    """A training job's state, its result once finished, and the last lines of its output (admin)."""
    try:
        state = service(request).train_jobs.get(job)
    except UnknownTrainJob as exc:
        return error_response(request, 404, str(exc))
    return JSONResponse(TrainJob(**state).model_dump())


@router.post("/v1/outcomes", response_model=OutcomeResponse, tags=["outcomes"],
             responses=error_responses(401, 403, 413, 429, 503))
def outcomes(outcome: OutcomeRequest, request: Request, key: ApiKey = scorer_key) -> OutcomeResponse:
    """Record what became of a lead; sending it again replaces the earlier record."""
    row = service(request).outcomes.record(str(outcome.lead_id), outcome.converted, outcome.converted_at)
    return OutcomeResponse(**row)


@router.get("/health", response_model=Status, tags=["operations"])
def health() -> Status:
    """Liveness: the process answers."""
    return Status(status="ok")


@router.get("/ready", response_model=Status, tags=["operations"], responses={503: {"model": Status}})
def ready(request: Request) -> Response:
    """Readiness: a verified model is loaded."""
    holder = service(request).holder
    served = holder.current
    if served is None:
        status = Status(status="not ready", detail=holder.last_error or "starting")
        return JSONResponse(status.model_dump(), status_code=503)
    return JSONResponse(Status(status="ready", model_version=served.version).model_dump())


@router.get("/metrics", tags=["operations"], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics of every worker process."""
    return Response(service(request).metrics.render(), media_type=CONTENT_TYPE)
