"""Fixtures shared by the service tests: two fitted bundles (per test module), a registry with the first
active, the service's settings over it, and a TestClient of the app (started and stopped with the test).
A module needing other settings overrides ``settings`` on top of this one."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import fit_bundles, make_registry, write_keys

from leadscore.artifacts.registry import Registry
from leadscore.service.app import create_app
from leadscore.service.settings import ServiceSettings

with warnings.catch_warnings():  # starlette asks for httpx2, which is not installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Logistic v1 and LightGBM v2 (with ``employees``): see :func:`service_support.fit_bundles`."""
    return fit_bundles(tmp_path_factory.mktemp("bundles"))


@pytest.fixture
def registry(tmp_path: Path, bundles: tuple[Path, Path]) -> tuple[Registry, str, str]:
    """The registry, its active version v1 and the inactive v2."""
    return make_registry(tmp_path / "registry", bundles)


@pytest.fixture
def settings(tmp_path: Path, registry: tuple[Registry, str, str]) -> ServiceSettings:
    return ServiceSettings(registry=registry[0].root, keys_file=write_keys(tmp_path / "keys.yaml"),
                           poll_interval=0.1, log_flush_interval=0.05)


@pytest.fixture
def client(settings: ServiceSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
