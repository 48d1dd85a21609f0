"""A graceful drain loses no request (runs late: beta stays drained for the rest of the
session; test_zz_node_loss and test_zzz_stop, which run after it, do not need beta).

thinker:1b is loaded on beta and only on disk on gamma. With gamma's backend briefly
down, a burst of slow thinker requests all land on beta: ``num_parallel`` of them stream,
the others wait on beta for a slot. Draining beta hands the waiting ones back; the
dispatcher re-routes them to gamma, the running ones finish on beta, and no client sees
an error.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from launch.localray import wait_until
from launch.teardown import drain_node

from .routing_support import (
    bring_backend_up,
    in_flight,
    in_threads,
    node_view,
    ollama_chat_stream,
    set_loaded,
    take_backend_down,
)

pytestmark = [pytest.mark.integration, pytest.mark.destructive]

THINKER = "thinker:1b"


def test_drain_hands_pending_requests_to_other_nodes_and_loses_none(
    fleet: Any, endpoint: str, sim: Any
) -> None:
    set_loaded(fleet, sim, "gamma", THINKER, False)  # nowhere to rebalance to before the drain
    # Two waiting: fewer than the pre-warm threshold, so nothing warms thinker on gamma.
    n = node_view(fleet, "beta")["num_parallel"] + 2
    take_backend_down(fleet, sim, "gamma")
    sim.fault("beta", kind="slow", model=THINKER, factor=400.0)
    with ThreadPoolExecutor(n) as pool:
        futures = in_threads(pool, n, lambda: ollama_chat_stream(endpoint, THINKER))
        wait_until(lambda: in_flight(fleet, "beta", THINKER) == n, 10, "the burst on beta")
        bring_backend_up(fleet, sim, "gamma")
        assert all(not f.done() for f in futures)
        assert drain_node("beta", timeout=60) == "node beta: drained"
        answers = [f.result(timeout=60) for f in futures]

    assert all(a.done for a in answers), answers  # nothing lost, no error line
    assert all(a.headers["x-herd-retries"] == "0" for a in answers)  # a move is no retry
    served = [a.node for a in answers]
    assert served.count("beta") >= 1 and served.count("gamma") >= 1, served
    assert set(served) <= {"beta", "gamma"}

    wait_until(lambda: node_view(fleet, "beta").get("draining") is True, 10, "beta draining")
    for model in (THINKER, "tiny:1b"):
        r = httpx.post(
            f"{endpoint}/api/chat",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-herd-node"] != "beta"
