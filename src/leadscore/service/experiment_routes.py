"""The experiment endpoints: create, list, assign, results, stop (thin over
:mod:`leadscore.experiments`). Scoring inside an experiment is ``POST /v1/score?experiment=NAME``."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from leadscore.core.jsonsafe import dumps
from leadscore.experiments.store import RULES, Experiment
from leadscore.service.auth import ApiKey
from leadscore.service.requests import ExperimentRequest
from leadscore.service.responses import Assignment, ExperimentInfo, ExperimentsResponse
from leadscore.service.routes import admin_key, error_responses, scorer_key, service

log = logging.getLogger("leadscore.service")
router = APIRouter(tags=["experiments"])


def _info(experiment: Experiment, assigned: dict[str, int]) -> ExperimentInfo:
    return ExperimentInfo.from_record(experiment, assigned=assigned)


@router.post("/v1/experiments", response_model=ExperimentInfo, status_code=201,
             responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503))
def create_experiment(body: ExperimentRequest, request: Request, key: ApiKey = admin_key) -> Response:
    """Start an A/B experiment (admin): leads join when scored with `?experiment=NAME` or assigned.
    404 when an arm names a version the registry lacks, 409 when the name is taken."""
    svc = service(request)
    params = svc.experiments.params
    settings = params.experiments
    for version in (body.treatment, body.control):
        if version != RULES:
            svc.registry.show(version)  # ModelNotFoundError -> 404
    experiment = svc.experiments.store.create(
        body.name, control=body.control, treatment=body.treatment,
        split=settings.split if body.split is None else body.split,
        window_days=body.window_days or settings.window_days or params.snapshot.label_window_days,
        min_days=settings.min_days if body.min_days is None else body.min_days,
        mde=settings.mde if body.mde is None else body.mde, alpha=settings.alpha,
        description=body.description, rules=params.rules)
    log.info("key %s created experiment %s (%s vs %s)", key.name, experiment.name, experiment.control,
             experiment.treatment)
    info = _info(experiment, {"control": 0, "treatment": 0})
    return JSONResponse(info.model_dump(), status_code=201)


@router.get("/v1/experiments", response_model=ExperimentsResponse,
            responses=error_responses(401, 403, 429, 503))
def list_experiments(request: Request, key: ApiKey = scorer_key) -> ExperimentsResponse:
    """Every experiment, newest first, with its arm sizes."""
    store = service(request).experiments.store
    return ExperimentsResponse(experiments=[_info(e, store.counts(e.name)) for e in store.list_experiments()])


@router.post("/v1/experiments/{name}/assign/{lead_id}", response_model=Assignment,
             responses=error_responses(401, 403, 404, 409, 429, 503))
def assign(name: str, lead_id: str, request: Request, key: ApiKey = scorer_key) -> Assignment:
    """The lead's arm, recorded with its time on the first call (later calls return the same).
    409 when the experiment is stopped."""
    store = service(request).experiments.store
    row = store.assign(store.running(name), lead_id)
    return Assignment(experiment=name, lead_id=row["lead_id"], arm=row["arm"], assigned_at=row["assigned_at"])


@router.get("/v1/experiments/{name}/results", responses={
    **error_responses(401, 403, 404, 429, 503), 200: {"content": {"application/json": {}}}})
def results(name: str, request: Request, key: ApiKey = scorer_key) -> Response:
    """Conversion per arm, lift, the z-test, the always-valid sequential test, sample-ratio check,
    power, CUPED and the recommendation, on the leads whose conversion window has closed (as
    `leadscore experiments results NAME --json`)."""
    svc = service(request)
    return Response(dumps(svc.experiments.results(name, svc.outcomes)), media_type="application/json")


@router.post("/v1/experiments/{name}/stop", response_model=ExperimentInfo,
             responses=error_responses(401, 403, 404, 409, 429, 503))
def stop(name: str, request: Request, reason: str = Query("", max_length=2000, description="why"),
         key: ApiKey = admin_key) -> ExperimentInfo:
    """Stop an experiment (admin): no new leads join; its results stay readable. 409 when stopped."""
    store = service(request).experiments.store
    experiment = store.stop(name, reason)
    log.info("key %s stopped experiment %s", key.name, name)
    return _info(experiment, store.counts(name))
