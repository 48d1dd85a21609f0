"""NodeAgent (herd/node/agent.py) against the in-process Ollama emulator, without Ray."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from herd.backends.ollama import OllamaBackend
from herd.domain import InferenceRequest, RequestKind
from herd.errors import BackendError, BackendTimeout, NodeUnavailable
from herd.node.agent import NodeAgent
from herd.settings import Settings, load_settings
from herd.sim import RunningEmulator, start_emulator
from herd.sim.profile import FaultSpec
from herd.sim.testing import fast_profile
from launch.localray import free_port

FIRST_CHUNK_TIMEOUT = 0.5

BODIES: dict[str, dict[str, Any]] = {
    "chat": {"messages": [{"role": "user", "content": "Tell me about herds."}]},
    "generate": {"prompt": "Tell me about herds."},
    "embed": {"input": ["one", "two"]},
}


def make_settings(url: str, tmp: Path, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "node": {"ollama_host": url, "llamacpp": "off", "num_parallel": 2, "engines": "off"},
        "first_chunk_timeout": FIRST_CHUNK_TIMEOUT,
        "chunk_timeout": 5.0,
        "data_dir": tmp,
    }
    values.update(over)
    return load_settings(**values)


def request(kind: RequestKind, model: str = "tiny:1b", **body: Any) -> InferenceRequest:
    return InferenceRequest(f"req-{kind}", kind, model, {**BODIES[kind], **body})


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    emulator = await start_emulator(fast_profile(name="emu", preload=["tiny:1b"], num_parallel=2))
    yield emulator
    await emulator.stop()


@pytest.fixture
async def agent(emu: RunningEmulator, tmp_path: Path) -> AsyncIterator[NodeAgent]:
    node = NodeAgent(
        make_settings(emu.url, tmp_path),
        node_id="n1",
        ray_node_id="ray-1",
        backend=OllamaBackend(emu.url),
    )
    await node.start()
    yield node
    await node.stop()


async def fault(emu: RunningEmulator, **spec: Any) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.post(f"{emu.url}/_sim/faults", json=spec)
        r.raise_for_status()


async def sim_state(emu: RunningEmulator) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as http:
        result: dict[str, Any] = (await http.get(f"{emu.url}/_sim/state")).json()
        return result


def open_stream(
    agent: NodeAgent, req: InferenceRequest, model: str
) -> aclosing[AsyncGenerator[list[dict[str, Any]], None]]:
    """``agent.stream`` closed on exit, like the ingress does when a client goes away."""
    return aclosing(cast(AsyncGenerator[list[dict[str, Any]], None], agent.stream(req, model)))


async def collect(agent: NodeAgent, req: InferenceRequest) -> list[list[dict[str, Any]]]:
    batches = []
    async with open_stream(agent, req, req.model) as stream:
        async for batch in stream:
            batches.append(batch)
    return batches


def text_of(chunks: list[dict[str, Any]], kind: str) -> str:
    if kind == "chat":
        return "".join(c.get("message", {}).get("content", "") for c in chunks)
    return "".join(c.get("response", "") for c in chunks)


# --- heartbeat -----------------------------------------------------------------------


async def test_heartbeat_reports_models_loaded_and_metrics(
    agent: NodeAgent, emu: RunningEmulator
) -> None:
    hb = await agent.heartbeat()
    assert hb.node_id == "n1" and hb.ray_node_id == "ray-1"
    assert hb.backend == "ollama" and hb.backend_url == emu.url
    assert hb.backend_ok is True
    assert hb.backend_version == emu.device.profile.version
    assert hb.herd_version
    assert {m.name for m in hb.models} >= {"tiny:1b", "thinker:1b", "coder:1b", "embedder:latest"}
    assert [m.name for m in hb.loaded] == ["tiny:1b"]
    assert hb.loaded[0].size > 0 and hb.loaded[0].expires_at
    assert hb.is_loaded("TINY:1B") and hb.has_model("embedder")
    assert hb.cpu_count >= 1 and 0.0 <= hb.cpu_percent <= 100.0 * hb.cpu_count
    assert hb.memory_total > 0 and 0 <= hb.memory_available <= hb.memory_total
    assert hb.memory_pressure in ("normal", "warn", "critical")
    assert hb.num_parallel == 2 and hb.draining is False
    assert abs(hb.sent_at - time.time()) < 60
    assert agent.state is not None and agent.state.ok


async def test_heartbeat_sees_a_newly_loaded_model(agent: NodeAgent) -> None:
    await collect(agent, request("generate", "coder:1b"))
    hb = await agent.heartbeat()
    assert {m.name for m in hb.loaded} == {"tiny:1b", "coder:1b"}


async def test_start_detects_ollama(emu: RunningEmulator, tmp_path: Path) -> None:
    node = NodeAgent(
        make_settings(
            emu.url, tmp_path, node={"ollama_host": emu.url, "llamacpp": "off", "name": "named"}
        )
    )
    try:
        state = await node.start()
        assert state.ok and isinstance(node.backend, OllamaBackend)
        assert node.node_id == "named"
        assert node.supervisor is None
    finally:
        await node.stop()


async def test_heartbeat_when_the_backend_is_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    node = NodeAgent(make_settings(url, tmp_path), node_id="n1")
    try:
        state = await node.start()  # llamacpp off: keeps the (down) Ollama backend
        assert state.ok is False and state.error
        hb = await node.heartbeat()
        assert hb.backend_ok is False
        assert hb.models == () and hb.loaded == ()
        assert hb.cpu_count >= 1
    finally:
        await node.stop()


async def test_heartbeat_notices_the_backend_going_away(tmp_path: Path) -> None:
    emulator = await start_emulator(fast_profile())
    node = NodeAgent(make_settings(emulator.url, tmp_path), node_id="n1")
    try:
        await node.start()
        assert (await node.heartbeat()).backend_ok is True
        await emulator.stop()
        assert (await node.heartbeat()).backend_ok is False
    finally:
        await node.stop()


async def test_no_backend_yet_is_node_unavailable(tmp_path: Path) -> None:
    node = NodeAgent(make_settings("http://127.0.0.1:1", tmp_path), node_id="n1")
    with pytest.raises(NodeUnavailable):
        await node.heartbeat()
    with pytest.raises(NodeUnavailable):
        await node.complete(request("chat"), "tiny:1b")


# --- stream and complete -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["chat", "generate"])
async def test_stream_yields_batches_ending_with_done(agent: NodeAgent, kind: RequestKind) -> None:
    batches = await collect(agent, request(kind))
    assert batches and all(isinstance(b, list) and b for b in batches)
    chunks = [c for b in batches for c in b]
    assert chunks[-1]["done"] is True
    assert chunks[-1]["done_reason"] == "stop"
    assert chunks[-1]["eval_count"] > 0
    assert all(c["done"] is False for c in chunks[:-1])
    assert all(c["model"] == "tiny:1b" for c in chunks)
    assert text_of(chunks, kind).strip()
    assert agent.in_flight == 0


async def test_stream_serves_the_model_it_is_given(agent: NodeAgent) -> None:
    req = request("chat", "big:70b")  # the requested model; the decision picked a fallback
    chunks = [c for b in await collect_model(agent, req, "coder:1b") for c in b]
    assert {c["model"] for c in chunks} == {"coder:1b"}


async def collect_model(
    agent: NodeAgent, req: InferenceRequest, model: str
) -> list[list[dict[str, Any]]]:
    async with open_stream(agent, req, model) as stream:
        return [batch async for batch in stream]


@pytest.mark.parametrize("kind", ["chat", "generate"])
async def test_complete_folds_the_stream(agent: NodeAgent, kind: RequestKind) -> None:
    chunks = [c for b in await collect(agent, request(kind)) for c in b]
    whole = await agent.complete(request(kind), "tiny:1b")
    assert whole["done"] is True and whole["done_reason"] == "stop"
    assert whole["model"] == "tiny:1b"
    if kind == "chat":
        assert whole["message"]["role"] == "assistant"
        assert whole["message"]["content"] == text_of(chunks, kind)
    else:
        assert whole["response"] == text_of(chunks, kind)
    assert whole["eval_count"] == chunks[-1]["eval_count"]
    assert agent.in_flight == 0


async def test_complete_embed(agent: NodeAgent) -> None:
    result = await agent.complete(request("embed", "embedder"), "embedder")
    assert len(result["embeddings"]) == 2
    assert all(len(v) == 32 for v in result["embeddings"])
    assert result["model"].startswith("embedder")
    assert agent.in_flight == 0


# --- keep_alive ----------------------------------------------------------------------


async def _keep_alive_of(emu: RunningEmulator, model: str) -> Any:
    state = await sim_state(emu)
    (entry,) = [m for m in state["loaded"] if m["name"].startswith(model)]
    return entry["keep_alive"]


@pytest.mark.parametrize(
    ("kind", "model"),
    [("chat", "coder:1b"), ("generate", "thinker:1b"), ("embed", "embedder")],
)
async def test_keep_alive_forever_is_added_when_unset(
    agent: NodeAgent, emu: RunningEmulator, kind: RequestKind, model: str
) -> None:
    req = request(kind, model)
    if kind == "embed":
        await agent.complete(req, model)
    else:
        await collect_model(agent, req, model)
    assert "keep_alive" not in req.body  # the caller's body is not mutated
    assert await _keep_alive_of(emu, model) is None  # forever (the emulator default is 5m)
    async with httpx.AsyncClient(timeout=5) as http:
        ps = (await http.get(f"{emu.url}/api/ps")).json()["models"]
    (row,) = [m for m in ps if m["name"].startswith(model)]
    assert datetime.fromisoformat(row["expires_at"]).year > 2100


@pytest.mark.parametrize(
    ("kind", "model"),
    [("chat", "coder:1b"), ("generate", "thinker:1b"), ("embed", "embedder")],
)
async def test_keep_alive_set_by_the_request_is_kept(
    agent: NodeAgent, emu: RunningEmulator, kind: RequestKind, model: str
) -> None:
    req = request(kind, model, keep_alive="10m")
    if kind == "embed":
        await agent.complete(req, model)
    else:
        await collect_model(agent, req, model)
    assert await _keep_alive_of(emu, model) == 600.0


async def test_keep_alive_comes_from_settings(emu: RunningEmulator, tmp_path: Path) -> None:
    node = NodeAgent(make_settings(emu.url, tmp_path, keep_alive="2m"), node_id="n1")
    try:
        await node.start()
        await collect_model(node, request("chat", "coder:1b"), "coder:1b")
        assert await _keep_alive_of(emu, "coder:1b") == 120.0
    finally:
        await node.stop()


# --- failures ------------------------------------------------------------------------


async def test_hanging_backend_times_out_retryably(agent: NodeAgent, emu: RunningEmulator) -> None:
    await fault(emu, kind="hang", model="tiny:1b", count=1)
    started = time.monotonic()
    with pytest.raises(BackendTimeout) as info:
        await asyncio.wait_for(collect(agent, request("chat")), timeout=10)
    elapsed = time.monotonic() - started
    assert FIRST_CHUNK_TIMEOUT * 0.9 <= elapsed < FIRST_CHUNK_TIMEOUT + 2.5
    assert info.value.retryable is True
    assert agent.in_flight == 0
    # the node still works afterwards
    assert [c for b in await collect(agent, request("chat")) for c in b][-1]["done"]


async def test_hanging_backend_times_out_in_complete(
    agent: NodeAgent, emu: RunningEmulator
) -> None:
    emu.device.faults.add(FaultSpec(kind="hang", model="tiny:1b", count=1))
    with pytest.raises(BackendTimeout) as info:
        await asyncio.wait_for(agent.complete(request("generate"), "tiny:1b"), timeout=10)
    assert info.value.retryable is True
    emu.device.faults.add(FaultSpec(kind="hang", model="embedder", count=1))
    with pytest.raises(BackendTimeout) as info:
        await asyncio.wait_for(agent.complete(request("embed"), "embedder"), timeout=10)
    assert info.value.retryable is True
    assert agent.in_flight == 0


async def test_stall_after_the_first_chunk_is_not_retryable(
    agent: NodeAgent, emu: RunningEmulator, tmp_path: Path
) -> None:
    node = NodeAgent(make_settings(emu.url, tmp_path, chunk_timeout=0.3), node_id="n2")
    await node.start()
    try:
        await fault(emu, kind="hang", model="tiny:1b", count=1, after_chunks=2)
        got: list[dict[str, Any]] = []
        with pytest.raises(BackendTimeout) as info:
            async with open_stream(node, request("chat"), "tiny:1b") as stream:
                async for batch in stream:
                    got.extend(batch)
        assert len(got) == 2
        assert info.value.retryable is False
    finally:
        await node.stop()


async def test_fail_before_is_retryable(agent: NodeAgent, emu: RunningEmulator) -> None:
    await fault(emu, kind="fail_before", model="tiny:1b", count=1, status=500)
    with pytest.raises(BackendError) as info:
        await collect(agent, request("chat"))
    assert info.value.retryable is True and info.value.backend_status == 500
    assert not isinstance(info.value, BackendTimeout)


async def test_mid_stream_fault_is_not_retryable(agent: NodeAgent, emu: RunningEmulator) -> None:
    await fault(emu, kind="fail_mid_stream", model="tiny:1b", count=1, after_chunks=3)
    got: list[dict[str, Any]] = []
    with pytest.raises(BackendError) as info:
        async with open_stream(agent, request("chat"), "tiny:1b") as stream:
            async for batch in stream:
                got.extend(batch)
    assert len(got) == 3 and not any(c["done"] for c in got)
    assert info.value.retryable is False
    assert "unexpected EOF" in info.value.message
    assert agent.in_flight == 0


async def test_mid_stream_fault_in_complete(agent: NodeAgent, emu: RunningEmulator) -> None:
    await fault(emu, kind="fail_mid_stream", model="tiny:1b", count=1, after_chunks=2)
    with pytest.raises(BackendError) as info:
        await agent.complete(request("chat"), "tiny:1b")
    assert info.value.retryable is False


async def test_raw_lines_are_the_chunks_as_the_backend_sent_them(agent: NodeAgent) -> None:
    # The HTTP data plane forwards the backend's lines undecoded: the same chunks, in
    # order, the last one done, and the same end as the decoded stream.
    lines: list[bytes] = []
    gen = cast(AsyncGenerator[list[Any], None], agent.stream(request("chat"), "tiny:1b", raw=True))
    async with aclosing(gen) as stream:
        async for batch in stream:
            lines.extend(batch)
    assert lines and all(isinstance(line, bytes) and b"\n" not in line for line in lines)
    chunks = [json.loads(line) for line in lines]
    assert chunks[-1]["done"] and not any(c["done"] for c in chunks[:-1])
    assert text_of(chunks, "chat") == text_of(
        [c for b in await collect(agent, request("chat")) for c in b], "chat"
    )
    assert agent.in_flight == 0


async def test_raw_lines_raise_the_backend_errors(agent: NodeAgent, emu: RunningEmulator) -> None:
    await fault(emu, kind="fail_before", model="tiny:1b", count=1, status=500)
    with pytest.raises(BackendError) as info:
        async with aclosing(agent.stream(request("chat"), "tiny:1b", raw=True)) as stream:
            async for _ in stream:
                pass
    assert info.value.retryable is True
    await fault(emu, kind="fail_mid_stream", model="tiny:1b", count=1, after_chunks=3)
    got: list[Any] = []
    with pytest.raises(BackendError) as info:
        async with aclosing(agent.stream(request("chat"), "tiny:1b", raw=True)) as stream:
            async for batch in stream:
                got.extend(batch)
    assert len(got) == 3 and info.value.retryable is False
    assert agent.in_flight == 0


# --- drain ---------------------------------------------------------------------------


async def test_drain_waits_for_in_flight_work(agent: NodeAgent, emu: RunningEmulator) -> None:
    await fault(emu, kind="hang", model="tiny:1b", count=1, after_chunks=1)
    got: list[dict[str, Any]] = []
    async with open_stream(agent, request("chat"), "tiny:1b") as stream:
        got.extend(await anext(stream))  # one chunk, then the backend stalls
        assert agent.in_flight == 1
        drain = asyncio.create_task(agent.drain(timeout=10))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not drain.done()
        assert agent.draining and (await agent.heartbeat()).draining is True

        with pytest.raises(NodeUnavailable):
            await collect(agent, request("chat"))
        with pytest.raises(NodeUnavailable):
            await agent.complete(request("embed", "embedder"), "embedder")
        assert agent.in_flight == 1

        emu.device.faults.clear()  # the stalled request goes on
        async for batch in stream:
            got.extend(batch)
    assert got[-1]["done"] is True
    assert await asyncio.wait_for(drain, timeout=5) is True
    assert agent.in_flight == 0
    with pytest.raises(NodeUnavailable):
        await collect(agent, request("generate"))


async def test_drain_when_idle_and_on_timeout(agent: NodeAgent, emu: RunningEmulator) -> None:
    await fault(emu, kind="hang", model="tiny:1b", count=1, after_chunks=1)
    async with open_stream(agent, request("chat"), "tiny:1b") as stream:
        await anext(stream)
        assert await agent.drain(timeout=0.05) is False
        emu.device.faults.clear()
        async for _ in stream:
            pass
    assert await agent.drain(timeout=5) is True


async def test_abandoned_stream_frees_its_slot(agent: NodeAgent, emu: RunningEmulator) -> None:
    await fault(emu, kind="hang", model="tiny:1b", count=1, after_chunks=1)
    async with open_stream(agent, request("chat"), "tiny:1b") as stream:
        await anext(stream)
        assert agent.in_flight == 1
    assert agent.in_flight == 0  # the client went away: closing the stream frees the node
    assert await agent.drain(timeout=5) is True
