"""The ML insights dashboard: ``GET /dashboard`` (one page, its script and styles under
``/dashboard/static/``), the sign-in and sign-out forms, and the JSON endpoints only it needs.

Signing in checks the key with the service's :class:`~leadscore.service.auth.KeyStore` and keeps it in an
HttpOnly, SameSite=Strict cookie (Secure over https), which :func:`~leadscore.service.routes.require`
accepts when the ``X-API-Key`` header is absent: the page's ``fetch`` calls reach the JSON API with the
same roles, rates and answers as any client. The key never appears in a URL, a page or a log line.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from leadscore.monitoring.exposition import load_states
from leadscore.service.auth import ApiKey, SlowHashThrottled
from leadscore.service.dashboard import cache, panels
from leadscore.service.dashboard.cache import PanelCache
from leadscore.service.errors import request_id
from leadscore.service.holder import ServedModel
from leadscore.service.ratelimit import retry_after
from leadscore.service.responses import (
    DashboardExperiments,
    DashboardModel,
    DriftOverTime,
    LeadHistory,
    MonitoringSummary,
    PerformanceOverTime,
    ScoreSummary,
    SegmentSummary,
    WhoAmI,
)
from leadscore.service.routes import SESSION_COOKIE, error_responses, scorer_key, served_model, service
from leadscore.service.state import Service

log = logging.getLogger("leadscore.service")
router = APIRouter()
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# nothing but this server: scripts, styles, data and images
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
          "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": POLICY, "Cache-Control": "no-store",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
days_query = Query(cache.DAYS, ge=1, le=365, description="look back this many days")
weeks_query = Query(cache.WEEKS, ge=1, le=104, description="look back this many weeks")
all_query = Query(False, description="every version's weeks, not only the served version's")
drift_weeks_query = Query(cache.DRIFT_WEEKS, ge=1, le=52, description="look back this many weeks")
segment_days_query = Query(cache.SEGMENT_DAYS, ge=1, le=365,
                           description="cluster the leads scored in this many days")
k_query = Query(None, ge=2, le=12, description="number of segments (default: params.yaml's clusters.k)")


def _static(name: str) -> str:
    return resources.files("leadscore.service.dashboard").joinpath("static", name).read_text(encoding="utf-8")


def _sign_in(message: str = "", status: int = 200) -> HTMLResponse:
    page = _static("signin.html").replace("{message}", html.escape(message))
    return HTMLResponse(page, status_code=status, headers=HEADERS)


def _session_key(request: Request) -> ApiKey | None:
    presented = request.cookies.get(SESSION_COOKIE)
    try:
        return service(request).keys.lookup(presented, request.client.host if request.client else "")
    except SlowHashThrottled:
        return None


@router.get("/dashboard", include_in_schema=False)
def dashboard(request: Request) -> Response:
    """The dashboard for a signed-in browser, else the sign-in form."""
    if _session_key(request) is None:
        return _sign_in()
    return HTMLResponse(_static("dashboard.html"), headers=HEADERS)


@router.get("/dashboard/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    """The page's script and styles (no other file is served)."""
    if name not in STATIC:
        raise HTTPException(404, f"no dashboard file {name!r}")
    return Response(_static(name), media_type=STATIC[name], headers={"Cache-Control": "no-cache",
                                                                      "X-Content-Type-Options": "nosniff"})


