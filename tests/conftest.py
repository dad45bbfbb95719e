from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
# pytest-xdist runs two workers on two cores: OpenMP threads that spin while waiting (LightGBM,
# XGBoost) then starve each other, turning a 0.1 s fit into a minute. Passive waiting avoids it;
# it must be set before those libraries are imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
BANK_FULL = REPO.parent / "shared" / "datasets" / "bank-marketing" / "bank-full.csv"


def make_flat_leads(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A messy one-row-per-lead export whose target depends on a few columns."""
    rng = np.random.default_rng(seed)
    budget = rng.lognormal(9, 1, n)
    source = rng.choice(["Web Form", "referral", "Paid Search", "Select", ""], n)
    logit = -2 + 1.2 * (source == "referral") + 0.5 * np.log(budget / 8000) + rng.normal(0, 0.5, n)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({
        "lead_id": [f"A{i:05d}" for i in range(n)],
        "created": pd.date_range("2024-01-01", periods=n, freq="6h").strftime("%Y-%m-%d %H:%M"),
        "source": source,
        "budget": [f"${b:,.0f}" if i % 7 else "N/A" for i, b in enumerate(budget)],
        "email": [f"user{i}@{'gmail.com' if i % 3 else 'acme.com'}" for i in range(n)],
        "notes": [f"free text note number {i} about this particular lead and call" for i in range(n)],
        "region": rng.choice(["West", "west ", "EAST", "unknown"], n),
        "converted": np.where(y, "Yes", "no"),
    })


PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # the server on every machine here


def _reachable(url: str, name: str) -> str:
    """``url`` once a connection works; the test fails (not skips) otherwise: these servers run on every
    machine here, and a database test that quietly skips would prove nothing."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"{name} not reachable at {url}: {str(exc.orig).strip().splitlines()[0]}")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL test database."""
    return _reachable(PG_URL, "PostgreSQL")


@pytest.fixture(scope="session", autouse=True)
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bundles made by the tests are signed with a key of the test session (inherited by every
    subprocess the tests start), never with the user's own key."""
    path = tmp_path_factory.mktemp("signing") / "signing.key"
    os.environ.pop("LEADSCORE_SIGNING_KEY", None)
    os.environ["LEADSCORE_SIGNING_KEY_FILE"] = str(path)
    return path


@pytest.fixture
def flat_leads() -> pd.DataFrame:
    return make_flat_leads()


MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"  # the MariaDB server on every machine here


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """The MariaDB test database."""
    return _reachable(MARIADB_URL, "MariaDB")


def fresh_database(server_url: str):  # -> contextmanager yielding a URL
    """A context manager: a new, empty database on the server of ``server_url`` (PostgreSQL or MariaDB),
    named uniquely (so parallel test workers never collide), dropped on exit."""
    import contextlib
    import uuid

    import sqlalchemy as sa

    @contextlib.contextmanager
    def manage():
        name = f"ls_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        url = sa.make_url(server_url)
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        mysql = url.get_backend_name() in ("mysql", "mariadb")
        create = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4" if mysql else f'CREATE DATABASE "{name}"'
        drop = f"DROP DATABASE IF EXISTS `{name}`" if mysql \
            else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(create))
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(drop))
            admin.dispose()

    return manage()


@pytest.fixture(scope="module")
def fresh_pg_url(pg_url: str):
    """A PostgreSQL database of this test module alone, dropped after it."""
    with fresh_database(pg_url) as url:
        yield url


@pytest.fixture(scope="module")
def fresh_mariadb_url(mariadb_url: str):
    """A MariaDB database of this test module alone, dropped after it."""
    with fresh_database(mariadb_url) as url:
        yield url
