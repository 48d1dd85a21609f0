"""The emulator's ``down`` fault: the whole Ollama server fails, so a node's probe sees
its backend down; ``/_sim/`` keeps working so a test can bring it back."""

from __future__ import annotations

import httpx
import pydantic
import pytest

from herd.backends.ollama import OllamaBackend
from herd.sim import FaultSpec, RunningEmulator
from herd.sim.faults import DEFAULT_MESSAGES, FaultInjector

CHAT = {"model": "tiny:1b", "messages": [{"role": "user", "content": "hi"}], "stream": False}


async def test_down_fails_every_ollama_route_until_cleared(http: httpx.AsyncClient) -> None:
    r = await http.post("/_sim/faults", json={"kind": "down", "status": 503, "message": "off"})
    assert r.status_code == 200, r.text
    for method, path, body in (
        ("GET", "/api/version", None),
        ("GET", "/api/tags", None),
        ("GET", "/api/ps", None),
        ("POST", "/api/chat", CHAT),
        ("POST", "/api/show", {"model": "tiny:1b"}),
    ):
        r = await http.request(method, path, json=body)
        assert (r.status_code, r.json()) == (503, {"error": "off"}), path
    state = (await http.get("/_sim/state")).json()  # the admin API stays up
    assert state["faults"][0]["kind"] == "down" and state["faults"][0]["hits"] == 5
    assert (await http.delete("/_sim/faults")).json() == {"removed": 1}
    assert (await http.get("/api/tags")).status_code == 200
    assert (await http.post("/api/chat", json=CHAT)).json()["done"] is True


async def test_a_probe_sees_the_backend_down_then_up(
    emu: RunningEmulator, http: httpx.AsyncClient
) -> None:
    backend = OllamaBackend(emu.url)
    try:
        assert (await backend.probe()).ok
        await http.post("/_sim/faults", json={"kind": "down"})
        state = await backend.probe()
        assert not state.ok and DEFAULT_MESSAGES["down"] in (state.error or "")
        await http.delete("/_sim/faults")
        back = await backend.probe()
        assert back.ok and "tiny:1b" in {m.name for m in back.models}
    finally:
        await backend.close()


def test_down_counts_requests_and_leaves_per_request_plans_alone() -> None:
    faults = FaultInjector([FaultSpec(kind="down", count=2, status=502)])
    assert faults.plan("tiny:1b", "chat").any is False  # not a per-request fault
    assert faults.down() == (502, DEFAULT_MESSAGES["down"])
    assert faults.down() == (502, DEFAULT_MESSAGES["down"])
    assert faults.down() is None and faults.list() == []
    assert faults.injected == 2


def test_down_takes_no_model_or_endpoint() -> None:
    for extra in ({"model": "tiny:1b"}, {"endpoint": "chat"}):
        with pytest.raises(pydantic.ValidationError, match="whole server"):
            FaultSpec.model_validate({"kind": "down", **extra})
