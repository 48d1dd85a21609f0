"""One ``bench/fleet.py`` run: a fresh simulated fleet, one routing policy, one workload.

Every time setting of the router is divided by ``time_scale`` (the emulators run
``time_scale`` times faster than the devices they model), so the router sees the same
fleet, only faster; results are reported in simulated seconds (wall seconds x scale).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from _load import percentile
from _simfleet_driver import FleetDriver, RequestResult, SimNode, chat_request, make_agent
from _simfleet_hosts import EmulatorHost, sim_state
from _simfleet_owner import (
    FLAKY_NODE,
    OWNER_NODE,
    ScheduledOwner,
    install_learners,
    owner_hits,
    play_schedule,
)
from _simfleet_profiles import fleet_profiles
from _simfleet_workloads import Workload

from herd.routing.core import RouterCore
from herd.settings import Settings, load_settings
from herd.sim import SimProfile

POLICIES = ("round_robin", "least_busy", "score", "expected_latency")
DEFAULT_POLICY = "score"  # what the router does when it has no routing_policy setting
RAY_DETECT_S = 15.0  # Ray's health check (3 s x 5 failures) before it reports a node dead
# Router settings in seconds (their defaults are real-world times): divided by time_scale.
TIME_SETTINGS = (
    "heartbeat_interval",
    "heartbeat_timeout",
    "heartbeat_offline",
    "holding_queue_timeout",
    "first_chunk_timeout",
    "chunk_timeout",
    "score_warm_window",
    "zombie_timeout",
    "prewarm_cooldown",
    "failure_cooldown",
    "failure_cooldown_max",
    "failure_half_life",
)
# Expected-latency priors in ScoringWeights that are rates (per second): x time_scale.
RATE_PRIORS = (
    "default_load_bytes_per_s",
    "default_gen_bytes_per_s",
    "default_prompt_bytes_per_s",
)


class PolicyUnavailable(Exception):
    """The router has no ``routing_policy`` setting yet, or not this value."""


def has_policy_setting() -> bool:
    return "routing_policy" in Settings.model_fields


def router_settings(policy: str, time_scale: float, **extra: Any) -> Settings:
    """The router's settings for ``policy`` with every time setting sped up."""
    fields = Settings.model_fields
    over: dict[str, Any] = {
        name: fields[name].default / time_scale for name in TIME_SETTINGS if name in fields
    }
    over.update(extra)
    if has_policy_setting():
        over["routing_policy"] = policy
    elif policy != DEFAULT_POLICY:
        raise PolicyUnavailable(f"no FLEET_ROUTING_POLICY setting yet (policy {policy!r})")
    try:
        return load_settings(**over)
    except Exception as exc:  # ConfigError: the setting exists but not this value
        raise PolicyUnavailable(str(exc)) from None


def node_settings(settings: Settings, profile: SimProfile) -> Settings:
    """The settings of the node that runs ``profile``'s device (its slots and memory)."""
    node = settings.node.model_copy(
        update={
            "name": profile.name,
            "num_parallel": profile.num_parallel,
            "memory_bytes": profile.memory_bytes,
        }
    )
    return settings.model_copy(update={"node": node})


def scaled_router(settings: Settings, time_scale: float) -> RouterCore:
    """A RouterCore whose rate priors (and learner thresholds) match the faster fleet."""
    core = RouterCore(settings)
    priors = {
        name: getattr(core.weights, name) * time_scale
        for name in RATE_PRIORS
        if hasattr(core.weights, name)
    }
    if priors:
        core.weights = dataclasses.replace(core.weights, **priors)
    book = getattr(core, "perf", None)
    if book is not None and hasattr(book, "cold_load_s"):
        book.cold_load_s /= time_scale  # a load_duration this long means a cold load
    return core


def perfbook_mode(core: RouterCore) -> str:
    """Who feeds the PerfBook learner: the router itself, or nobody (not wired yet)."""
    return "router" if getattr(core, "perf", None) is not None else "none"


@dataclass(slots=True)
class RunResult:
    policy: str
    workload: str
    issued: int
    completed: int
    failed: int
    retries: int
    p50_s: float
    p95_s: float
    p95_ttft_s: float
    cold_loads: int
    evictions: int
    req_per_s: float
    wall_s: float
    loop_lag_p99_ms: float
    moves: int = 0
    prewarms: int = 0
    served_by: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    perfbook: str = "none"
    features: str = "-"  # owner-busy: capacity learning and failure memory "off" or "on"
    owner_hits: int = 0  # owner-busy: requests run on the owner's device while busy ...
    call_hits: int = 0  # ... of which while the owner was in the call

    def row(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, float):
                out[k] = round(v, 3) if math.isfinite(v) else None
        return out


