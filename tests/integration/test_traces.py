"""Every request leaves a trace: served, retried, rejected, unknown-model and abandoned ones.

Traces go ingress -> RouterActor (journal, then the database in a writer thread) and are
read back through the dashboard's JSON API on the same endpoint.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from launch.localray import wait_until

pytestmark = pytest.mark.integration


def _trace(endpoint: str, request_id: str) -> dict[str, Any] | None:
    r = httpx.get(f"{endpoint}/dashboard/api/traces/{request_id}", timeout=10)
    return r.json() if r.status_code == 200 else None


def _wait_trace(endpoint: str, request_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def ready() -> bool:
        got = _trace(endpoint, request_id)
        if got:
            found.update(got)
        return bool(got)

    wait_until(ready, 30, f"the trace of {request_id}", step=0.2)
    return found


def test_served_request_trace_has_route_tokens_and_tags(endpoint: str) -> None:
    tag = f"app-{uuid.uuid4().hex[:6]}"
    r = httpx.post(
        f"{endpoint}/v1/chat/completions",
        json={
            "model": "tiny:1b",
            "messages": [{"role": "user", "content": "hello"}],
            "user": "alice",
            "metadata": {"tags": [tag]},
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text
    trace = _wait_trace(endpoint, r.headers["x-herd-request-id"])
    usage = r.json()["usage"]
    assert trace["status"] == "ok" and trace["http_status"] == 200
    assert trace["node_id"] == r.headers["x-herd-node"] and trace["served_model"] == "tiny:1b"
    assert trace["dialect"] == "openai" and trace["kind"] == "chat"
    assert trace["prompt_tokens"] == usage["prompt_tokens"]
    assert trace["completion_tokens"] == usage["completion_tokens"]
    assert trace["latency_s"] > 0 and trace["score"] is not None
    winner = [c for c in trace["candidates"] if c["winner"]]
    assert [c["node_id"] for c in winner] == [trace["node_id"]]
    assert winner[0]["breakdown"] and len(trace["candidates"]) >= 3  # alpha, beta, gamma
    assert trace["client"] == "alice"
    assert tag in trace["tags"]


def test_rejected_and_unknown_model_requests_are_traced(endpoint: str) -> None:
    since = time.time() - 1
    bad = httpx.post(
        f"{endpoint}/api/chat",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert bad.status_code == 400
    missing = httpx.post(
        f"{endpoint}/api/chat",
        json={"model": f"nope-{uuid.uuid4().hex[:6]}:1b", "messages": []},
        timeout=30,
    )
    assert missing.status_code == 404

    def both() -> bool:
        r = httpx.get(
            f"{endpoint}/dashboard/api/traces", params={"status": "rejected", "limit": 200}
        )
        items = [t for t in r.json()["items"] if t["time"] >= since]
        return {t["http_status"] for t in items} >= {400, 404}

    wait_until(both, 30, "traces of the rejected requests", step=0.2)


def test_abandoned_stream_is_traced_as_disconnected(endpoint: str, sim: Any) -> None:
    sim.fault("gamma", kind="slow", model="coder:1b", factor=50.0, count=1)
    rid = None
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            f"{endpoint}/api/chat",
            json={"model": "coder:1b", "messages": [{"role": "user", "content": "long one"}]},
        ) as resp,
    ):
        assert resp.status_code == 200
        rid = resp.headers["x-herd-request-id"]
        for _line in resp.iter_lines():
            break  # hang up after the first chunk
    trace = _wait_trace(endpoint, rid)
    assert trace["status"] == "disconnected" and trace["node_id"] == "gamma"


def test_x_request_id_through_serve_is_the_trace_id(endpoint: str) -> None:
    rid = f"client-{uuid.uuid4()}"
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            f"{endpoint}/api/chat",
            json={"model": "tiny:1b", "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-Request-Id": rid},
        ) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers.get_list("x-request-id") == [rid]  # once: Serve's echo
        assert resp.headers["x-herd-request-id"] == rid
        resp.read()
    trace = _wait_trace(endpoint, rid)
    assert trace["request_id"] == rid and trace["status"] == "ok"
    untraced = httpx.get(f"{endpoint}/api/tags", timeout=10)
    assert len(untraced.headers.get_list("x-request-id")) == 1
    # No header: Serve makes one up, and it is the trace id too.
    r = httpx.post(
        f"{endpoint}/api/chat",
        json={"model": "tiny:1b", "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    assert r.headers.get_list("x-request-id") == [r.headers["x-herd-request-id"]]
    assert _wait_trace(endpoint, r.headers["x-herd-request-id"])["status"] == "ok"
