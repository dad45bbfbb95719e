"""Settings of the scoring service: one frozen dataclass, passed to :func:`create_app` or, for uvicorn
worker processes, through one environment variable holding it as JSON."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from leadscore.artifacts.paths import LOG_TABLE, PREDICTION_LOG_FILE, default_store_url
from leadscore.core.exceptions import ConfigError

ENV_SETTINGS = "LEADSCORE_SERVICE_SETTINGS"
DEFAULT_LOG_FILE = PREDICTION_LOG_FILE
JOURNAL_FOLDER = "prediction-journal"
MAX_REASONS = 20


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")


def _non_negative(name: str, value: object, *, allow_zero: bool = True) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} number, "
                          f"got {value!r}")


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the service needs; defaults fit one machine.

    Parameters
    ----------
    registry : the model registry folder (its active version is served).
    keys_file : YAML or JSON file of hashed API keys (see :mod:`leadscore.service.auth`); required.
    batch_limit : most leads in one ``POST /v1/score/batch`` request.
    max_body_bytes : larger request bodies get 413, checked before parsing.
    rate_limit : requests per second per API key (token bucket); 0 = unlimited.
    rate_burst : bucket size (requests); default ``max(1, rate_limit)``.
    log_url : prediction log database (SQLAlchemy URL or SQLite path); default ``predictions.db``
        next to the registry folder.
    log_table, outcomes_table : table names in that database.
    poll_interval : seconds between checks of the registry's active pointer.
    state_dir : folder shared by the worker processes of one server (rate-limit buckets); None keeps
        the buckets in the process.
    log_batch_size, log_flush_interval, log_max_queue : prediction-log writer: rows per insert, seconds
        between flushes, most rows waiting (beyond it scoring answers 503 rather than lose a row).
    default_reasons : reasons per side when a request does not say.
    journal_dir : the local journal every prediction is synced to before it is answered; default
        ``prediction-journal/<destination>/`` next to the registry folder, one folder per log database
        and table (a server adopts only the journals of its own destination).
    train_crm, train_params : the CRM tables (and settings file) ``POST /v1/model/train`` retrains on;
        without ``train_crm`` that endpoint answers 503.
    crm_url, crm_map : the CRM database ``POST /v1/leads/{lead_id}/score`` reads leads from (and writes
        scores back to), and the mapping of its tables (default: the demo schema); without ``crm_url``
        that endpoint answers 409.
    crm_as_of : score leads by id as of this fixed instant (ISO 8601) instead of now (a demo extract).
    crm_scores_table, crm_write_back : the CRM's current-score table, and whether to write to it.
    warm_dashboard : compute the dashboard's heavy panels in the background (at start, for each new
        served version, and before a kept answer expires) so opening the page does not wait for them.
    """

    registry: Path = Path("registry")
    keys_file: Path | None = None
    batch_limit: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    rate_limit: float = 50.0
    rate_burst: float | None = None
    log_url: str | None = None
    log_table: str = LOG_TABLE
    outcomes_table: str = "outcomes"
    poll_interval: float = 0.5
    state_dir: Path | None = None
    log_batch_size: int = 500
    log_flush_interval: float = 0.2
    log_max_queue: int = 200_000
    default_reasons: int = 3
    journal_dir: Path | None = None
    train_crm: Path | None = None
    train_params: Path | None = None
    warm_dashboard: bool = False
    crm_url: str | None = None
    crm_map: Path | None = None
    crm_as_of: str | None = None
    crm_scores_table: str = "lead_scores"
    crm_write_back: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "registry", Path(self.registry))
        for name in ("keys_file", "state_dir", "journal_dir", "train_crm", "train_params", "crm_map"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        for name in ("batch_limit", "max_body_bytes", "log_batch_size", "log_max_queue"):
            _positive_int(name, getattr(self, name))
        _non_negative("rate_limit", self.rate_limit)
        if self.rate_burst is not None:
            _non_negative("rate_burst", self.rate_burst, allow_zero=False)
        _non_negative("poll_interval", self.poll_interval, allow_zero=False)
        _non_negative("log_flush_interval", self.log_flush_interval, allow_zero=False)
        if isinstance(self.default_reasons, bool) or not isinstance(self.default_reasons, int) \
                or not 0 <= self.default_reasons <= MAX_REASONS:
            raise ConfigError(f"default_reasons: expected an integer from 0 to {MAX_REASONS}, "
                              f"got {self.default_reasons!r}")
        for name in ("log_table", "outcomes_table"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.replace("_", "").replace(".", "").isalnum():
                raise ConfigError(f"{name}: expected a table name of letters, digits, '_' and '.', "
                                  f"got {value!r}")

    @property
    def burst(self) -> float:
        """Token-bucket size in requests."""
        return self.rate_burst if self.rate_burst is not None else max(1.0, float(self.rate_limit))

    @property
    def prediction_log_url(self) -> str:
        """``log_url``, or the SQLite file ``predictions.db`` next to the registry folder."""
        if self.log_url:
            return self.log_url
        return default_store_url(self.registry)

    @property
    def prediction_journal(self) -> Path:
        """``journal_dir``, or a folder named after the log database and table next to the registry."""
        if self.journal_dir is not None:
            return self.journal_dir
        destination = hashlib.sha256(f"{self.prediction_log_url}\n{self.log_table}".encode()).hexdigest()
        return self.registry.resolve().parent / JOURNAL_FOLDER / destination[:16]

    def to_json(self) -> str:
        """The settings as JSON text (paths as strings)."""
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> ServiceSettings:
        """Settings from :meth:`to_json` output; unknown keys are a :class:`ConfigError`."""
        try:
            raw: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"service settings: expected a JSON object, got invalid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"service settings: expected a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"service settings: unknown key(s) {', '.join(unknown)}")
        return cls(**raw)

    @classmethod
    def from_env(cls) -> ServiceSettings:
        """Settings from ``$LEADSCORE_SERVICE_SETTINGS`` (set by ``leadscore serve`` for its workers)."""
        text = os.environ.get(ENV_SETTINGS)
        if not text:
            raise ConfigError(f"${ENV_SETTINGS} is not set: start the service with `leadscore serve`")
        return cls.from_json(text)
