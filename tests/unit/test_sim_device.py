"""The device model: memory budget, LRU eviction, load times, reloads, keep-alive, slots, queue."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import ollama
import pytest

from herd.sim import RunningEmulator, start_emulator
from herd.sim.profile import MIB, FaultSpec
from herd.sim.protocol import BUSY_MESSAGE
from herd.sim.testing import fast_profile, wait_for


async def _started(**overrides: Any) -> RunningEmulator:
    return await start_emulator(fast_profile(**overrides))


@pytest.fixture
async def stack(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[RunningEmulator, ollama.AsyncClient]]:
    overrides = getattr(request, "param", {})
    emu = await _started(**overrides)
    client = ollama.AsyncClient(host=emu.url)
    yield emu, client
    await client.close()
    await emu.stop()


def loaded(emu: RunningEmulator) -> list[str]:
    return sorted(r.model.name for r in emu.device.runners.values())


async def gen(client: ollama.AsyncClient, model: str, **kw: Any) -> ollama.GenerateResponse:
    return await client.generate(model=model, prompt="hi", stream=False, **kw)


@pytest.mark.parametrize("stack", [{"memory_bytes": 250 * MIB}], indirect=True)
async def test_lru_eviction_under_memory_budget(
    stack: tuple[RunningEmulator, ollama.AsyncClient],
) -> None:
    emu, client = stack
    await gen(client, "tiny:1b")
    await gen(client, "thinker:1b")
    assert loaded(emu) == ["thinker:1b", "tiny:1b"]
    await gen(client, "tiny:1b")  # touch: thinker is now least recently used
    await gen(client, "eyes:1b")
    assert loaded(emu) == ["eyes:1b", "tiny:1b"]
    assert emu.device.counters.evictions == 1
    assert emu.device.memory_used <= 250 * MIB


@pytest.mark.parametrize("stack", [{"max_loaded_models": 1}], indirect=True)
async def test_max_loaded_models(stack: tuple[RunningEmulator, ollama.AsyncClient]) -> None:
    emu, client = stack
    await gen(client, "tiny:1b")
    await gen(client, "eyes:1b")
    assert loaded(emu) == ["eyes:1b"]


async def test_model_too_big_for_memory() -> None:
    emu = await _started(memory_bytes=50 * MIB)
    async with httpx.AsyncClient(base_url=emu.url) as raw:
        r = await raw.post(
            "/api/generate", json={"model": "tiny:1b", "prompt": "x", "stream": False}
        )
    await emu.stop()
    assert r.status_code == 500
    assert r.json()["error"].startswith("model requires more system memory")


@pytest.mark.parametrize("stack", [{"load_bytes_per_s": 1e9}], indirect=True)
async def test_load_duration_cold_vs_hot(stack: tuple[RunningEmulator, ollama.AsyncClient]) -> None:
    emu, client = stack
    cold = await gen(client, "tiny:1b")  # 100 MiB at 1 GB/s ~ 105 ms
    hot = await gen(client, "tiny:1b")
    assert cold.load_duration is not None and hot.load_duration is not None
    assert cold.load_duration > 90_000_000
    assert hot.load_duration < cold.load_duration / 10
    assert emu.device.counters.cold_loads == 1


@pytest.mark.parametrize("stack", [{"memory_bytes": 150 * MIB}], indirect=True)
async def test_eviction_waits_for_in_flight_and_load_duration_includes_wait(
    stack: tuple[RunningEmulator, ollama.AsyncClient],
) -> None:
    emu, client = stack
    await gen(client, "tiny:1b")
    emu.device.faults.add(FaultSpec(kind="hang", model="tiny:1b", after_chunks=1, count=1))
    stream = await client.generate(model="tiny:1b", prompt="long answer", stream=True)
    first = await stream.__anext__()  # tiny is now busy until the hang is released
    assert first.done is False
    other = asyncio.create_task(gen(client, "eyes:1b"))
    await wait_for(lambda: emu.device.pending == 1)
    held_from = time.perf_counter_ns()
    assert loaded(emu) == ["tiny:1b"]  # the busy model is not evicted under us
    await client.ps()  # the queued request keeps waiting meanwhile
    assert emu.device.pending == 1
    held = time.perf_counter_ns() - held_from
    emu.device.faults.clear()
    rest = [c async for c in stream]
    assert rest[-1].done and rest[-1].done_reason == "stop"
    r = await other
    assert loaded(emu) == ["eyes:1b"]
    assert emu.device.counters.evictions == 1
    assert r.load_duration is not None and r.load_duration > held


async def test_reload_on_num_ctx_change(stack: tuple[RunningEmulator, ollama.AsyncClient]) -> None:
    emu, client = stack
    await gen(client, "tiny:1b")
    same = await gen(client, "tiny:1b", options={"num_ctx": 4096})  # resolves to the same value
    assert emu.device.counters.cold_loads == 1
    changed = await gen(client, "tiny:1b", options={"num_ctx": 2048})
    assert emu.device.counters.reloads == 1
    assert emu.device.counters.cold_loads == 2
    # The reload is in the counters; its load time is reported (no wall-clock ratio: a
    # busy machine stretches the warm request's own measured time).
    assert same.load_duration is not None and changed.load_duration is not None
    assert changed.load_duration > 0
    ps = (await client.ps()).models
    assert ps[0].context_length == 2048


async def test_num_ctx_capped_at_trained_context(
    stack: tuple[RunningEmulator, ollama.AsyncClient],
) -> None:
    _emu, client = stack
    await client.embed(model="embedder", input="x", options={"num_ctx": 10**6})
    assert (await client.ps()).models[0].context_length == 64


async def test_keep_alive_semantics(stack: tuple[RunningEmulator, ollama.AsyncClient]) -> None:
    emu, client = stack
    await gen(client, "tiny:1b", keep_alive=0)
    assert (await client.ps()).models == []
    await gen(client, "tiny:1b", keep_alive=-1)
    forever = (await client.ps()).models[0].expires_at
    assert forever is not None and forever.year >= 2300
    await gen(client, "tiny:1b", keep_alive="10m")
    ten = (await client.ps()).models[0].expires_at
    assert ten is not None
    assert 590 < (ten - datetime.now(ten.tzinfo)).total_seconds() <= 600
    await gen(client, "tiny:1b")  # no keep_alive: the runner keeps its current value
    assert emu.device.runners["tiny:1b"].keep_alive == 600
    await gen(client, "tiny:1b", keep_alive=0.05)  # a number is seconds
    await wait_for(lambda: not emu.device.runners, timeout=3)
    assert emu.device.counters.unloads >= 2


async def test_keep_alive_zero_waits_for_idle(
    stack: tuple[RunningEmulator, ollama.AsyncClient],
) -> None:
    emu, client = stack
    await gen(client, "tiny:1b")
    emu.device.faults.add(FaultSpec(kind="hang", after_chunks=1, count=1))
    stream = await client.generate(model="tiny:1b", prompt="x", stream=True)
    await stream.__anext__()
    unload = await client.generate(model="tiny:1b", keep_alive=0)
    assert unload.done_reason == "unload"
    assert loaded(emu) == ["tiny:1b"]  # still in use
    emu.device.faults.clear()
    _ = [c async for c in stream]
    await wait_for(lambda: not emu.device.runners)


async def _timeline(url: str, model: str) -> tuple[float, float]:
    """(first chunk, last chunk) monotonic times of one streamed generate."""
    first = last = 0.0
    body = {"model": model, "prompt": "go"}
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as h,
        h.stream("POST", "/api/generate", json=body) as r,
    ):
        async for line in r.aiter_lines():
            now = time.monotonic()
            first = first or now
            last = now
            assert "error" not in json.loads(line)
    return first, last


@pytest.mark.parametrize(("parallel", "overlap"), [(1, False), (2, True)])
async def test_parallel_slots(parallel: int, overlap: bool) -> None:
    emu = await _started(num_parallel=parallel, tokens_per_s=300.0, response_tokens=15)
    try:
        client = ollama.AsyncClient(host=emu.url)
        await client.generate(model="tiny:1b")  # load first
        await client.close()
        a, b = await asyncio.gather(_timeline(emu.url, "tiny:1b"), _timeline(emu.url, "tiny:1b"))
        (_first_a, end_a), (first_b, _end_b) = sorted([a, b])
        if overlap:
            assert first_b < end_a
        else:
            assert first_b >= end_a
    finally:
        await emu.stop()


async def test_max_queue_gives_503() -> None:
    emu = await _started(max_queue=1, load_bytes_per_s=2e8)  # each load ~0.5 s
    async with httpx.AsyncClient(base_url=emu.url, timeout=10) as h:
        slow = asyncio.create_task(
            h.post("/api/generate", json={"model": "tiny:1b", "prompt": "x"})
        )
        await wait_for(lambda: emu.device.pending == 1)
        r = await h.post("/api/generate", json={"model": "eyes:1b", "prompt": "x"})
        assert r.status_code == 503
        assert r.json() == {"error": BUSY_MESSAGE}
        assert "  maximum pending" in BUSY_MESSAGE
        assert emu.device.counters.busy_rejections == 1
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
    await wait_for(lambda: emu.device.pending == 0)
    await emu.stop()


async def test_state_endpoint(stack: tuple[RunningEmulator, ollama.AsyncClient]) -> None:
    emu, client = stack
    await gen(client, "tiny:1b")
    async with httpx.AsyncClient(base_url=emu.url) as h:
        state = (await h.get("/_sim/state")).json()
        assert state["node"] == "test-node"
        assert [m["name"] for m in state["loaded"]] == ["tiny:1b"]
        assert state["pending"] == 0 and state["in_flight"] == 0
        assert state["counters"]["served"] == 1
        assert state["counters"]["cold_loads"] == 1
        assert state["counters"]["by_endpoint"] == {"generate": 1}
        r = await h.patch("/_sim/profile", json={"tokens_per_s": 10.0})
        assert r.json()["profile"]["tokens_per_s"] == 10.0
        assert (await h.patch("/_sim/profile", json={"models": []})).status_code == 400
        assert (await h.post("/_sim/reset")).json() == {"ok": True}
        assert (await h.get("/_sim/state")).json()["counters"]["served"] == 0


async def test_preload_and_instant_profile_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    real_sleep = asyncio.sleep

    async def guarded(delay: float, *args: Any) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        assert not caller.startswith("herd.sim"), f"{caller} slept {delay}"
        return await real_sleep(delay, *args)

    emu = await start_emulator("instant")
    monkeypatch.setattr(asyncio, "sleep", guarded)
    try:
        assert loaded(emu) == ["all-minilm:latest", "smollm2:135m"]
        client = ollama.AsyncClient(host=emu.url)
        r = await client.generate(model="smollm2:135m", prompt="hi", stream=False)
        assert r.eval_count == 24
        chunks = [
            c
            async for c in await client.chat(
                model="smollm2:135m", messages=[{"role": "user", "content": "x"}], stream=True
            )
        ]
        assert chunks[-1].done
        await client.embed(model="all-minilm", input="x")
        await client.close()
        assert emu.device.counters.cold_loads == 2
    finally:
        monkeypatch.undo()
        await emu.stop()
