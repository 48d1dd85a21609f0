"""The failure memory on the shared fleet: a node whose backend fails every request is
cooled down after the threshold (FLEET_FAILURE_THRESHOLD=3), probed after the cooldown
(4 s here, doubled by a failed probe), and readmitted when it recovers; the reasons show
in /fleet/status, in the trace's eliminations and in the Health view.

The emulators fail on purpose through their ``/_sim/faults`` hook (the ``sim`` fixture,
which also readmits everything after each test)."""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import pytest

from launch.localray import wait_until

from .routing_support import set_loaded
from .trace_support import wait_trace

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Hello there"}]
ONLY_GAMMA = "eyes:1b"  # only gamma's emulator has it
ON_TWO = "thinker:1b"  # loaded on beta, on disk on gamma


def chat(endpoint: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, "stream": False}
    return httpx.post(f"{endpoint}/api/chat", json=body, timeout=60)


def memory(fleet: Any, node: str, model: str) -> dict[str, Any] | None:
    """The router's failure memory of ``model`` on ``node`` (None: nothing remembered)."""
    entries = (fleet.node_status(node) or {}).get("failures", [])
    return next((e for e in entries if e["model"] == model), None)


def fault_hits(sim: Any, node: str) -> int:
    """Requests the node's emulator failed on purpose so far (its faults' hits)."""
    faults = httpx.get(f"{sim.url(node)}/_sim/faults", timeout=5).json()["faults"]
    return sum(int(f["hits"]) for f in faults)


def test_a_failing_node_is_cooled_down_probed_and_readmitted(
    fleet: Any, endpoint: str, sim: Any, admin: dict[str, str]
) -> None:
    oll = ollama.Client(host=endpoint)
    counters = fleet.status()["counters"]
    sim.fault("gamma", kind="fail_before", model=ONLY_GAMMA, message="gpu fell off the bus")
    try:
        # The only holder fails: each client hears the backend's error at once (502), not
        # a 503 "no node can serve it right now" after the holding queue.
        for _ in range(3):
            with pytest.raises(ollama.ResponseError) as info:
                oll.chat(model=ONLY_GAMMA, messages=MESSAGES)
            assert info.value.status_code == 502 and "gpu fell off the bus" in info.value.error
        entry = memory(fleet, "gamma", ONLY_GAMMA)
        reason = "cooling down after 3 failures: gpu fell off the bus"
        assert entry is not None and entry["state"] == "cooling_down"
        assert (entry["reason"], entry["trips"], entry["cooldown_s"]) == (reason, 1, 4.0)
        assert fleet.status()["counters"]["cooled_down"] == counters["cooled_down"] + 1
        # Cooling down: nothing reaches gamma's backend, the client gets a 503 with why.
        hits = fault_hits(sim, "gamma")
        r = chat(endpoint, ONLY_GAMMA)
        assert r.status_code == 503 and reason in r.json()["error"]
        assert int(r.headers["retry-after"]) >= 1
        assert fault_hits(sim, "gamma") == hits
        health = httpx.get(f"{endpoint}/dashboard/api/health", headers=admin, timeout=30).json()
        check = next(c for c in health["checks"] if c["id"] == "failure_memory")
        assert check["severity"] == "warning"
        assert {"node_id": "gamma", "model": ONLY_GAMMA} in [
            {"node_id": p["node_id"], "model": p["model"]} for p in check["details"]["pairs"]
        ]
        # After the cooldown, one probe: it fails, and the next cooldown is twice as long.
        half_open(fleet, "gamma", ONLY_GAMMA)
        r = chat(endpoint, ONLY_GAMMA)
        assert r.status_code == 502 and "gpu fell off the bus" in r.json()["error"]
        entry = memory(fleet, "gamma", ONLY_GAMMA)
        assert entry is not None and entry["state"] == "cooling_down"
        assert (entry["trips"], entry["cooldown_s"], entry["failures"]) == (2, 8.0, 4)
    finally:
        httpx.delete(f"{sim.url('gamma')}/_sim/faults", timeout=5)  # the backend recovers
    half_open(fleet, "gamma", ONLY_GAMMA)
    r = chat(endpoint, ONLY_GAMMA)  # the probe succeeds: readmitted
    assert r.status_code == 200 and r.headers["x-herd-node"] == "gamma", r.text
    wait_until(lambda: memory(fleet, "gamma", ONLY_GAMMA) is None, 10, "gamma readmitted")
    after = fleet.status()["counters"]
    assert after["readmitted"] == counters["readmitted"] + 1
    assert after["cooled_down"] == counters["cooled_down"] + 2
    assert chat(endpoint, ONLY_GAMMA).status_code == 200  # and it stays admitted
    assert memory(fleet, "gamma", ONLY_GAMMA) is None


def half_open(fleet: Any, node: str, model: str) -> None:
    """Wait out the pair's cooldown (the router's status says when it is over)."""
    wait_until(
        lambda: (memory(fleet, node, model) or {}).get("state") == "half_open",
        30,
        f"{node}'s cooldown for {model} to end",
        step=0.2,
    )


def test_traffic_leaves_a_cooled_node_without_paying_retries(
    fleet: Any, endpoint: str, sim: Any
) -> None:
    set_loaded(fleet, sim, "gamma", ON_TWO, False)
    sim.fault("beta", kind="fail_before", model=ON_TWO, message="runner crashed")
    for _ in range(8):  # beta is the hot one: it gets the first attempts and fails them
        r = chat(endpoint, ON_TWO)
        assert r.status_code == 200 and r.headers["x-herd-node"] == "gamma", r.text
        entry = memory(fleet, "beta", ON_TWO)
        if entry is not None and entry["state"] == "cooling_down":
            break
        # gamma loaded it for the retry; unloaded again, beta stays the only hot node (as
        # when the fleet started), whatever earlier tests taught the router about gamma.
        set_loaded(fleet, sim, "gamma", ON_TWO, False)
    assert entry is not None and entry["state"] == "cooling_down" and entry["failures"] == 3
    assert fault_hits(sim, "beta") == 3
    r = chat(endpoint, ON_TWO)
    assert (r.status_code, r.headers["x-herd-node"], r.headers["x-herd-retries"]) == (
        200,
        "gamma",
        "0",
    )
    assert fault_hits(sim, "beta") == 3  # not tried
    trace = wait_trace(endpoint, r.headers["x-herd-request-id"])
    assert trace["eliminated"]["beta"] == "cooling down after 3 failures: runner crashed"
