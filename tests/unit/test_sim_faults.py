"""Injected faults, from the profile, the Python API and the ``/_sim/faults`` endpoints."""

from __future__ import annotations

import asyncio
import json

import httpx
import ollama
import pytest

from herd.sim import FaultSpec, RunningEmulator, start_emulator
from herd.sim.faults import DEFAULT_MESSAGES, FaultInjector
from herd.sim.testing import fast_profile, wait_for

GEN = {"model": "tiny:1b", "prompt": "hello"}


async def add(http: httpx.AsyncClient, payload: object) -> list[int]:
    r = await http.post("/_sim/faults", json=payload)
    assert r.status_code == 200, r.text
    added: list[int] = r.json()["added"]
    return added


async def test_fail_before_first_chunk(http: httpx.AsyncClient, client: ollama.AsyncClient) -> None:
    await add(http, {"kind": "fail_before", "count": 2, "status": 503, "message": "boom"})
    for _ in range(2):
        with pytest.raises(ollama.ResponseError) as err:
            _ = [c async for c in await client.generate(model="tiny:1b", prompt="x", stream=True)]
        assert (err.value.status_code, err.value.error) == (503, "boom")
    r = await client.generate(model="tiny:1b", prompt="x", stream=False)  # count used up
    assert r.done
    assert (await http.get("/_sim/faults")).json() == {"faults": []}
    await add(http, {"kind": "fail_before"})
    r2 = await http.post(
        "/api/chat", json={"model": "tiny:1b", "messages": [{"role": "user", "content": "x"}]}
    )
    assert (r2.status_code, r2.json()) == (500, {"error": DEFAULT_MESSAGES["fail_before"]})


async def test_fail_mid_stream(http: httpx.AsyncClient, client: ollama.AsyncClient) -> None:
    await add(http, {"kind": "fail_mid_stream", "after_chunks": 3, "count": 1, "message": "died"})
    async with http.stream("POST", "/api/generate", json=GEN) as r:
        assert r.status_code == 200
        lines = [json.loads(line) async for line in r.aiter_lines()]
    assert len(lines) == 4
    assert all(not line["done"] for line in lines[:3])
    assert lines[-1] == {"error": "died"}
    await add(http, {"kind": "fail_mid_stream", "after_chunks": 2, "count": 1})
    got: list[ollama.GenerateResponse] = []
    with pytest.raises(ollama.ResponseError) as err:
        async for chunk in await client.generate(model="tiny:1b", prompt="x", stream=True):
            got.append(chunk)
    assert len(got) == 2
    assert err.value.error == DEFAULT_MESSAGES["fail_mid_stream"]
    await add(http, {"kind": "fail_mid_stream", "after_chunks": 1, "count": 1})
    whole = await http.post("/api/generate", json={**GEN, "stream": False})
    assert (whole.status_code, whole.json()) == (
        500,
        {"error": DEFAULT_MESSAGES["fail_mid_stream"]},
    )


async def test_hang_until_client_gives_up(emu: RunningEmulator, http: httpx.AsyncClient) -> None:
    await add(http, {"kind": "hang", "count": 1})
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/api/generate", json=GEN, timeout=0.2)
    await wait_for(lambda: emu.device.counters.client_gone == 1)
    r = await http.post("/api/generate", json={**GEN, "stream": False})
    assert r.status_code == 200


async def test_hang_mid_stream_released_by_clearing(
    emu: RunningEmulator, http: httpx.AsyncClient
) -> None:
    await add(http, {"kind": "hang", "after_chunks": 2})
    async with http.stream("POST", "/api/generate", json=GEN) as r:
        lines = r.aiter_lines()
        first = [json.loads(await lines.__anext__()) for _ in range(2)]
        assert all(not c["done"] for c in first)
        reader = asyncio.ensure_future(lines.__anext__())
        await wait_for(lambda: emu.device.in_flight == 1)
        assert not reader.done()
        assert (await http.delete("/_sim/faults")).json() == {"removed": 1}
        rest = [json.loads(await reader)] + [json.loads(line) async for line in lines]
    assert rest[-1]["done"] is True


async def test_slow_multiplies_delays(http: httpx.AsyncClient) -> None:
    body = {**GEN, "stream": False}
    fast = (await http.post("/api/generate", json=body)).json()
    await add(http, {"kind": "slow", "factor": 8, "count": 1})
    slow = (await http.post("/api/generate", json=body)).json()
    assert slow["eval_duration"] > 4 * fast["eval_duration"]
    assert slow["response"] == fast["response"]


async def test_faults_limited_to_model_and_endpoint(http: httpx.AsyncClient) -> None:
    await add(http, {"faults": [{"kind": "fail_before", "model": "eyes:1b"}]})
    assert (await http.post("/api/generate", json={**GEN, "stream": False})).status_code == 200
    r = await http.post("/api/generate", json={"model": "EYES:1b", "prompt": "x"})
    assert r.status_code == 500
    await http.delete("/_sim/faults")
    await add(http, [{"kind": "fail_before", "endpoint": "embed"}])
    assert (await http.post("/api/generate", json={**GEN, "stream": False})).status_code == 200
    r = await http.post("/api/embed", json={"model": "embedder", "input": "x"})
    assert r.status_code == 500


async def test_admin_fault_endpoints(emu: RunningEmulator, http: httpx.AsyncClient) -> None:
    ids = await add(http, [{"kind": "fail_before"}, {"kind": "slow", "factor": 2}])
    listed = (await http.get("/_sim/faults")).json()["faults"]
    assert [f["id"] for f in listed] == ids
    assert listed[0]["remaining"] is None and listed[0]["hits"] == 0
    assert (await http.delete(f"/_sim/faults/{ids[0]}")).json() == {"removed": 1}
    assert (await http.delete(f"/_sim/faults/{ids[0]}")).status_code == 404
    bad = await http.post("/_sim/faults", json={"kind": "explode"})
    assert bad.status_code == 400 and "invalid fault" in bad.json()["error"]
    bad = await http.post("/_sim/faults", json={"kind": "fail_mid_stream"})
    assert bad.status_code == 400
    state = (await http.get("/_sim/state")).json()
    assert len(state["faults"]) == 1


async def test_faults_from_profile() -> None:
    profile = fast_profile(faults=[{"kind": "fail_before", "count": 1, "message": "cold start"}])
    emu = await start_emulator(profile)
    try:
        async with httpx.AsyncClient(base_url=emu.url) as h:
            r = await h.post("/api/generate", json={**GEN, "stream": False})
            assert r.json() == {"error": "cold start"}
            assert (await h.post("/api/generate", json={**GEN, "stream": False})).status_code == 200
            assert (await h.get("/_sim/state")).json()["counters"]["faults_injected"] == 1
    finally:
        await emu.stop()


def test_injector_picks_oldest_fault_per_kind() -> None:
    inj = FaultInjector()
    inj.add(FaultSpec(kind="fail_before", count=1, message="first"))
    inj.add(FaultSpec(kind="fail_before", count=1, message="second"))
    inj.add(FaultSpec(kind="slow", factor=3))
    plans = [inj.plan("m", "chat") for _ in range(3)]
    assert [p.fail_before for p in plans] == [(500, "first"), (500, "second"), None]
    assert all(p.slow_factor == 3 for p in plans)
    assert len(inj.list()) == 1
