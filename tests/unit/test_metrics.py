"""herd.metrics: the recorder (traces and routing events into counters and histograms),
label bounding, the fleet's gauges over a real RouterCore, and the exposition checked by
Prometheus' own ``promtool``."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from typing import Any

import pytest
from dispatch_fakes import heartbeat, make_settings
from prometheus_client.parser import text_string_to_metric_families

from herd.domain import Outcome
from herd.errors import ModelNotFound, NoCapacity
from herd.metrics import FleetMetrics
from herd.metrics.labels import MAX_MODEL_LABELS, NONE, OTHER, LabelCap
from herd.routing.core import RouterCore
from herd.routing.events import Begin, Note
from herd.traces.records import TraceRecord

MODEL = "tiny:1b"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(body: bytes) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    hits = [v for (n, lab), v in found.items() if n == name and want <= set(lab)]
    assert hits, f"no sample {name}{labels}"
    return sum(hits)


def record(rid: str, **over: Any) -> TraceRecord:
    values: dict[str, Any] = {
        "request_id": rid,
        "time": time.time(),
        "requested_model": "tiny:1b",
        "served_model": "tiny:1b",
        "node_id": "alpha",
        "latency_s": 0.5,
        "ttft_s": 0.1,
        "prompt_tokens": 7,
        "completion_tokens": 40,
        "dialect": "openai",
        "kind": "chat",
    }
    values.update(over)
    return TraceRecord(**values)


def known(*names: str) -> Any:
    return lambda name: name in names


def metrics(status: dict[str, Any] | None = None, **over: Any) -> FleetMetrics:
    return FleetMetrics(lambda: status or {}, **over)


def test_a_trace_counts_once_with_its_latency_ttft_tokens_and_speed() -> None:
    m = metrics(known_model=known("tiny:1b"))
    first = record("r1")
    m.traces([first, record("r2", latency_s=2.0, ttft_s=1.0, completion_tokens=10)])
    m.traces([first])  # a batch sent again after a lost acknowledgement
    found = samples(m.exposition())
    labels = {"dialect": "openai", "kind": "chat", "model": "tiny:1b", "served_model": "tiny:1b"}
    assert value(found, "herd_requests_total", **labels, node="alpha", status="ok") == 2
    assert m.recorder.duplicates == 1
    dur = {"kind": "chat", "served_model": "tiny:1b", "node": "alpha", "status": "ok"}
    assert value(found, "herd_request_duration_seconds_count", **dur) == 2
    assert value(found, "herd_request_duration_seconds_sum", **dur) == pytest.approx(2.5)
    assert value(found, "herd_request_duration_seconds_bucket", **dur, le="0.5") == 1
    assert value(found, "herd_request_duration_seconds_bucket", **dur, le="+Inf") == 2
    assert value(found, "herd_time_to_first_token_seconds_sum", node="alpha") == pytest.approx(1.1)
    # 40 tokens in 0.4 s after the first, 10 in 1.0 s
    assert value(found, "herd_generation_tokens_per_second_sum") == pytest.approx(110)
    assert value(found, "herd_tokens_total", type="prompt") == 14
    assert value(found, "herd_tokens_total", type="completion") == 50


def test_failed_rejected_and_disconnected_requests_count_by_status() -> None:
    m = metrics(known_model=known("tiny:1b"))
    m.traces(
        [
            record("a", status="error", http_status=502, completion_tokens=0, retries=2),
            record("b", status="rejected", http_status=404, requested_model="nope:1b",
                   served_model=None, node_id=None, ttft_s=None, attempts=0),
            record("c", status="disconnected", http_status=499),
            record("d", fallback_used=True, requested_model="big:70b"),
        ]
    )  # fmt: skip
    found = samples(m.exposition())
    assert value(found, "herd_requests_total", status="error") == 1
    # an unknown model and no node: bounded values, never the client's string
    assert value(found, "herd_requests_total", status="rejected", model=OTHER, node=NONE) == 1
    assert value(found, "herd_requests_total", status="disconnected") == 1
    assert value(found, "herd_retries_total", model="tiny:1b") == 2
    assert value(found, "herd_fallbacks_total", model=OTHER, served_model="tiny:1b") == 1
    assert not any("nope" in str(key) or "big:70b" in str(key) for key in found)
    # tokens and speed only from served answers
    assert value(found, "herd_tokens_total", type="prompt") == 7  # d: ok only
    assert value(found, "herd_generation_tokens_per_second_count") == 1  # d


def test_model_labels_are_capped_with_an_other_bucket() -> None:
    m = metrics()  # every name "known": only the cap bounds them
    m.traces(record(f"r{i}", requested_model=f"m{i}:1b", served_model=None) for i in range(100))
    found = samples(m.exposition())
    models = {dict(lab)["model"] for (name, lab) in found if name == "herd_requests_total"}
    assert len(models) == MAX_MODEL_LABELS + 1 and OTHER in models
    assert value(found, "herd_requests_total", model=OTHER) == 100 - MAX_MODEL_LABELS
    # an admitted name keeps its series; a late one goes to "other"
    m.traces([record("again", requested_model="m0:1b"), record("late", requested_model="m99:1b")])
    found = samples(m.exposition())
    assert value(found, "herd_requests_total", model="m0:1b") == 2
    assert value(found, "herd_requests_total", model=OTHER) == 100 - MAX_MODEL_LABELS + 1


def test_label_cap_rules() -> None:
    cap = LabelCap(2, admit=lambda v: not v.startswith("x"))
    assert [cap(v) for v in ("a", None, "", "xa", "b", "c", "a", OTHER)] == [
        "a", NONE, NONE, OTHER, "b", OTHER, "a", OTHER,
    ]  # fmt: skip
    assert cap("y" * 500) == OTHER and len(cap) == 2 and cap.refused == 4


def test_model_names_are_canonical() -> None:
    m = metrics(known_model=known("llama3:latest"))
    m.traces([record("r", requested_model="llama3", served_model="llama3:latest")])
    found = samples(m.exposition())
    assert value(found, "herd_requests_total", model="llama3:latest") == 1


def test_routing_events_moves_context_protection_and_vram_fallback() -> None:
    m = metrics(known_model=known("tiny:1b", "big:70b"))
    now, tiny = time.time(), {"model": MODEL}
    m.events(
        [
            Begin("r1", "alpha", "tiny:1b", 0),
            Begin("r2", "beta", "tiny:1b", 1),
            Outcome("r1", "alpha", "tiny:1b", ok=False, moved=True),
            Outcome("r2", "beta", "tiny:1b", ok=True),
            Note("context_protection", {"action": "strip", **tiny, "node_id": "alpha"}, now),
            Note("vram_fallback", {"model": "big:70b", "served": MODEL, "node_id": "beta"}, now),
            Note("something_else", {"model": "tiny:1b"}, now),
        ]
    )  # fmt: skip
    found = samples(m.exposition())
    assert value(found, "herd_queue_wait_seconds_count", model="tiny:1b") == 2
    assert value(found, "herd_queue_wait_seconds_sum") == 0
    assert value(found, "herd_moves_total", model="tiny:1b", node="alpha") == 1
    assert value(found, "herd_context_protection_events_total", action="strip", node="alpha") == 1
    vram = {"model": "big:70b", "served_model": "tiny:1b", "node": "beta"}
    assert value(found, "herd_vram_fallbacks_total", **vram) == 1


async def test_router_decisions_record_their_wait_but_not_a_404() -> None:
    m = metrics(known_model=known("tiny:1b"))

    async def decided() -> str:
        await asyncio.sleep(0.05)
        return "decision"

    async def refused(exc: Exception) -> str:
        raise exc

    assert await m.timed("tiny:1b", decided()) == "decision"
    with pytest.raises(NoCapacity):
        await m.timed("tiny:1b", refused(NoCapacity("full")))
    with pytest.raises(ModelNotFound):
        await m.timed("nope:1b", refused(ModelNotFound("no such model")))
    found = samples(m.exposition())
    assert value(found, "herd_queue_wait_seconds_count") == 2
    assert value(found, "herd_queue_wait_seconds_sum") >= 0.05
    assert value(found, "herd_queue_wait_seconds_bucket", le="0.001") == 1  # the 503


async def test_disabled_records_nothing_and_exposes_nothing() -> None:
    m = metrics(enabled=False)
    m.traces([record("r")])
    m.events([Begin("r", "alpha", "tiny:1b", 0)])
    assert await m.timed("tiny:1b", asyncio.sleep(0, "d")) == "d"
    assert m.exposition() == b""
    m.enabled = True  # the families exist but nothing was counted
    assert not any(name == "herd_requests_total" for name, _ in samples(m.exposition()))


def fleet_status() -> dict[str, Any]:
    core = RouterCore(make_settings())
    core.heartbeat(heartbeat("alpha", loaded=["tiny:1b"], models=["coder:1b"]))
    core.heartbeat(heartbeat("beta", models=["tiny:1b"], draining=True, memory_available=1024))
    core.try_route("r1", ["tiny:1b"])
    core.try_route("r2", ["tiny:1b"])
    status = core.status()
    status["queue"]["waiting"] = 3
    status["queue"]["waiting_by_model"] = {"tiny:1b": 2, "coder:1b": 1}
    status["counters"]["cooled_down"] = 2  # the failure memory's trips, once the router counts them
    status["traces"] = {"submitted": 10, "written": 6, "quarantined": 1, "failures": 2,
                        "crashes": 0, "alive": True}  # fmt: skip
    return status


def test_fleet_gauges_from_the_router_state() -> None:
    status = fleet_status()
    found = samples(metrics(status).exposition())
    assert value(found, "herd_node_status", node="alpha", status="online") == 1
    assert value(found, "herd_node_status", node="alpha", status="offline") == 0
    assert value(found, "herd_node_draining", node="beta") == 1
    assert value(found, "herd_node_in_flight_requests", node="alpha", model="tiny:1b") == 2
    assert value(found, "herd_in_flight_requests") == 2
    assert value(found, "herd_node_loaded_models", node="alpha") == 1
    assert value(found, "herd_node_loaded_models", node="beta") == 0
    assert value(found, "herd_node_loaded_model_bytes", node="alpha", model="tiny:1b") == 100
    assert value(found, "herd_node_memory_available_bytes", node="beta") == 1024
    assert value(found, "herd_node_memory_total_bytes", node="alpha") == 16 * 1024**3
    assert value(found, "herd_holding_queue_depth") == 3
    assert value(found, "herd_waiting_requests", model="coder:1b") == 1
    assert value(found, "herd_trace_backlog") == 3
    assert value(found, "herd_trace_writer_failures_total") == 2
    assert value(found, "herd_trace_writer_up") == 1
    assert value(found, "herd_router_held_requests_total") == 0
    assert value(found, "herd_failure_cooldowns_total") == 2
    assert value(found, "herd_build_info") == 1


def test_fleet_gauges_fold_models_past_the_cap() -> None:
    m = metrics(
        {"nodes": [{"node_id": "alpha", "status": "online",
                    "in_flight_by_model": {f"m{i}": 1 for i in range(MAX_MODEL_LABELS + 5)}}]}
    )  # fmt: skip
    found = samples(m.exposition())
    assert value(found, "herd_node_in_flight_requests", node="alpha", model=OTHER) == 5


def test_promtool_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make system-deps` installs Debian's prometheus"
    m = metrics(fleet_status(), known_model=known("tiny:1b"))
    m.traces([record("a"), record("b", status="error", retries=1, fallback_used=True)])
    m.events([Begin("a", "alpha", MODEL, 0), Outcome("a", "alpha", MODEL, False, moved=True)])
    body = m.exposition()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert (result.stdout + result.stderr).strip() == b"", "promtool found lint problems"
