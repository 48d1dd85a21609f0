"""No hidden deadlines on a node (herd/node/agent.py, herd/backends/ollama.py): answers are
bounded by silence, never by a total; pulls by progress; the disk a node reports and a
pull uses up. Against the real Ollama emulator over HTTP, without Ray."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from herd.backends.ollama import OllamaBackend
from herd.domain import InferenceRequest
from herd.errors import BackendError, BackendTimeout
from herd.node.agent import NodeAgent
from herd.settings import load_settings
from herd.sim import RunningEmulator, start_emulator
from herd.sim.profile import MIB
from herd.sim.testing import fast_profile

FIRST, CHUNK = 0.5, 0.25  # the node's first-chunk and chunk timeouts here
TOKENS, TOKENS_PER_S = 50, 20.0  # an answer of 2.5 s: 10 chunk timeouts long


def chat(rid: str = "r1", **options: Any) -> InferenceRequest:
    body = {"messages": [{"role": "user", "content": "A long story, please."}]}
    return InferenceRequest(rid, "chat", "tiny:1b", {**body, "options": options})


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    profile = fast_profile(
        name="emu",
        preload=["tiny:1b"],
        tokens_per_s=TOKENS_PER_S,
        response_tokens=TOKENS,
        disk_bytes=1024 * MIB,  # holds the five tiny models (450 MiB) and a few more
        pull_bytes_per_s=400 * MIB,  # fresh:1b (80 MiB) takes 0.2 s, in 4 progress steps
    )
    emulator = await start_emulator(profile)
    yield emulator
    await emulator.stop()


@pytest.fixture
async def agent(emu: RunningEmulator, tmp_path: Path) -> AsyncIterator[NodeAgent]:
    settings = load_settings(
        node={
            "ollama_host": emu.url,
            "llamacpp": "off",
            "engines": "off",
            "disk_bytes": emu.device.profile.disk_bytes,
        },
        first_chunk_timeout=FIRST,
        chunk_timeout=CHUNK,
        data_dir=tmp_path,
    )
    node = NodeAgent(settings, node_id="n1")  # detects its Ollama backend itself
    await node.start()
    yield node
    await node.stop()


async def fault(emu: RunningEmulator, **spec: Any) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        (await http.post(f"{emu.url}/_sim/faults", json=spec)).raise_for_status()


def test_the_answer_is_longer_than_every_limit(emu: RunningEmulator) -> None:
    """The premise of the tests below, from the profile (no clock involved)."""
    answer_s = TOKENS / emu.device.profile.tokens_per_s
    assert answer_s >= 10 * CHUNK and answer_s >= 3 * (FIRST + CHUNK)


# --- bounded by silence, never by a total ---------------------------------------------------
async def test_a_long_steady_stream_completes(agent: NodeAgent) -> None:
    chunks = [c async for batch in agent.stream(chat(), "tiny:1b") for c in batch]
    assert chunks[-1]["done"] is True and chunks[-1]["eval_count"] == TOKENS
    assert sum(1 for c in chunks if c["message"]["content"]) == TOKENS


async def test_a_long_non_streamed_answer_completes(agent: NodeAgent) -> None:
    body = await agent.complete(chat("r2"), "tiny:1b")
    assert body["done"] is True and body["eval_count"] == TOKENS and body["message"]["content"]


async def test_the_backend_session_bounds_reads_not_requests(emu: RunningEmulator) -> None:
    """A read limit far below the answer's length: every read is quick, so it completes;
    a backend that goes silent is cut by the same limit."""
    backend = OllamaBackend(emu.url, read_timeout=CHUNK * 2)
    try:
        body = {"model": "tiny:1b", "messages": [{"role": "user", "content": "hi"}]}
        chunks = [c async for c in backend.stream("chat", body)]
        assert chunks[-1]["done"] is True and chunks[-1]["eval_count"] == TOKENS
        await fault(emu, kind="hang", model="tiny:1b", after_chunks=2, count=1)
        with pytest.raises(BackendTimeout, match=r"ollama sent nothing for 0.5s") as e:
            async for _ in backend.stream("chat", body):
                pass
        assert e.value.status == 503 and not e.value.retryable  # chunks had come
    finally:
        await backend.close()


async def test_a_backend_silent_mid_stream_is_cut_by_the_chunk_timeout(
    agent: NodeAgent, emu: RunningEmulator
) -> None:
    await fault(emu, kind="hang", model="tiny:1b", after_chunks=3, count=1)
    got: list[dict[str, Any]] = []
    with pytest.raises(BackendTimeout) as e:
        async for batch in agent.stream(chat(), "tiny:1b"):
            got.extend(batch)
    assert len(got) == 3
    assert e.value.message == "n1: the backend sent nothing more for 0.25s (FLEET_CHUNK_TIMEOUT)"
    assert not e.value.retryable and e.value.status == 503


async def test_a_backend_silent_from_the_start_is_cut_by_the_first_chunk_timeout(
    agent: NodeAgent, emu: RunningEmulator
) -> None:
    await fault(emu, kind="hang", model="tiny:1b", count=1)
    with pytest.raises(BackendTimeout) as e:
        await agent.complete(chat(), "tiny:1b")
    assert (
        e.value.message
        == "n1: the backend sent no first chunk for 0.5s (FLEET_FIRST_CHUNK_TIMEOUT)"
    )
    assert e.value.retryable  # nothing reached the client: another node may answer


# --- the disk a node reports, and pulls ------------------------------------------------------
async def test_the_heartbeat_reports_the_disk_left_and_a_pull_uses_it(
    agent: NodeAgent, emu: RunningEmulator
) -> None:
    on_disk = sum(m.size for m in emu.device.profile.models)
    assert (await agent.heartbeat()).disk_free == 1024 * MIB - on_disk
    lines = [line async for line in agent.pull("fresh:1b")]
    assert lines[-1] == {"status": "success"}
    assert (await agent.heartbeat()).disk_free == 1024 * MIB - on_disk - 80 * MIB
    assert emu.device.disk_free == 1024 * MIB - on_disk - 80 * MIB


async def test_a_pull_that_does_not_fit_fails_as_ollamas_does(
    agent: NodeAgent, emu: RunningEmulator
) -> None:
    emu.device.update_profile({"disk_bytes": 500 * MIB})  # 50 MiB left: fresh:1b is 80
    with pytest.raises(BackendError, match="no space left on device"):
        async for _ in agent.pull("fresh:1b"):
            pass
    assert emu.device.find("fresh:1b") is None


async def test_two_pulls_of_a_model_on_a_node_are_one_pull(agent: NodeAgent) -> None:
    backend = agent.backend
    assert isinstance(backend, OllamaBackend)
    calls: list[str] = []
    real = backend.pull

    def counted(model: str, insecure: bool = False) -> AsyncIterator[dict[str, Any]]:
        calls.append(model)
        return real(model, insecure)

    backend.pull = counted  # type: ignore[method-assign]

    async def pull() -> list[dict[str, Any]]:
        return [line async for line in agent.pull("fresh:1b")]

    first, second = await asyncio.gather(pull(), pull())
    assert calls == ["fresh:1b"]
    assert first[-1] == second[-1] == {"status": "success"}
    assert first[0] == second[0] == {"status": "pulling manifest"}
    assert agent.in_flight == 0 and agent.pulls.running() == []
