"""The real-time scoring service: the FastAPI app (``create_app(settings)``), its routes, request and
response models, API keys, rate limits, metrics and errors, the served model and its hot switches,
experiments and retraining jobs as the service runs them, the ``leadscore serve`` runner, and the
dashboard (``service.dashboard``)."""

from __future__ import annotations

from leadscore.service.settings import ServiceSettings

__all__ = ["ServiceSettings"]
