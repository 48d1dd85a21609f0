"""``/dashboard/events`` bounds over a real server: the interval floor
(FLEET_EVENTS_MIN_INTERVAL, lower values are raised to it) and the cap on concurrent
streams per replica (FLEET_MAX_EVENT_STREAMS, 429 with Retry-After beyond)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from test_dashboard_api import STATUS
from test_dashboard_queries import NOW, SAMPLE

from dashboard.api import STREAMS_RETRY_AFTER_S, build_dashboard_router
from dashboard.fleet import StaticFleet
from dashboard.service import DashboardService
from herd.settings import load_settings
from herd.traces.store import TraceStore


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    store = TraceStore(f"sqlite:///{tmp_path / 'herd.db'}")
    store.write_batch(SAMPLE)
    service = DashboardService(store, StaticFleet(STATUS), clock=lambda: NOW)
    settings = load_settings(events_min_interval=0.5, max_event_streams=2)
    app = FastAPI()
    app.include_router(build_dashboard_router(service, settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            threading.Event().wait(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def first_lines(lines: Iterator[str]) -> tuple[str, str]:
    """The stream's ``retry:`` line and its first ``event:`` line. The caller keeps
    ``lines`` (``response.iter_lines()``) alive: dropping it closes the stream."""
    retry = next(line for line in lines if line)
    event = next(line for line in lines if line.startswith("event:"))
    return retry, event


def test_an_interval_below_the_floor_is_raised_to_it(base: str) -> None:
    with httpx.stream("GET", f"{base}/dashboard/events?interval=0.01", timeout=10) as r:
        assert r.status_code == 200
        assert first_lines(r.iter_lines()) == ("retry: 500", "event: fleet")
    with httpx.stream("GET", f"{base}/dashboard/events?interval=3", timeout=10) as r:
        assert first_lines(r.iter_lines())[0] == "retry: 3000"
    for bad in ("0", "-1", "nan", "61"):
        r = httpx.get(f"{base}/dashboard/events?interval={bad}", timeout=10)
        assert r.status_code == 422, bad


def test_streams_beyond_the_cap_get_429_until_one_closes(base: str) -> None:
    url = f"{base}/dashboard/events"
    with (
        httpx.Client(timeout=10) as one,
        httpx.Client(timeout=10) as two,
        one.stream("GET", url) as a,
        two.stream("GET", url) as b,
    ):
        a_lines, b_lines = a.iter_lines(), b.iter_lines()
        assert first_lines(a_lines)[1] == first_lines(b_lines)[1] == "event: fleet"
        busy = httpx.get(url, timeout=10)
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == str(STREAMS_RETRY_AFTER_S)
        assert busy.json() == {"error": "too many event streams: at most 2 per replica"}
    # both clients left: their places come back once the server notices (within 0.25 s)
    deadline = time.monotonic() + 10
    while True:
        with httpx.stream("GET", url, timeout=10) as again:
            if again.status_code == 200:
                assert first_lines(again.iter_lines())[1] == "event: fleet"
                break
        assert time.monotonic() < deadline, "closed streams kept their places"
        threading.Event().wait(0.05)