async def _form_key(request: Request) -> str:
    """The ``key`` field of a url-encoded form (read here: no multipart parser is needed)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        return (parse_qs(body, max_num_fields=10).get("key") or [""])[0].strip()
    except ValueError:  # too many fields: not our form
        return ""


@router.post("/dashboard/session", include_in_schema=False)
async def sign_in(request: Request) -> Response:
    """Check the key and keep it in the session cookie; the form again (401) when it is wrong."""
    key = await _form_key(request)
    try:
        found = service(request).keys.lookup(key, request.client.host if request.client else "")
    except SlowHashThrottled as exc:
        page = _sign_in(str(exc), 429)
        page.headers["Retry-After"] = retry_after(exc.wait)
        return page
    if found is None:
        log.info("request %s: dashboard sign-in with an unknown API key", request_id(request))
        return _sign_in("That API key is not valid.", 401)
    log.info("key %s signed in to the dashboard", found.name)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(SESSION_COOKIE, key, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


@router.post("/dashboard/logout", include_in_schema=False)
def sign_out(request: Request) -> Response:
    """Forget the session cookie."""
    response = RedirectResponse("/dashboard", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


@router.get("/v1/dashboard/whoami", response_model=WhoAmI, tags=["dashboard"],
            responses=error_responses(401, 403, 429))
def whoami(key: ApiKey = scorer_key) -> WhoAmI:
    """The name and role of the key making the request."""
    return WhoAmI(name=key.name, role=key.role)


@router.get("/v1/dashboard/model", response_model=DashboardModel, tags=["dashboard"],
            responses=error_responses(401, 403, 429, 503))
def model_panel(request: Request, key: ApiKey = scorer_key) -> DashboardModel:
    """The served model: version, training window, precision, recall, F1, ROC-AUC and accuracy on the
    test set (None where the metadata lacks them) and its ten most important features."""
    return panels.model_summary(_served(service(request)))


@router.get("/v1/dashboard/scores", response_model=ScoreSummary, tags=["dashboard"],
            responses=error_responses(401, 403, 429, 503))
def scores_panel(request: Request, days: int = days_query, key: ApiKey = scorer_key) -> ScoreSummary:
    """Score histogram and tier counts of the leads served in the last `days` days (newest 50,000 at most;
    a challenger's shadow scores excluded). Fresh for 30 s (see the performance panel)."""
    found: ScoreSummary = _cached(request, *cache.scores_job(service(request), days))
    return found


@router.get("/v1/leads/{lead_id}/scores", response_model=LeadHistory, tags=["dashboard"],
            responses=error_responses(401, 403, 404, 429, 503))
def lead_scores(request: Request, lead_id: str = Path(min_length=1, max_length=200),
                key: ApiKey = scorer_key) -> LeadHistory:
    """A lead's latest score with its reasons and its score history, newest first (shadow scores
    excluded); 404 when the lead was never scored."""
    predlog = service(request).predlog
    found = panels.lead_history(predlog.engine, predlog.table, lead_id)
    if found is None:
        raise HTTPException(404, f"no scores logged for lead {lead_id!r}")
    return found


def _served(svc: Service) -> ServedModel:
    """The served model, after following a switch made elsewhere (a training job, another worker's
    activation) at once rather than at the next poll: the page reloads its panels right after one."""
    svc.holder.refresh()
    return served_model(svc)


def _cached(request: Request, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """The panel's kept answer (the app's :class:`~leadscore.service.dashboard.cache.PanelCache`); 503
    when the log cannot be read."""
    kept: PanelCache = request.app.state.panel_cache
    try:
        return kept.get(key, compute)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("cannot read the prediction log: %s", str(getattr(exc, "orig", exc)).strip())
        raise HTTPException(503, "the prediction log cannot be read") from None


@router.get("/v1/dashboard/performance", response_model=PerformanceOverTime, tags=["dashboard"],
            responses=error_responses(401, 403, 429, 503))
def performance_panel(request: Request, weeks: int = weeks_query, all_versions: bool = all_query,
                      key: ApiKey = scorer_key) -> PerformanceOverTime:
    """Per week of scoring over the last `weeks` weeks: leads scored by the served version (every version
    with `all_versions`), those whose label matured (the model's label window), their realized conversion
    and ROC-AUC (when enough are labelled), for weeks with open leads the estimated conversion and ROC-AUC
    with 95% intervals (calibrated probabilities, conversion delays of matured leads), with the registry's
    activations, rollbacks, gate decisions and retrain cycles of that range. An answer is fresh for 30 s;
    for 15 minutes more it is answered at once while the next one is computed (`computed_at` says when
    it was)."""
    svc = service(request)
    job = cache.performance_job(svc, _served(svc), weeks, all_versions)
    found: PerformanceOverTime = _cached(request, *job)
    return found


@router.get("/v1/dashboard/drift", response_model=DriftOverTime, tags=["dashboard"],
            responses=error_responses(401, 403, 429, 503))
def drift_panel(request: Request, weeks: int = drift_weeks_query, key: ApiKey = scorer_key) -> DriftOverTime:
    """PSI against the training profile per feature and week of the leads the served version scored in
    the last `weeks` weeks (the newest 20,000 at most), the score's own drift first, then the 15 most
    drifted features; states as `leadscore monitor check` judges them. Kept as the performance panel."""
    svc = service(request)
    found: DriftOverTime = _cached(request, *cache.drift_job(svc, _served(svc), weeks))
    return found


@router.get("/v1/dashboard/segments", response_model=SegmentSummary, tags=["dashboard"],
            responses=error_responses(401, 403, 429, 503))
def segments_panel(request: Request, days: int = segment_days_query, k: int | None = k_query,
                   key: ApiKey = scorer_key) -> SegmentSummary:
    """k-means segments of the leads the served version scored in the last `days` days (each lead's newest
    score; the newest 5,000 leads at most): size, realized conversion of those whose label matured, mean
    predicted probability, defining traits, and up to 600 leads placed on the first two principal
    components for a scatter. Kept as the performance panel."""
    svc = service(request)
    found: SegmentSummary = _cached(request, *cache.segments_job(svc, _served(svc), days,
                                                            k or svc.params.clusters_k))
    return found


@router.get("/v1/dashboard/experiments", response_model=DashboardExperiments, tags=["dashboard"],
            responses=error_responses(401, 403, 429, 503))
def experiments_panel(request: Request, key: ApiKey = scorer_key) -> DashboardExperiments:
    """The three newest experiments, each with its analysis as `GET /v1/experiments/{name}/results` gives
    it (conversion per arm with intervals, the tests, the recommendation). Kept as the performance panel;
    the results endpoint itself is computed on every call."""
    found: DashboardExperiments = _cached(request, *cache.experiments_job(service(request)))
    return found


@router.get("/v1/dashboard/monitoring", response_model=MonitoringSummary, tags=["dashboard"],
            responses=error_responses(401, 403, 429, 503))
def monitoring_panel(request: Request, key: ApiKey = scorer_key) -> MonitoringSummary:
    """The states `leadscore monitor check` last saved in the store, grouped: PSI and state per feature,
    score drift, realized and estimated performance, and when they were checked (None before any)."""
    try:
        states, checked_at = load_states(service(request).predlog.engine)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("cannot read the monitoring states: %s", str(getattr(exc, "orig", exc)).strip())
        raise HTTPException(503, "the monitoring states cannot be read") from None
    return panels.monitoring_summary(states, checked_at)
