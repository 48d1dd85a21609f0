"""Supervision: a crashed RouterActor or NodeActor comes back by itself.

Runs after the other integration tests (it kills herd's actors, though the fleet is
whole again when it ends) and before the destructive ones.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import httpx
import pytest
import ray

from actors import NAMESPACE, ROUTER_NAME, node_actor_name
from launch.localray import wait_until

from .routing_support import set_loaded

pytestmark = pytest.mark.integration

BOUND_S = 30.0  # no client waits longer than this while an actor restarts


def _pid(name: str) -> int | None:
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
        return int(ray.get(handle.pid.remote(), timeout=5))
    except Exception:  # restarting, or not yet registered
        return None


def _chat(endpoint: str, model: str = "tiny:1b") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    return httpx.post(f"{endpoint}/api/chat", json=body, timeout=BOUND_S + 30)


def _trace_stored(endpoint: str, request_id: str) -> bool:
    r = httpx.get(f"{endpoint}/dashboard/api/traces/{request_id}", timeout=10)
    return r.status_code == 200


def test_router_killed_under_load_comes_back_and_loses_no_trace(fleet: Any) -> None:
    endpoint = fleet.endpoint
    online_before = fleet.online()
    old = _pid(ROUTER_NAME)
    assert old is not None
    results: list[tuple[int, float, str]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = _chat(endpoint)
                results.append(
                    (r.status_code, time.monotonic() - t0, r.headers["x-herd-request-id"])
                )
            except httpx.HTTPError as exc:
                results.append((0, time.monotonic() - t0, repr(exc)))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(results) >= 8, 60, "traffic before the kill", step=0.05)
    os.kill(old, signal.SIGKILL)
    t_kill = time.monotonic()
    wait_until(lambda: (_pid(ROUTER_NAME) or old) != old, 60, "the router restarted", 0.1)
    restarted_s = time.monotonic() - t_kill
    wait_until(lambda: fleet.online() >= online_before, 60, "every node back in the status")
    rebuilt_s = time.monotonic() - t_kill
    count = len(results)
    wait_until(lambda: len(results) >= count + 8, 60, "traffic after the restart", step=0.05)
    stop.set()
    for t in threads:
        t.join(BOUND_S + 40)
    assert not any(t.is_alive() for t in threads), "a client hung"
    print(f"router restarted in {restarted_s:.2f} s, fleet state rebuilt in {rebuilt_s:.2f} s")
    assert all(seconds < BOUND_S for _, seconds, _ in results), results
    # While the router restarts, the ingress routes over its mirror or answers 503.
    assert {status for status, _, _ in results} <= {200, 503}, results
    served = [rid for status, _, rid in results if status == 200]
    assert len(served) >= count  # the fleet served through and after the restart
    # Every served request's trace reaches the database: acknowledged ones from the
    # router's journal, the rest re-shipped by the ingress.
    wait_until(
        lambda: all(_trace_stored(endpoint, rid) for rid in served), 90, "every trace stored"
    )


def test_node_actor_killed_is_restarted_and_serves_again(fleet: Any, sim: Any) -> None:
    set_loaded(fleet, sim, "gamma", "thinker:1b", False)  # beta is its only hot node
    name = node_actor_name("beta")
    old = _pid(name)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: (_pid(name) or old) != old, 60, "beta's actor restarted", 0.1)
    wait_until(lambda: "beta" in fleet.online(), 60, "beta online again")

    def served_by_beta() -> bool:
        return _chat(fleet.endpoint, "thinker:1b").headers.get("x-herd-node") == "beta"

    wait_until(served_by_beta, 60, "a request served by beta", step=0.1)
