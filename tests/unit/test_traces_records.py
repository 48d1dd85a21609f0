"""TraceRecord: JSON and pickle round trips, validation, derived fields."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from herd.domain import CandidateScore, Decision
from herd.traces.records import TraceRecord, normalize_tags, routing_fields


def full_record() -> TraceRecord:
    decision = Decision(
        request_id="r1",
        node_id="mac-studio",
        model="qwen3:8b",
        requested_model="llama3.3:70b",
        score=81.5,
        breakdown={"thermal": 50.0, "memory_fit": 18.5, "queue": -2.0},
        candidates=(
            CandidateScore("mac-studio", 81.5, {"thermal": 50.0}),
            CandidateScore("laptop", 12.0, {"thermal": 0.0}),
        ),
        eliminated={"gaming-pc": "memory pressure critical"},
        fallback=True,
    )
    return TraceRecord(
        request_id="r1",
        time=1_700_000_000.25,
        requested_model="llama3.3:70b",
        **routing_fields(decision),
        attempts=2,
        status="ok",
        http_status=200,
        latency_s=2.5,
        ttft_s=0.5,
        load_s=0.1,
        prompt_tokens=12,
        completion_tokens=100,
        retries=1,
        excluded_nodes=("gaming-pc",),
        tags=("my-app", "prod"),
        client="my-app",
        dialect="openai",
        kind="chat",
        finish_reason="stop",
        stream=True,
    )


def test_json_round_trip_is_one_line() -> None:
    record = full_record()
    line = record.to_json()
    assert "\n" not in line
    assert TraceRecord.from_json(line) == record
    data = json.loads(line)
    assert data["candidates"][1] == {
        "node_id": "laptop",
        "total": 12.0,
        "breakdown": {"thermal": 0.0},
    }
    assert data["served_model"] == "qwen3:8b" and data["fallback_used"] is True


def test_pickles_and_is_frozen() -> None:
    record = full_record()
    assert pickle.loads(pickle.dumps(record)) == record
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = "error"  # type: ignore[misc]


def test_unknown_keys_are_ignored_and_missing_ones_default() -> None:
    record = TraceRecord.from_json(
        '{"request_id": "x", "time": 1.0, "requested_model": "m", "from_the_future": 1}'
    )
    assert (record.status, record.node_id, record.tags, record.candidates) == ("ok", None, (), ())


@pytest.mark.parametrize(
    "line", ['"just a string"', '{"time": 1.0, "requested_model": "m", "request_id": ""}']
)
def test_bad_json_is_a_value_error(line: str) -> None:
    with pytest.raises(ValueError):
        TraceRecord.from_json(line)


def test_status_is_checked() -> None:
    with pytest.raises(ValueError, match="status"):
        TraceRecord(request_id="x", time=1.0, requested_model="m", status="weird")  # type: ignore[arg-type]


def test_tokens_per_s_counts_generation_time_of_ok_requests_only() -> None:
    ok = TraceRecord(
        request_id="a", time=1.0, requested_model="m", latency_s=2.0, ttft_s=1.0,
        completion_tokens=50,
    )  # fmt: skip
    assert ok.tokens_per_s == 50.0
    failed = dataclasses.replace(ok, status="error")
    assert failed.tokens_per_s is None
    no_ttft = dataclasses.replace(ok, ttft_s=None)
    assert no_ttft.tokens_per_s == 25.0
    assert dataclasses.replace(ok, completion_tokens=0).tokens_per_s is None


def test_routing_fields_of_no_decision_is_empty() -> None:
    assert routing_fields(None) == {}


def test_normalize_tags() -> None:
    assert normalize_tags([" a ", "", "b", "a", "x" * 100]) == ("a", "b", "x" * 64)
