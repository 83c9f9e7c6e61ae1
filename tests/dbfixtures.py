"""Database fixtures shared by the payments and API suites: a fresh, empty database per test.

``db_url`` is parametrised over ``sqlite`` (a new file under ``tmp_path``) and ``postgresql`` (a
new schema ``t_<hex>`` in the ``test`` database, selected through ``search_path`` in the URL,
dropped afterwards). Import it into a conftest::

    from tests.dbfixtures import db_url  # noqa: F401  (pytest fixture)

PostgreSQL is ``postgresql://postgres@127.0.0.1:5432/test`` unless ``PALMPAY_TEST_PG_URL`` says
otherwise (a libpq URL, no driver suffix). When it is unreachable the PostgreSQL variants skip
with the reason, except under ``CI=true``, where they fail: CI must test both backends.
The database is empty: tests run :func:`palmpay.db.upgrade` themselves (or use a fixture that
does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import pytest

__all__ = [
    "db_url",
    "BACKENDS",
    "pg_admin_url",
    "pg_schema_of",
    "pg_dump_data",
    "sqlite_path_of",
    "require_postgres",
]

BACKENDS = ["sqlite", "postgresql"]
_DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> str:
    """libpq URL of the test PostgreSQL database."""
    return os.environ.get("PALMPAY_TEST_PG_URL", _DEFAULT_PG)


@lru_cache(maxsize=1)
def _pg_problem() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per session)."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        return f"psycopg missing: {exc}"
    try:
        with psycopg.connect(pg_admin_url(), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return None


def require_postgres() -> None:
    """Skip (or, with CI=true, fail) the current test when PostgreSQL is unreachable."""
    problem = _pg_problem()
    if problem is None:
        return
    message = f"PostgreSQL at 127.0.0.1:5432 unreachable: {problem}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: the PostgreSQL suites must run)")
    pytest.skip(message)


def _pg_url_for_schema(schema: str) -> str:
    base = pg_admin_url().replace("postgresql://", "postgresql+psycopg://", 1)
    sep = "&" if "?" in base else "?"
    # application_name lets the teardown find (and end) connections a test left open.
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}&application_name={schema}"


def pg_schema_of(url: str) -> str | None:
    """The schema a ``db_url`` PostgreSQL URL selects (None for SQLite)."""
    from urllib.parse import parse_qs, urlsplit

    if not url.startswith("postgresql"):
        return None
    options = parse_qs(urlsplit(url).query).get("options", [""])[0]
    return options.split("search_path=", 1)[1] if "search_path=" in options else None


def sqlite_path_of(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None otherwise)."""
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) else None


def pg_dump_data(url: str) -> str:
    """``pg_dump --data-only`` of the schema a ``db_url`` selects (skips without pg_dump)."""
    schema = pg_schema_of(url)
    if schema is None:
        raise ValueError("not a db_url PostgreSQL URL")
    exe = shutil.which("pg_dump")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("pg_dump not installed (CI=true)")
        pytest.skip("pg_dump not installed")
    out = subprocess.run(
        [exe, "--data-only", f"--schema={schema}", f"--dbname={pg_admin_url()}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out.stdout.decode("utf-8", "replace")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database on each backend (see the module docstring)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'palmpay.db'}"
        return
    require_postgres()
    import psycopg

    schema = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _pg_url_for_schema(schema)
    finally:
        with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
            # A connection a test left open inside a transaction would block the DROP.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (schema,),
            )
            conn.execute("SET lock_timeout = '20s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
