"""A small, fully worked-out data set for the dashboard tests (views and browser).

Three nodes (alpha: the router's node, online; beta: online, memory pressure; gamma:
offline, older herd) and ten traces, nine in the last 24 hours:

- ``win-*``: five ok gemma3:270m requests on alpha tagged ``app-x``, latencies 0.2 ..
  0.6 s (average 400 ms), 10 prompt + 20 completion tokens each; ``win-1`` is the trace
  whose score breakdown the trace view shows (alpha 87.5 beats beta 61.3, gamma
  eliminated as offline);
- ``slow-*``: two ok tiny:1b requests on beta tagged ``app-y``, 1.5 s and 2.5 s (2.00 s);
- ``fail-1``: a failed tiny:1b request on beta (502);
- ``ghost-1``: a rejected request for a model no node has (404);
- ``old-1``: an ok gemma3:270m request 30 hours ago (only in ranges of 48 h and more).
"""

from __future__ import annotations

from typing import Any

from herd.traces.records import TraceRecord

GIB = 1024**3
HOUR = 3600.0

WIN_BREAKDOWN = {"memory_fit": 40.0, "queue_depth": -2.5, "latency_history": 30.0, "role": 20.0}
BETA_BREAKDOWN = {"memory_fit": 25.0, "queue_depth": -8.75, "latency_history": 30.0, "role": 15.0}
WIN_SCORE = sum(WIN_BREAKDOWN.values())  # 87.5
BETA_SCORE = sum(BETA_BREAKDOWN.values())  # 61.25
CANDIDATES = (
    {"node_id": "alpha", "total": WIN_SCORE, "breakdown": WIN_BREAKDOWN},
    {"node_id": "beta", "total": BETA_SCORE, "breakdown": BETA_BREAKDOWN},
)
ELIMINATED = {"gamma": "node is offline"}
WIN_LATENCIES = (0.2, 0.3, 0.4, 0.5, 0.6)
SLOW_LATENCIES = (1.5, 2.5)


def node(node_id: str, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "node_id": node_id,
        "hostname": f"{node_id}.local",
        "status": "online",
        "backend": "ollama",
        "backend_ok": True,
        "backend_version": "0.12.0",
        "herd_version": "0.1.0",
        "draining": False,
        "cpu_percent": 10.0,
        "cpu_count": 8,
        "memory_total": 32 * GIB,
        "memory_available": 16 * GIB,
        "memory_pressure": "normal",
        "num_parallel": 2,
        "in_flight": 0,
        "in_flight_by_model": {},
        "models": ["gemma3:270m", "tiny:1b"],
        "loaded_models": [],
        "last_seen_s_ago": 0.5,
    }
    base.update(over)
    return base


def fleet_status(now: float) -> dict[str, Any]:
    return {
        "nodes": [
            node(
                "alpha",
                hostname="studio.local",
                cpu_percent=12.5,
                memory_total=64 * GIB,
                memory_available=40 * GIB,
                num_parallel=4,
                in_flight=1,
                in_flight_by_model={"gemma3:270m": 1},
                loaded_models=[{"name": "gemma3:270m", "size": 300_000_000, "context_length": 4}],
                is_router=True,
            ),
            node(
                "beta",
                hostname="gaming-pc.local",
                cpu_percent=55.0,
                memory_available=3 * GIB,
                memory_pressure="warning",
                loaded_models=[{"name": "tiny:1b", "size": 800_000_000, "context_length": 2048}],
            ),
            node("gamma", hostname="laptop.local", status="offline", herd_version="0.0.9",
                 last_seen_s_ago=120.0),
        ],
        "queue": {"waiting": 2, "in_flight": 1},
        "counters": {},
        "time": now,
    }  # fmt: skip


def traces(now: float) -> list[TraceRecord]:
    out = [
        TraceRecord(
            request_id=f"win-{i + 1}",
            time=now - 600 - 60 * i,
            requested_model="gemma3:270m",
            served_model="gemma3:270m",
            node_id="alpha",
            score=WIN_SCORE,
            breakdown=WIN_BREAKDOWN,
            candidates=CANDIDATES,
            eliminated=ELIMINATED,
            latency_s=lat,
            ttft_s=0.05,
            prompt_tokens=10,
            completion_tokens=20,
            tags=("app-x",),
            client="127.0.0.1",
            dialect="openai",
            finish_reason="stop",
        )
        for i, lat in enumerate(WIN_LATENCIES)
    ]
    out += [
        TraceRecord(
            request_id=f"slow-{i + 1}",
            time=now - 2 * HOUR - 60 * i,
            requested_model="tiny:1b",
            served_model="tiny:1b",
            node_id="beta",
            score=70.0,
            latency_s=lat,
            ttft_s=0.5,
            prompt_tokens=5,
            completion_tokens=40,
            tags=("app-y",),
        )
        for i, lat in enumerate(SLOW_LATENCIES)
    ]
    out.append(
        TraceRecord(
            request_id="fail-1",
            time=now - 3 * HOUR,
            requested_model="tiny:1b",
            served_model="tiny:1b",
            node_id="beta",
            status="error",
            http_status=502,
            latency_s=0.8,
            prompt_tokens=5,
            error="backend failed",
            tags=("app-y",),
        )
    )
    out.append(
        TraceRecord(
            request_id="ghost-1",
            time=now - 4 * HOUR,
            requested_model="ghost:70b",
            status="rejected",
            http_status=404,
            attempts=0,
            latency_s=0.01,
            eliminated={"alpha": "model not on node", "beta": "model not on node"},
            error="model 'ghost:70b' not found",
        )
    )
    out.append(
        TraceRecord(
            request_id="old-1",
            time=now - 30 * HOUR,
            requested_model="gemma3:270m",
            served_model="gemma3:270m",
            node_id="alpha",
            latency_s=0.9,
            prompt_tokens=10,
            completion_tokens=10,
        )
    )
    return out


def benchmark_run(now: float) -> dict[str, Any]:
    return {
        "name": "nightly",
        "started_at": now - 2 * HOUR,
        "finished_at": now - 2 * HOUR + 120,
        "params": {"concurrency": 4},
        "results": {
            "requests": 200,
            "requests_per_s": 1.7,
            "tokens_per_s": 123.4,
            "latency_p50_s": 0.4,
            "latency_p95_s": 0.9,
            "latency_p99_s": 1.4,
            "errors": 0,
            "per_model": {"gemma3:270m": {"requests": 150, "tokens_per_s": 98.5}},
            "per_node": {
                "alpha": {"requests": 120, "tokens_per_s": 80.25},
                "beta": {"requests": 80, "tokens_per_s": 43.15},
            },
        },
    }


RECENT_COUNT = 9  # traces in the last 24 hours
