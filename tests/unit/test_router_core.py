"""RouterCore (herd/routing/core.py): decisions, fallbacks, the holding queue, outcomes, reads.

The router's clock is a fake the tests move; the holding queue's wake-ups are real
asyncio events, so a waiting request must complete promptly after a heartbeat."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from herd.domain import Decision, LoadedModel, ModelOnDisk, NodeHeartbeat, Outcome
from herd.errors import ModelNotFound, NoCapacity
from herd.routing.core import RouterCore
from herd.settings import Settings, load_settings
from herd.sim.testing import wait_for

T0 = 10_000.0
# A long heartbeat interval: the holding queue also re-checks once per interval, so a
# request served well within it was woken by the fleet change itself.
INTERVAL = 30.0
# Upkeep counters of a router whose queue and upkeep had nothing to do.
IDLE = {"held": 0, "hold_timeouts": 0, "moved": 0, "prewarmed": 0, "reaped": 0}
IDLE |= {"cooled_down": 0, "readmitted": 0}  # the failure memory's


class Clock:
    """Fake time: moves only with ``advance`` (plus real time when ``follow_real``)."""

    def __init__(self, start: float = T0, follow_real: bool = False) -> None:
        self.t = start
        self._real0 = time.monotonic() if follow_real else None

    def __call__(self) -> float:
        real = 0.0 if self._real0 is None else time.monotonic() - self._real0
        return self.t + real

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make_settings(**over: Any) -> Settings:
    values: dict[str, Any] = {
        "heartbeat_interval": INTERVAL,
        "heartbeat_timeout": 15.0,
        "heartbeat_offline": 30.0,
        "holding_queue_timeout": 60.0,
        "routing_policy": "score",  # these tests read the seed's signal breakdown
    }
    values.update(over)
    return load_settings(**values)


def hb(
    node_id: str,
    *,
    models: tuple[str, ...] = (),
    loaded: tuple[str, ...] = (),
    draining: bool = False,
    backend_ok: bool = True,
    ray: str | None = None,
    num_parallel: int = 1,
) -> NodeHeartbeat:
    return NodeHeartbeat(
        node_id=node_id,
        hostname=f"{node_id}.local",
        ray_node_id=ray,
        backend="ollama",
        backend_url="http://127.0.0.1:11434",
        backend_ok=backend_ok,
        backend_version="0.12.6",
        cpu_percent=12.5,
        cpu_count=8,
        memory_total=16 * 1024**3,
        memory_available=8 * 1024**3,
        models=tuple(ModelOnDisk(m, size=100) for m in models),
        loaded=tuple(LoadedModel(m, size=100, context_length=4096) for m in loaded),
        num_parallel=num_parallel,
        draining=draining,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(clock: Clock) -> RouterCore:
    return RouterCore(make_settings(), clock=clock)


# --- routing -------------------------------------------------------------------------


async def test_routes_to_the_hot_node(core: RouterCore) -> None:
    core.heartbeat(hb("cold", models=("tiny:1b",)))
    core.heartbeat(hb("hot", models=("tiny:1b",), loaded=("tiny:1b",)))
    core.heartbeat(hb("other", models=("coder:1b",), loaded=("coder:1b",)))
    d = await core.acquire("r1", ["tiny:1b"])
    assert isinstance(d, Decision)
    assert (d.node_id, d.model, d.requested_model, d.fallback) == (
        "hot",
        "tiny:1b",
        "tiny:1b",
        False,
    )
    assert d.breakdown["thermal"] == 50.0 and d.breakdown["queue_depth"] == 0.0
    assert d.score == sum(d.breakdown.values())  # every seed signal is in the breakdown
    assert [c.node_id for c in d.candidates] == ["hot", "cold"]
    assert d.eliminated == {"other": "model not on node"}
    assert d.attempt == 0
    assert core.counters["requests"] == 1
    assert core.status()["queue"]["in_flight"] == 1
    assert core.status()["nodes"][1]["in_flight_by_model"] == {"tiny:1b": 1}  # "hot"


async def test_in_flight_spreads_load(core: RouterCore) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",)))
    core.heartbeat(hb("b", models=("tiny:1b",)))
    first = await core.acquire("r1", ["tiny:1b"])
    second = await core.acquire("r2", ["tiny:1b"])
    assert (first.node_id, second.node_id) == ("a", "b")


async def test_retry_excludes_the_failed_node(core: RouterCore) -> None:
    core.heartbeat(hb("a", loaded=("tiny:1b",)))
    core.heartbeat(hb("b", models=("tiny:1b",)))
    d = await core.acquire("r1", ["tiny:1b"], exclude=frozenset({"a"}), attempt=1)
    assert d.node_id == "b" and d.attempt == 1
    assert d.eliminated == {"a": "excluded after failure"}
    assert core.counters["retries"] == 1 and core.counters["requests"] == 0


@pytest.mark.parametrize(
    ("models", "node", "model", "fallback"),
    [
        (["big:70b", "mid:8b", "tiny:1b"], "m", "mid:8b", True),  # fallbacks in order
        (["big:70b", "nowhere:1b", "tiny:1b"], "t", "tiny:1b", True),
        (["gone:1b", "tiny:1b"], "t", "tiny:1b", True),  # first model only on an offline node
        (["TINY:1B", "mid:8b"], "t", "TINY:1B", False),  # first model found: no fallback
    ],
)
async def test_fallback_models(
    clock: Clock, models: list[str], node: str, model: str, fallback: bool
) -> None:
    core = RouterCore(make_settings(), clock=clock)
    core.heartbeat(hb("old", models=("gone:1b",)))
    clock.advance(100)  # "old" is now offline
    core.heartbeat(hb("m", models=("mid:8b",)))
    core.heartbeat(hb("t", models=("tiny:1b",)))
    d = await core.acquire("r1", models)
    assert (d.node_id, d.model, d.requested_model, d.fallback) == (node, model, models[0], fallback)


@pytest.mark.parametrize("models", [["ghost:1b"], ["ghost:1b", "phantom:2b"]])
async def test_model_nobody_ever_had_is_404_at_once(core: RouterCore, models: list[str]) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",)))
    with pytest.raises(ModelNotFound) as info:
        await asyncio.wait_for(core.acquire("r1", models), timeout=5)
    assert info.value.status == 404
    assert "ghost:1b" in info.value.message
    assert core.waiting == 0


async def test_empty_fleet_is_404(core: RouterCore) -> None:
    with pytest.raises(ModelNotFound):
        await core.acquire("r1", ["tiny:1b"])


# --- holding queue -------------------------------------------------------------------


async def _waiting(core: RouterCore, task: asyncio.Task[Decision], n: int = 1) -> None:
    await wait_for(lambda: core.waiting == n or task.done(), timeout=5)
    assert not task.done(), task
    assert core.status()["queue"]["waiting"] == n


async def test_waits_while_offline_and_is_served_on_heartbeat(
    core: RouterCore, clock: Clock
) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",)))
    clock.advance(31)  # silent too long: offline
    assert core.status()["nodes"][0]["status"] == "offline"
    task = asyncio.create_task(core.acquire("r1", ["tiny:1b"]))
    await _waiting(core, task)

    core.heartbeat(hb("a", models=("tiny:1b",)))
    d = await asyncio.wait_for(task, timeout=5)
    assert d.node_id == "a" and d.model == "tiny:1b"
    assert core.waiting == 0


async def test_waits_after_ray_node_death_until_revived(core: RouterCore) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",), ray="ray-a"))
    assert core.ray_node_dead("ray-a") == ["a"]
    task = asyncio.create_task(core.acquire("r1", ["tiny:1b"]))
    await _waiting(core, task)
    # The node comes back on a new Ray node (a beat from the dead one is ignored).
    core.heartbeat(hb("a", models=("tiny:1b",), ray="ray-a2"))
    assert (await asyncio.wait_for(task, timeout=5)).node_id == "a"


@pytest.mark.parametrize(
    "blocked", [{"draining": True}, {"backend_ok": False}], ids=["draining", "backend-down"]
)
async def test_waits_while_unavailable_and_is_served_on_heartbeat(
    core: RouterCore, blocked: dict[str, bool]
) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",), **blocked))  # type: ignore[arg-type]
    core.heartbeat(hb("b", models=("coder:1b",)))
    tasks = [asyncio.create_task(core.acquire(f"r{i}", ["tiny:1b"])) for i in range(3)]
    await wait_for(lambda: core.waiting == 3, timeout=5)
    core.heartbeat(hb("b", models=("coder:1b",)))  # an unrelated change: still waiting
    await asyncio.sleep(0)
    await wait_for(lambda: core.waiting == 3, timeout=5)
    assert not any(t.done() for t in tasks)

    core.heartbeat(hb("a", models=("tiny:1b",)))
    decisions = await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert {d.node_id for d in decisions} == {"a"}
    assert core.waiting == 0
    assert core.status()["queue"]["in_flight"] == 3


async def test_waiting_request_uses_a_fallback_that_comes_online(core: RouterCore) -> None:
    core.heartbeat(hb("a", models=("big:70b",), draining=True))
    task = asyncio.create_task(core.acquire("r1", ["big:70b", "tiny:1b"]))
    await _waiting(core, task)
    core.heartbeat(hb("b", models=("tiny:1b",)))
    d = await asyncio.wait_for(task, timeout=5)
    assert (d.node_id, d.model, d.fallback) == ("b", "tiny:1b", True)


async def test_no_capacity_after_the_holding_timeout() -> None:
    clock = Clock(follow_real=True)
    core = RouterCore(make_settings(holding_queue_timeout=0.2, heartbeat_interval=5.0), clock=clock)
    core.heartbeat(hb("a", models=("tiny:1b",), draining=True))
    started = time.monotonic()
    with pytest.raises(NoCapacity) as info:
        await asyncio.wait_for(core.acquire("r1", ["tiny:1b"]), timeout=5)
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 3.0
    assert info.value.status == 503
    assert info.value.retry_after == 5.0  # one heartbeat interval (at least 1 s)
    assert "tiny:1b" in info.value.message
    assert core.waiting == 0
    assert core.fleet.in_flight() == []


async def test_no_capacity_retry_after_is_at_least_one_second() -> None:
    core = RouterCore(
        make_settings(holding_queue_timeout=0.0, heartbeat_interval=0.1),
        clock=Clock(follow_real=True),
    )
    core.heartbeat(hb("a", models=("tiny:1b",), backend_ok=False))
    with pytest.raises(NoCapacity) as info:
        await asyncio.wait_for(core.acquire("r1", ["tiny:1b"]), timeout=5)
    assert info.value.retry_after == 1.0


async def test_explicit_wait_overrides_the_setting(core: RouterCore, clock: Clock) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",), draining=True))
    with pytest.raises(NoCapacity):
        await asyncio.wait_for(core.acquire("r1", ["tiny:1b"], wait=0), timeout=5)


# --- outcomes ------------------------------------------------------------------------


async def test_release_frees_in_flight_and_counts(core: RouterCore, clock: Clock) -> None:
    core.heartbeat(hb("a", models=("tiny:1b",), num_parallel=1))
    d1 = await core.acquire("r1", ["tiny:1b"])
    d2 = await core.acquire("r2", ["tiny:1b"])
    assert d2.breakdown["queue_depth"] == -10.0  # r1 holds the only slot
    assert core.status()["nodes"][0]["in_flight"] == 2

    clock.advance(1.5)
    core.release(
        Outcome(
            "r1",
            d1.node_id,
            d1.model,
            ok=True,
            first_chunk_s=0.1,
            total_s=1.5,
            prompt_tokens=3,
            completion_tokens=7,
            started=True,
        )
    )
    core.release(Outcome("r2", "a", "tiny:1b", ok=False, error="boom"))
    assert core.counters == {"requests": 2, "ok": 1, "failed": 1, "retries": 0, **IDLE}
    status = core.status()
    assert status["nodes"][0]["in_flight"] == 0
    assert status["queue"]["in_flight"] == 0
    assert core.fleet.in_flight() == []

    first, second = core.recent
    assert first == {
        "request_id": "r1",
        "node_id": "a",
        "model": "tiny:1b",
        "ok": True,
        "ttft_s": 0.1,
        "latency_s": 1.5,
        "prompt_tokens": 3,
        "completion_tokens": 7,
        "error": None,
        "started_at": T0,
    }
    assert second["ok"] is False and second["error"] == "boom"

    d3 = await core.acquire("r3", ["tiny:1b"])
    assert d3.breakdown["queue_depth"] == 0.0  # the slot is free again


async def test_release_of_an_unknown_request(core: RouterCore) -> None:
    core.release(Outcome("never", None, "tiny:1b", ok=False, error="no node"))
    assert core.counters["failed"] == 1
    assert core.recent[-1]["started_at"] is None


# --- reads ---------------------------------------------------------------------------


def _fleet_for_reads(core: RouterCore, clock: Clock) -> None:
    core.heartbeat(hb("dead", models=("lost:1b",), loaded=("lost:1b",)))
    clock.advance(100)
    core.heartbeat(hb("a", models=("tiny:1b", "embedder:latest"), loaded=("tiny:1b",)))
    core.heartbeat(hb("b", models=("Tiny:1B", "coder:1b"), draining=True, backend_ok=False))


async def test_catalog(core: RouterCore, clock: Clock) -> None:
    _fleet_for_reads(core, clock)
    catalog = core.catalog()
    assert [entry["model"]["name"] for entry in catalog] == [
        "coder:1b",
        "embedder:latest",
        "tiny:1b",
    ]  # sorted, merged across nodes case-insensitively, offline nodes left out
    by_name = {canonical["model"]["name"].lower(): canonical for canonical in catalog}
    assert by_name["tiny:1b"]["nodes"] == ["a", "b"]
    assert by_name["tiny:1b"]["loaded_on"] == ["a"]
    assert by_name["coder:1b"] == {
        "model": {
            "name": "coder:1b",
            "size": 100,
            "family": "",
            "parameter_size": "",
            "quantization_level": "",
            "modified_at": "",
            "digest": "",
            "category": "llm",
        },
        "nodes": ["b"],
        "loaded_on": [],
    }


async def test_catalog_lists_every_node_running_a_model_not_on_its_disk(core: RouterCore) -> None:
    # Ollama keeps a model loaded after it was deleted from disk; the node can still
    # serve it (has_model counts loaded models), so it belongs in the entry's nodes.
    core.heartbeat(hb("a", loaded=("ghost:1b",)))
    core.heartbeat(hb("b", loaded=("ghost:1b",)))
    (entry,) = core.catalog()
    assert entry["model"]["name"] == "ghost:1b"
    assert entry["loaded_on"] == ["a", "b"]
    assert entry["nodes"] == ["a", "b"]


async def test_running(core: RouterCore, clock: Clock) -> None:
    _fleet_for_reads(core, clock)
    core.heartbeat(hb("c", models=("coder:1b",), loaded=("CODER:1B", "ramonly:1b")))
    running = core.running()
    assert [(r["node"], r["loaded"]["name"]) for r in running] == [
        ("a", "tiny:1b"),
        ("c", "CODER:1B"),
        ("c", "ramonly:1b"),
    ]
    assert running[0]["loaded"] == {
        "name": "tiny:1b",
        "size": 100,
        "size_vram": 0,
        "context_length": 4096,
        "expires_at": "",
    }
    assert running[0]["model"]["name"] == "tiny:1b"
    assert running[1]["model"]["name"] == "coder:1b"  # matched case-insensitively
    assert running[2]["model"] is None


async def test_status_shape(core: RouterCore, clock: Clock) -> None:
    _fleet_for_reads(core, clock)
    await core.acquire("r1", ["tiny:1b"])
    clock.advance(2)
    status = core.status()
    assert set(status) == {"nodes", "queue", "counters", "events", "view_version", "time"}
    assert status["time"] == clock()
    assert status["queue"] == {"waiting": 0, "waiting_by_model": {}, "in_flight": 1}
    assert status["counters"] == {"requests": 1, "ok": 0, "failed": 0, "retries": 0, **IDLE}
    assert status["events"] == []
    nodes = {n["node_id"]: n for n in status["nodes"]}
    assert [n["node_id"] for n in status["nodes"]] == ["a", "b", "dead"]
    assert nodes["dead"]["status"] == "offline"
    assert nodes["a"]["status"] == "online"
    a = nodes["a"]
    assert a == {
        "node_id": "a",
        "hostname": "a.local",
        "status": "online",
        "ray_node_id": None,
        "backend": "ollama",
        "backend_url": "http://127.0.0.1:11434",
        "data_url": "",
        "backend_ok": True,
        "remote": False,
        "backend_version": "0.12.6",
        "herd_version": "",
        "draining": False,
        "last_seen_s_ago": 2.0,
        "cpu_percent": 12.5,
        "cpu_count": 8,
        "memory_total": 16 * 1024**3,
        "memory_available": 8 * 1024**3,
        "memory_pressure": "normal",
        "disk_free": None,  # not reported
        "num_parallel": 1,
        "in_flight": 1,
        "in_flight_by_model": {"tiny:1b": 1},
        "models": ["tiny:1b", "embedder:latest"],
        "loaded_models": [{"name": "tiny:1b", "size": 100, "context_length": 4096}],
        "failures": [],  # nothing failed there
        "capacity": None,  # not learning its owner's week
    }
    assert nodes["b"]["draining"] is True and nodes["b"]["backend_ok"] is False
