"""Helpers for the routing-engine integration tests: requests run in threads, the
router's view of a node, and loading/unloading a model straight on an emulator (test
setup that bypasses herd, so the router only learns of it through heartbeats)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from launch.localray import wait_until

MESSAGES = [{"role": "user", "content": "Tell me a story."}]


@dataclass
class Answer:
    """What a client saw: status, routing headers, every NDJSON line (or the error)."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def node(self) -> str:
        return self.headers.get("x-herd-node", "")

    @property
    def done(self) -> bool:
        """A 200 stream that ended with its final chunk and carried no error line."""
        return (
            self.status == 200
            and self.error is None
            and bool(self.chunks)
            and self.chunks[-1].get("done") is True
            and not any("error" in c for c in self.chunks)
        )


def ollama_chat_stream(endpoint: str, model: str, **extra: Any) -> Answer:
    """One streamed ``/api/chat``; never raises (the outcome is in the answer)."""
    answer = Answer()
    body = {"model": model, "messages": MESSAGES, **extra}
    try:
        with httpx.stream("POST", f"{endpoint}/api/chat", json=body, timeout=60) as r:
            answer.status = r.status_code
            answer.headers = {k.lower(): v for k, v in r.headers.items()}
            for line in r.iter_lines():
                if line.strip():
                    answer.chunks.append(json.loads(line))
    except (httpx.HTTPError, ValueError) as exc:
        answer.error = repr(exc)
    return answer


def in_threads(
    pool: ThreadPoolExecutor, n: int, call: Callable[[], Answer]
) -> list[Future[Answer]]:
    return [pool.submit(call) for _ in range(n)]


def node_view(fleet: Any, name: str) -> dict[str, Any]:
    """The router's entry for ``name`` in ``/fleet/status`` ({} while unknown)."""
    return fleet.node_status(name) or {}


def in_flight(fleet: Any, name: str, model: str) -> int:
    return int(node_view(fleet, name).get("in_flight_by_model", {}).get(model, 0))


def counters(fleet: Any) -> dict[str, int]:
    result: dict[str, int] = fleet.status()["counters"]
    return result


def events(fleet: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in fleet.status()["events"] if e.get("kind") == kind]


def loaded_on_emulator(sim: Any, node: str) -> set[str]:
    return {m["name"] for m in sim.state(node)["loaded"]}


def router_sees_loaded(fleet: Any, node: str, model: str) -> bool:
    return any(m["name"] == model for m in node_view(fleet, node).get("loaded_models", []))


def set_loaded(fleet: Any, sim: Any, node: str, model: str, loaded: bool) -> None:
    """Load (forever) or unload ``model`` on ``node``'s emulator directly, then wait until
    the router's view agrees."""
    body = {"model": model, "keep_alive": -1 if loaded else 0}
    r = httpx.post(f"{sim.url(node)}/api/generate", json=body, timeout=30)
    r.raise_for_status()
    wait_until(
        lambda: router_sees_loaded(fleet, node, model) is loaded,
        10,
        f"the router to see {model} {'loaded' if loaded else 'unloaded'} on {node}",
    )


def take_backend_down(fleet: Any, sim: Any, node: str) -> None:
    """The emulator's ``down`` fault: every Ollama route fails, so the node's heartbeat
    reports its backend down (the node itself stays online)."""
    sim.fault(node, kind="down", status=503)
    wait_until(
        lambda: node_view(fleet, node).get("backend_ok") is False,
        10,
        f"{node}'s heartbeat to report its backend down",
    )
    # ... and the ingress, which routes over a mirror of the router's view, to know too.
    seen = fleet.status()["view_version"]
    wait_until(
        lambda: fleet.status()["ingress_view_version"] >= seen,
        10,
        "the ingress's routing view to catch up",
        step=0.05,
    )


def bring_backend_up(fleet: Any, sim: Any, node: str, wait: bool = True) -> None:
    httpx.delete(f"{sim.url(node)}/_sim/faults", timeout=5).raise_for_status()
    if wait:
        wait_until(
            lambda: node_view(fleet, node).get("backend_ok") is True,
            10,
            f"{node}'s backend back up",
        )