class LoopLag:
    """How late the event loop wakes up (wall ms): a check on the simulation's fidelity."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.period)
            self.samples.append((time.perf_counter() - t - self.period) * 1000)

    async def stop(self) -> float:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return percentile(self.samples, 99) if self.samples else 0.0


async def _counters(session: aiohttp.ClientSession, urls: dict[str, str]) -> dict[str, Any]:
    states = await asyncio.gather(*(sim_state(session, u) for u in urls.values()))
    return {name: s["counters"] for name, s in zip(urls, states, strict=True)}


def summarize(
    policy: str,
    workload: Workload,
    results: list[RequestResult],
    loads: tuple[int, int],
    time_scale: float,
    wall_s: float,
    lag_ms: float,
    driver: FleetDriver,
) -> RunResult:
    ok = [r for r in results if r.ok]
    lat = [r.latency_s * time_scale for r in ok if r.latency_s is not None]
    ttft = [r.ttft_s * time_scale for r in ok if r.ttft_s is not None]
    if ok:
        first = min(r.arrival for r in results)
        last = max(r.arrival + (r.latency_s or 0.0) for r in ok)
        span = (last - first) * time_scale
        rate = len(ok) / span if span > 0 else math.nan
    else:
        rate = 0.0
    errors = Counter((r.error or "?")[:60] for r in results if not r.ok)
    return RunResult(
        policy=policy,
        workload=workload.name,
        issued=len(results),
        completed=len(ok),
        failed=len(results) - len(ok),
        retries=sum(r.retries for r in results),
        p50_s=percentile(lat, 50),
        p95_s=percentile(lat, 95),
        p95_ttft_s=percentile(ttft, 95),
        cold_loads=loads[0],
        evictions=loads[1],
        req_per_s=rate,
        wall_s=wall_s,
        loop_lag_p99_ms=lag_ms,
        moves=sum(r.moves for r in results),
        prewarms=driver.upkeep_counts["warms"],
        served_by=dict(sorted(Counter(r.node for r in ok if r.node).items())),
        errors=dict(errors.most_common(5)),
        perfbook=perfbook_mode(driver.core),
    )


async def run_once(
    policy: str, workload: Workload, time_scale: float, host: EmulatorHost, features: str = "-"
) -> RunResult:
    """Start a fresh fleet on ``host``, play ``workload`` under ``policy``, tear it down.
    ``features`` "off": no failure memory; "on": capacity learning on every node too."""
    extra: dict[str, Any] = {"failure_threshold": 0} if features == "off" else {}
    settings = router_settings(policy, time_scale, **extra)
    profiles = fleet_profiles(time_scale)
    driver: FleetDriver | None = None
    nodes: list[SimNode] = []
    async with aiohttp.ClientSession() as session:
        try:
            await host.start(profiles)
            for p in profiles:
                agent = make_agent(node_settings(settings, p), p.name, host.urls[p.name])
                nodes.append(SimNode(p.name, host.urls[p.name], agent))
                await agent.start()
            owners = {p.name: ScheduledOwner((), time_scale) for p in profiles}
            owners[OWNER_NODE] = ScheduledOwner(workload.owner_phases, time_scale)
            if features == "on":
                agents = {n.name: n.agent for n in nodes}
                install_learners(agents, owners, settings.heartbeat_interval)
            before = await _counters(session, host.urls)
            core = scaled_router(settings, time_scale)
            driver = FleetDriver(settings, nodes, core, time_scale)
            await driver.start()
            lag = LoopLag()
            lag.start()
            t0 = time.perf_counter()
            for owner in owners.values():
                owner.t0 = t0
            schedule = {OWNER_NODE: workload.owner_phases, FLAKY_NODE: workload.flaky_phases}
            scheduled = asyncio.create_task(
                play_schedule(session, host.urls, schedule, time_scale, t0)
            )
            dead: dict[str, Any] = {}
            death = asyncio.create_task(_death(driver, host, session, workload, time_scale, dead))
            results = await _play(driver, workload, time_scale, t0)
            scheduled.cancel()
            await asyncio.gather(scheduled, return_exceptions=True)
            wall = time.perf_counter() - t0
            if dead:  # killed already; Ray's report would come after the run
                death.cancel()
            await asyncio.gather(death, return_exceptions=True)
            lag_ms = await lag.stop()
            live = {n: u for n, u in host.urls.items() if n not in dead}
            after = {**await _counters(session, live), **dead}
            loads = (
                sum(after[n]["cold_loads"] - before[n]["cold_loads"] for n in after),
                sum(after[n]["evictions"] - before[n]["evictions"] for n in after),
            )
            result = summarize(policy, workload, results, loads, time_scale, wall, lag_ms, driver)
            result.features = features
            hits = owner_hits(results, workload.owner_phases, t0, time_scale)
            result.owner_hits, result.call_hits = sum(hits.values()), hits["meeting"]
            return result
        finally:
            if driver is not None:
                await driver.stop()
            else:
                for node in nodes:
                    await node.agent.stop()
            await host.close()


async def _play(
    driver: FleetDriver, workload: Workload, time_scale: float, t0: float
) -> list[RequestResult]:
    tasks = []
    for sim in workload.requests:
        delay = t0 + sim.arrival_s / time_scale - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        req = chat_request(sim.index, sim.model, sim.prompt, sim.num_predict)
        tasks.append(asyncio.create_task(driver.serve(req, sim.index)))
    return list(await asyncio.gather(*tasks))


async def _death(
    driver: FleetDriver,
    host: EmulatorHost,
    session: aiohttp.ClientSession,
    workload: Workload,
    time_scale: float,
    dead: dict[str, Any],
) -> None:
    """Kill ``workload.death_node`` at its time; Ray reports it dead ``RAY_DETECT_S`` later."""
    name, at = workload.death_node, workload.death_at_s
    if name is None or at is None:
        return
    start = time.perf_counter()
    await asyncio.sleep(at / time_scale)
    dead[name] = (await _counters(session, {name: host.urls[name]}))[name]
    driver.node_died(name)
    await host.kill(name)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(max(0.0, (at + RAY_DETECT_S) / time_scale - elapsed))
    driver.core.ray_node_dead(driver.nodes[name].agent.ray_node_id or "")
