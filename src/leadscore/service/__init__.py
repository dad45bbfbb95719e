"""The real-time scoring service: ``create_app(settings)`` and the ``leadscore serve`` runner."""

from __future__ import annotations

from leadscore.service.settings import ServiceSettings

__all__ = ["ServiceSettings"]
