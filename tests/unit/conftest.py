"""Unit-test fixtures for the trace database and the Ollama emulator.

``db_url`` is parametrized over a SQLite file and a real PostgreSQL database (a
throwaway server started once per session from Debian's package, see ``tests/unit/pgserver.py``);
``trace_store`` is a :class:`TraceStore` on it. Missing PostgreSQL binaries fail the
PostgreSQL cases with an install hint; they are never skipped.

``emu`` is an Ollama emulator (fast test profile, ``tiny:1b`` loaded; a test module that
needs another profile defines its own ``emu``); ``http`` and ``client`` talk to it with
httpx and the ``ollama`` client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from pgserver import PgServer, PgUnavailable

from herd.sim import RunningEmulator, start_emulator
from herd.sim.testing import fast_profile
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


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    emulator = await start_emulator(fast_profile(preload=["tiny:1b"]))
    yield emulator
    await emulator.stop()


@pytest.fixture
async def http(emu: RunningEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.url, timeout=10) as h:
        yield h


@pytest.fixture
async def client(emu: RunningEmulator) -> AsyncIterator[ollama.AsyncClient]:
    c = ollama.AsyncClient(host=emu.url)
    yield c
    await c.close()
