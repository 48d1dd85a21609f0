"""serve_app/hangup.py over a real HTTP server (uvicorn) and the real app over fake
nodes: a client that hangs up while its request waits for a node or in the holding
queue cancels it, so the booking and the queue place are given back at once and the
trace says the client left."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from dispatch_fakes import Fleet, Reply, heartbeat, running

from herd.sim.testing import wait_for
from serve_app.routes import build_app
from serve_app.service import HerdService

BOUND = 2.0  # how long a hang-up may keep a booking here (a real socket, one loop)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def served(fleet: Fleet) -> AsyncIterator[str]:
    app = build_app(HerdService(fleet.d.settings, fleet.d))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=_port(), log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, timeout=10)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await task


async def _hang_up(url: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=0.3)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(url, json=body)


@pytest.mark.parametrize("stream", [True, False])
async def test_a_hang_up_while_pending_on_a_node_gives_the_slot_back(stream: bool) -> None:
    async with running(heartbeat("alpha", loaded=["tiny:1b"])) as fleet, served(fleet) as base:
        fleet.nodes.script("alpha", Reply(hang=True))
        body = {
            "model": "tiny:1b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
        }
        await _hang_up(f"{base}/api/chat", body)
        # The open on the node is cancelled and the attempt ends as a disconnect.
        await wait_for(lambda: fleet.nodes.hanging == 0, timeout=BOUND)
        await fleet.d.flush()
        await wait_for(lambda: not fleet.core.status()["nodes"][0]["in_flight_by_model"], BOUND)
        (record,) = await fleet.records()
        assert record.status == "disconnected" and record.error == "client disconnected"


async def test_a_hang_up_in_the_holding_queue_leaves_it() -> None:
    # tiny:1b exists only on a node that is draining: requests for it are held.
    beats = (heartbeat("alpha", loaded=["tiny:1b"], draining=True),)
    async with running(*beats, holding_queue_timeout=30.0) as fleet, served(fleet) as base:
        body = {
            "model": "tiny:1b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": False,
        }
        client = asyncio.create_task(_hang_up(f"{base}/v1/chat/completions", body))
        await wait_for(lambda: fleet.core.waiting == 1, timeout=5)
        await client  # the client gives up after 0.3 s
        await wait_for(lambda: fleet.core.waiting == 0, timeout=BOUND)
        (record,) = await fleet.records()
        assert record.status == "disconnected"
        assert fleet.core.counters["hold_timeouts"] == 0  # it left, it did not time out


async def test_an_answered_request_is_not_cancelled() -> None:
    async with running(heartbeat("alpha", loaded=["tiny:1b"])) as fleet, served(fleet) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            for stream in (False, True):
                body = {
                    "model": "tiny:1b",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": stream,
                }
                r = await http.post(f"{base}/api/chat", json=body)
                assert r.status_code == 200 and r.text
        records = await fleet.records()
        assert [r.status for r in records] == ["ok", "ok"]
        assert all(r.http_status == 200 for r in records)
