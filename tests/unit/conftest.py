"""Unit-test fixtures for the trace database.

``db_url`` is parametrized over a SQLite file and a real PostgreSQL database (a
throwaway server started once per session from Debian's package, see ``tests/unit/pgserver.py``);
``trace_store`` is a :class:`TraceStore` on it. Missing PostgreSQL binaries fail the
PostgreSQL cases with an install hint; they are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver import PgServer, PgUnavailable

from herd.traces.store import TraceStore


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = PgServer().start()
    except PgUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'herd.db'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.create_database()


@pytest.fixture
def trace_store(db_url: str) -> Iterator[TraceStore]:
    store = TraceStore(db_url)
    yield store
    store.close()
