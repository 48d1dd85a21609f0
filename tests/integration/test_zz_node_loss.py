"""Losing a whole Ray node (runs last: it takes gamma out of the shared fleet)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from launch.localray import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.destructive]


def test_node_lost_mid_request_gives_a_clean_error_then_503(fleet: Any, sim: Any) -> None:
    endpoint = fleet.endpoint
    # coder:1b lives only on gamma; make its answer slow so we can pull the plug mid-stream.
    sim.fault("gamma", kind="slow", model="coder:1b", factor=100.0)
    lines: list[str] = []
    started = threading.Event()
    outcome: dict[str, Any] = {}

    def client() -> None:
        t0 = time.monotonic()
        body = {"model": "coder:1b", "messages": [{"role": "user", "content": "hi"}]}
        try:
            with httpx.stream("POST", f"{endpoint}/api/chat", json=body, timeout=60) as r:
                outcome["status"] = r.status_code
                for line in r.iter_lines():
                    lines.append(line)
                    started.set()
        except httpx.HTTPError as exc:  # reported below instead of dying in the thread
            outcome["error"] = repr(exc)
        outcome["seconds"] = time.monotonic() - t0

    thread = threading.Thread(target=client)
    thread.start()
    assert started.wait(30), "the stream never started"
    fleet.cluster.kill("gamma", hard=True)
    thread.join(60)
    assert not thread.is_alive(), "the client hung after its node died"
    assert outcome["status"] == 200
    if "error" in outcome:
        # Known issue (see the session note): when a Ray node dies, Serve's HAProxy
        # ingress sometimes reloads and cuts the streams it carries. The client then
        # sees a truncated chunked body, never a hang; herd's own path ends the stream
        # with an error event, checked in the branch below.
        assert "incomplete chunked read" in outcome["error"], outcome
    else:
        assert '"error"' in lines[-1], (lines[-3:], outcome)

    wait_until(
        lambda: (fleet.node_status("gamma") or {}).get("status") == "offline",
        20,
        "gamma marked offline",
    )
    r = _post(f"{endpoint}/api/chat", {"model": "coder:1b", "messages": []})
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) >= 1
    # Models that other nodes also hold keep working.
    r = _post(
        f"{endpoint}/api/chat",
        {"model": "tiny:1b", "messages": [{"role": "user", "content": "hi"}], "stream": False},
    )
    assert r.status_code == 200 and r.headers["x-herd-node"] != "gamma"


def _post(url: str, body: dict[str, Any]) -> httpx.Response:
    """POST, reconnecting like the official SDKs do when the ingress drops a connection
    (Serve's HAProxy can reload after a Ray node dies: the known issue above)."""
    for attempt in range(5):
        try:
            return httpx.post(url, json=body, timeout=30)
        except httpx.RemoteProtocolError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")
