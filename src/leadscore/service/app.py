"""The FastAPI app: real-time scoring of raw leads with the registry's active model.

:func:`create_app` wires the parts together: :class:`~leadscore.service.state.Service` (keys, buckets,
metrics, the served model, the logs), the dashboard's panel cache, the middleware (request ids and
metrics, the body limit), the error handlers and the routes; the lifespan starts and stops the service
and the cache's background threads. The OpenAPI document carries the
request schema generated from the served model and is rebuilt when the served version changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from leadscore import __version__
from leadscore.service import redact
from leadscore.service.crm_routes import router as crm_router
from leadscore.service.dashboard.cache import PanelCache, keep_warm
from leadscore.service.dashboard.routes import router as dashboard_router
from leadscore.service.errors import install_error_handlers
from leadscore.service.experiment_routes import router as experiment_router
from leadscore.service.middleware import BodyLimit, RequestContext
from leadscore.service.orphan import watch_parent
from leadscore.service.routes import router
from leadscore.service.settings import ServiceSettings
from leadscore.service.state import Service

DESCRIPTION = """Scores leads with the registry's active model: the same code and the same numbers as
batch scoring. Send raw CRM fields (see the `Lead` schema, generated from the served model); every
response carries the `model_version` that produced it. Authenticate with the `X-API-Key` header."""


def _request_schemas(svc: Service) -> dict[str, Any]:
    served = svc.holder.current
    if served is None:
        return {"Lead": {"type": "object", "description": "no model loaded yet"},
                "ScoreBatchRequest": {"type": "object", "properties": {
                    "leads": {"type": "array", "items": {"$ref": "#/components/schemas/Lead"}}}}}
    _, generated = models_json_schema(
        [(served.models.lead, "validation"), (served.models.batch, "validation")],
        ref_template="#/components/schemas/{model}")
    return dict(generated["$defs"])


def create_app(settings: ServiceSettings) -> FastAPI:
    """The scoring service for ``settings`` (the model is loaded when the app starts).

    Raises
    ------
    ConfigError
        If no API keys file is given or it is invalid.
    """
    svc = Service.from_settings(settings)
    panel_cache = PanelCache()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(svc.start)
        # here, not in start (a worker thread): signal handlers can only be set from the main thread,
        # where uvicorn runs this coroutine
        svc.draining.install()
        stop = threading.Event()
        warm = threading.Thread(target=keep_warm, args=(svc, panel_cache, stop), name="dashboard-warm",
                                daemon=True)
        if settings.warm_dashboard:
            warm.start()
        try:
            yield
        finally:
            stop.set()
            svc.draining.uninstall()
            if warm.is_alive():
                await run_in_threadpool(warm.join)
            await run_in_threadpool(panel_cache.close)
            await run_in_threadpool(svc.stop)

    app = FastAPI(title="leadscore", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.service = svc
    app.state.panel_cache = panel_cache
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    routes = [*router.routes, *crm_router.routes, *experiment_router.routes, *dashboard_router.routes]
    app.add_middleware(RequestContext, metrics=svc.metrics, routes=routes, draining=svc.draining)
    app.include_router(router)
    app.include_router(crm_router)
    app.include_router(experiment_router)
    app.include_router(dashboard_router)

    def openapi() -> dict[str, Any]:
        version = svc.holder.current.version if svc.holder.current else None
        if app.openapi_schema is None or app.state.openapi_version != version:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_request_schemas(svc))
            app.openapi_schema, app.state.openapi_version = schema, version
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """The app for uvicorn worker processes: settings from ``$LEADSCORE_SERVICE_SETTINGS``.

    leadscore's own log lines (model switches, prediction-log trouble) go to stderr next to uvicorn's,
    tagged with the worker's process id.
    """
    package_log = logging.getLogger("leadscore")
    if not package_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     [%(process)d] %(name)s: %(message)s"))
        package_log.addHandler(handler)
        package_log.setLevel(logging.INFO)
    watch_parent()  # a worker stops when its supervisor is killed
    redact.install()  # no credential from a query string in the access log
    return create_app(ServiceSettings.from_env())
