"""Seeded, reproducible workloads for ``bench/fleet.py`` (times in simulated seconds).

Each workload is a list of requests (arrival time, model, prompt length, ``num_predict``)
drawn from ``random.Random`` seeded by ``(seed, workload name)``, so every routing policy
gets exactly the same requests at exactly the same (simulated) times.

* ``steady``: Poisson arrivals, mostly small and medium models.
* ``burst``: the same mix in bursts (many requests within a second or two), idle between.
* ``large``: Poisson arrivals, most requests for the large model.
* ``node-death``: ``steady``, and one node dies at 40 % of the arrival window (its
  emulator stops, in-flight streams break, its heartbeats stop).
* ``owner-busy``: ``steady`` on machines people use: one device's owner games and takes
  a call on a schedule, another device fails intermittently (``bench/_simfleet_owner.py``);
  run with capacity learning and failure memory off and on, side by side.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from _simfleet_owner import Phase, owner_schedule
from _simfleet_profiles import DEATH_NODE, LARGE, MEDIUM, SMALL

WORKLOADS = ("steady", "burst", "large", "node-death", "owner-busy")

_WORDS = (
    *("herd", "fleet", "router", "model", "token", "device", "memory", "latency", "queue"),
    *("request", "stream", "node", "load", "answer", "prompt", "context", "reason"),
    *("table", "chart", "summary", "plan", "code", "test", "review", "draft", "note"),
)

Mix = tuple[tuple[str, float], ...]
STEADY_MIX: Mix = ((SMALL, 0.5), (MEDIUM, 0.35), (LARGE, 0.15))
LARGE_MIX: Mix = ((SMALL, 0.15), (MEDIUM, 0.3), (LARGE, 0.55))
STEADY_RATE = 2.5  # requests per simulated second
LARGE_RATE = 1.2
BURST_SIZE = 40
BURST_SPREAD_S = 1.5  # a burst's requests arrive within this many seconds
BURST_GAP_S = 25.0  # between the starts of two bursts
DEATH_AT = 0.4  # share of the arrival window after which the node dies


@dataclass(frozen=True, slots=True)
class SimRequest:
    index: int
    arrival_s: float
    model: str
    prompt: str
    num_predict: int


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    seed: int
    requests: tuple[SimRequest, ...]
    death_node: str | None = None
    death_at_s: float | None = None
    owner_phases: tuple[Phase, ...] = ()  # owner-busy: the owner's device's schedule ...
    flaky_phases: tuple[Phase, ...] = ()  # ... and when the flaky device fails

    @property
    def span_s(self) -> float:
        return self.requests[-1].arrival_s if self.requests else 0.0


def _rng(seed: int, name: str) -> random.Random:
    return random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))


def _pick(rng: random.Random, mix: Mix) -> str:
    models = [m for m, _ in mix]
    weights = [w for _, w in mix]
    return rng.choices(models, weights)[0]


def _request(rng: random.Random, index: int, at: float, mix: Mix) -> SimRequest:
    model = _pick(rng, mix)
    words = [rng.choice(_WORDS) for _ in range(rng.randint(20, 400))]
    low, high = (32, 192) if model == SMALL else (64, 256)
    # The index makes every prompt distinct (no shared KV-cache prefix between requests).
    prompt = f"request {index}: " + " ".join(words)
    return SimRequest(index, round(at, 6), model, prompt, rng.randint(low, high))


def _poisson(rng: random.Random, n: int, rate: float, mix: Mix) -> tuple[SimRequest, ...]:
    at = 0.0
    out = []
    for i in range(n):
        out.append(_request(rng, i, at, mix))
        at += rng.expovariate(rate)
    return tuple(out)


def steady(seed: int, n: int) -> Workload:
    return Workload("steady", seed, _poisson(_rng(seed, "steady"), n, STEADY_RATE, STEADY_MIX))


def burst(seed: int, n: int) -> Workload:
    rng = _rng(seed, "burst")
    times: list[float] = []
    start = 0.0
    while len(times) < n:
        size = min(BURST_SIZE, n - len(times))
        times += sorted(start + rng.uniform(0, BURST_SPREAD_S) for _ in range(size))
        start += BURST_GAP_S
    requests = tuple(_request(rng, i, at, STEADY_MIX) for i, at in enumerate(times))
    return Workload("burst", seed, requests)


def large(seed: int, n: int) -> Workload:
    return Workload("large", seed, _poisson(_rng(seed, "large"), n, LARGE_RATE, LARGE_MIX))


def node_death(seed: int, n: int) -> Workload:
    requests = _poisson(_rng(seed, "node-death"), n, STEADY_RATE, STEADY_MIX)
    span = requests[-1].arrival_s if requests else 0.0
    return Workload("node-death", seed, requests, DEATH_NODE, round(span * DEATH_AT, 6))


def owner_busy(seed: int, n: int) -> Workload:
    requests = _poisson(_rng(seed, "owner-busy"), n, STEADY_RATE, STEADY_MIX)
    owner, flaky = owner_schedule(requests[-1].arrival_s if requests else 0.0)
    return Workload("owner-busy", seed, requests, owner_phases=owner, flaky_phases=flaky)


BUILDERS: dict[str, Callable[[int, int], Workload]] = {
    "steady": steady,
    "burst": burst,
    "large": large,
    "node-death": node_death,
    "owner-busy": owner_busy,
}


def build_workload(name: str, seed: int, n: int) -> Workload:
    try:
        return BUILDERS[name](seed, n)
    except KeyError:
        raise ValueError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})") from None
