"""The node's HTTP data plane (herd/node/http_server.py) against the in-process emulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from herd.backends.ollama import OllamaBackend
from herd.errors import BackendError, BackendTimeout, ModelNotFound, NodeUnavailable
from herd.node.agent import NodeAgent
from herd.node.http_server import (
    INSTANCE_HEADER,
    STREAM_PATH,
    TOKEN_HEADER,
    NodeHTTPServer,
    error_from_payload,
    error_payload,
    new_data_token,
    token_matches,
)
from herd.settings import load_settings
from herd.sim import RunningEmulator, start_emulator
from herd.sim.profile import FaultSpec
from herd.sim.testing import fast_profile
from launch.localray import free_port

CHAT = {"messages": [{"role": "user", "content": "Tell me about herds."}]}
TOKEN = "unit-test-data-token-0123456789"
AUTH = {TOKEN_HEADER: TOKEN}


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    emulator = await start_emulator(fast_profile(name="emu", preload=["tiny:1b"], num_parallel=2))
    yield emulator
    await emulator.stop()


@pytest.fixture
async def agent(emu: RunningEmulator, tmp_path: Path) -> AsyncIterator[NodeAgent]:
    settings = load_settings(
        node={"ollama_host": emu.url, "llamacpp": "off", "num_parallel": 2},
        first_chunk_timeout=0.5,
        chunk_timeout=5.0,
        data_dir=tmp_path,
    )
    node = NodeAgent(settings, node_id="n1", backend=OllamaBackend(emu.url))
    await node.start()
    yield node
    await node.stop()


@pytest.fixture
async def server(agent: NodeAgent) -> AsyncIterator[NodeHTTPServer]:
    srv = NodeHTTPServer(agent, token=TOKEN, host="127.0.0.1", instance="actor-1")
    url = await srv.start()
    assert url.startswith("http://127.0.0.1:") and srv.port > 0
    yield srv
    await srv.stop()
    assert srv.url == ""


def payload(model: str = "tiny:1b", kind: str = "chat", **body: Any) -> dict[str, Any]:
    return {"request_id": "r1", "kind": kind, "model": model, "body": {**CHAT, **body}}


async def post(
    server: NodeHTTPServer, data: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(
            server.url + STREAM_PATH, json=data, headers=AUTH if headers is None else headers
        )


def lines(resp: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


async def test_streams_one_line_per_chunk(server: NodeHTTPServer, agent: NodeAgent) -> None:
    resp = await post(server, payload())
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    chunks = lines(resp)
    assert len(chunks) > 2
    assert all("herd_error" not in c for c in chunks)
    assert chunks[-1]["done"] is True and chunks[-1]["eval_count"] > 0
    assert "".join(c["message"]["content"] for c in chunks[:-1])
    assert agent.in_flight == 0
    assert resp.headers[INSTANCE_HEADER] == "actor-1"


async def test_a_request_without_the_token_is_401_and_reaches_no_backend(
    server: NodeHTTPServer, emu: RunningEmulator
) -> None:
    served = emu.device.counters.requests
    resp = await post(server, payload(), headers={})
    assert resp.status_code == 401
    assert resp.json()["code"] == "unauthorized" and "missing" in resp.json()["error"]
    assert TOKEN not in resp.text
    assert emu.device.counters.requests == served


async def test_a_wrong_token_is_403(server: NodeHTTPServer, emu: RunningEmulator) -> None:
    served = emu.device.counters.requests
    for wrong in ("x", TOKEN[:-1], TOKEN + "x", ""):
        resp = await post(server, payload(), headers={TOKEN_HEADER: wrong})
        assert resp.status_code == 403, wrong
        assert "wrong" in resp.json()["error"]
    assert emu.device.counters.requests == served


async def test_every_path_needs_the_token(server: NodeHTTPServer) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(server.url + "/")).status_code == 401
        assert (await http.get(server.url + STREAM_PATH)).status_code == 401
        assert (await http.get(server.url + "/", headers=AUTH)).status_code == 404


async def test_the_server_refuses_to_run_without_a_token(agent: NodeAgent) -> None:
    with pytest.raises(ValueError, match="token"):
        NodeHTTPServer(agent, token="")


async def test_a_fixed_port_is_used(agent: NodeAgent) -> None:
    port = free_port()
    srv = NodeHTTPServer(agent, token=TOKEN, host="127.0.0.1", port=port)
    try:
        assert await srv.start() == f"http://127.0.0.1:{port}"
        busy = NodeHTTPServer(agent, token=TOKEN, host="127.0.0.1", port=port)
        with pytest.raises(OSError):
            await busy.start()
        assert busy.url == ""
    finally:
        await srv.stop()


def test_tokens_are_random_and_compared_exactly() -> None:
    tokens = {new_data_token() for _ in range(20)}
    assert len(tokens) == 20 and all(len(t) >= 40 for t in tokens)
    token = tokens.pop()
    assert token_matches(token, token)
    assert not token_matches(token, token.upper()) and not token_matches(token, None)
    assert not token_matches("", "")


async def test_keep_alive_is_added(
    server: NodeHTTPServer, agent: NodeAgent, emu: RunningEmulator
) -> None:
    sent: list[dict[str, Any]] = []
    backend = agent.backend
    assert backend is not None
    original = backend.stream_lines  # type: ignore[attr-defined]  # what the plane reads

    def spy(kind: Any, body: Any) -> Any:
        sent.append(dict(body))
        return original(kind, body)

    backend.stream_lines = spy  # type: ignore[attr-defined]
    resp = await post(server, payload())
    assert resp.status_code == 200
    assert sent and sent[0]["keep_alive"] == agent.settings.keep_alive
    assert sent[0]["model"] == "tiny:1b"


async def test_error_before_first_chunk_is_a_status(
    server: NodeHTTPServer, emu: RunningEmulator
) -> None:
    emu.device.faults.add(FaultSpec(kind="fail_before", model="tiny:1b", count=1, status=500))
    resp = await post(server, payload())
    assert resp.status_code == BackendError.status
    body = resp.json()
    assert body["retryable"] is True and body["code"] == "backend_error" and body["error"]
    err = error_from_payload(body, default_retryable=False)
    assert isinstance(err, BackendError) and err.retryable


async def test_unknown_model_keeps_its_error_class(server: NodeHTTPServer) -> None:
    resp = await post(server, payload(model="nope:1b"))
    assert resp.status_code >= 400
    err = error_from_payload(resp.json(), default_retryable=False)
    assert err.status == resp.status_code


async def test_stall_before_first_chunk_is_a_retryable_timeout(
    server: NodeHTTPServer, emu: RunningEmulator
) -> None:
    emu.device.faults.add(FaultSpec(kind="hang", model="tiny:1b", count=1))
    resp = await asyncio.wait_for(post(server, payload()), timeout=10)
    assert resp.status_code == BackendTimeout.status
    err = error_from_payload(resp.json(), default_retryable=False)
    assert isinstance(err, BackendTimeout) and err.retryable


async def test_mid_stream_error_is_a_final_line(
    server: NodeHTTPServer, emu: RunningEmulator, agent: NodeAgent
) -> None:
    emu.device.faults.add(
        FaultSpec(kind="fail_mid_stream", model="tiny:1b", count=1, after_chunks=3)
    )
    resp = await post(server, payload())
    assert resp.status_code == 200
    chunks = lines(resp)
    assert len(chunks) >= 2
    last = chunks[-1]
    assert last["herd_error"] is True and last["retryable"] is False
    assert all("herd_error" not in c for c in chunks[:-1])
    err = error_from_payload(last, default_retryable=True)
    assert isinstance(err, BackendError) and not err.retryable
    assert agent.in_flight == 0


async def test_draining_node_refuses_with_retryable_503(
    server: NodeHTTPServer, agent: NodeAgent
) -> None:
    assert await agent.drain(1.0)
    resp = await post(server, payload())
    assert resp.status_code == NodeUnavailable.status
    err = error_from_payload(resp.json(), default_retryable=False)
    assert isinstance(err, NodeUnavailable) and err.retryable


async def test_bad_request_is_400(server: NodeHTTPServer) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(server.url + STREAM_PATH, content=b"not json", headers=AUTH)
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_request"


async def test_client_going_away_frees_the_slot(
    server: NodeHTTPServer, agent: NodeAgent, emu: RunningEmulator
) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("POST", server.url + STREAM_PATH, json=payload(), headers=AUTH) as resp,
    ):
        async for _ in resp.aiter_lines():
            break
    for _ in range(100):
        if agent.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert agent.in_flight == 0


def test_error_round_trip() -> None:
    err = error_from_payload(error_payload(ModelNotFound("gone")), default_retryable=True)
    assert type(err) is ModelNotFound and err.message == "gone"
    timeout = error_from_payload(
        error_payload(BackendTimeout("slow", retryable=False)), default_retryable=True
    )
    assert type(timeout) is BackendTimeout and timeout.retryable is False
