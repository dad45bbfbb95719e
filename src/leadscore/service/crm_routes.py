"""``POST /v1/leads/{lead_id}/score``: score a lead by its id, from the CRM database the server reads
(``leadscore serve --crm URL``), and write the score back onto the lead."""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, ValidationError

from leadscore.core.exceptions import MappingError, StoreError
from leadscore.service.crm_leads import UnknownLead
from leadscore.service.errors import error_response, request_id
from leadscore.service.responses import ScoreResponse
from leadscore.service.routes import (
    error_responses,
    experiment_query,
    reasons_query,
    scorer_key,
    served_model,
    service,
)

log = logging.getLogger("leadscore.service")
router = APIRouter()


class LeadScoreResponse(ScoreResponse):
    """The score of a lead read from the CRM database, written back onto it."""

    note: str | None = Field(None, description="why this score is not an ordinary prediction: the lead "
                                               "already converted, or its label window closed")
    written_back: bool = Field(description="the score is in the CRM's current-score table (and mapped "
                                           "lead columns)")


@router.post("/v1/leads/{lead_id}/score", response_model=LeadScoreResponse, tags=["scoring"],
             responses=error_responses(401, 403, 404, 409, 422, 429, 503))
async def score_lead_by_id(request: Request, lead_id: str = Path(min_length=1, max_length=64),
                           reasons: int | None = reasons_query, experiment: str | None = experiment_query,
                           key: object = scorer_key) -> Response:
    """Score one lead by its id: the server reads the lead and its activities from the CRM database,
    builds its features as of now with the training feature code, scores it (reasons, tier, experiment
    arm and shadow challenger as for `/v1/score`), logs it durably, writes it back onto the lead and
    answers. 404: no such lead; a lead that already has an outcome is scored with a `note`."""
    svc = service(request)
    crm = svc.crm
    if crm is None:
        return error_response(request, 409, "this server reads no CRM database: start it with "
                                             "`leadscore serve --crm URL [--crm-map FILE]`")
    served = served_model(svc)
    try:
        row, found = await anyio.to_thread.run_sync(crm.lead, lead_id, served.scorer)
    except UnknownLead as exc:
        return error_response(request, 404, str(exc))
    except MappingError as exc:
        return error_response(request, 422, str(exc))
    try:
        lead = served.models.lead.model_validate({k: v for k, v in row.items() if k in served.models.scored})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        return error_response(request, 422, f"lead {lead_id}'s CRM fields do not fit the served model: "
                                            f"{'.'.join(map(str, first['loc']))}: {first['msg']}")
    rid = str(request_id(request))
    k = svc.settings.default_reasons if reasons is None else reasons
    results = await svc.score(served, [lead], k, rid, batch=False, experiment=experiment)
    answer = {**results[0], "request_id": rid, "note": found.note(lead_id), "written_back": False}
    if crm.writeback is not None:
        try:
            await anyio.to_thread.run_sync(crm.write, results)
        except StoreError as exc:
            log.warning("request %s: lead %s scored and logged, not written back: %s", rid, lead_id, exc)
            return error_response(request, 503, f"lead {lead_id} was scored and logged (request {rid}) but "
                                                f"not written back to the CRM: {exc}")
        answer["written_back"] = True
    return JSONResponse(answer)
