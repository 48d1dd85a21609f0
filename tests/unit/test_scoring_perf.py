"""Learned performance (herd/scoring/perf.py): the PerfBook and its frozen PerfStats."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from herd.domain import LoadedModel, ModelOnDisk, NodeHeartbeat, Outcome, PerfStats
from herd.scoring.perf import PerfBook, metrics_from_final_chunk, quantile

GIB = 1024**3


def hb(node_id: str, disk: dict[str, int], loaded: dict[str, int]) -> NodeHeartbeat:
    return NodeHeartbeat(
        node_id=node_id,
        hostname=node_id,
        models=tuple(ModelOnDisk(m, size=s) for m, s in disk.items()),
        loaded=tuple(LoadedModel(m, size=s) for m, s in loaded.items()),
    )


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.75, None),
        ([3.0], 0.75, 3.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([4.0, 1.0, 3.0, 2.0], 0.75, 3.25),  # unsorted input
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.75, 4.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.0, 1.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 1.0, 5.0),
    ],
)
def test_quantile(values: list[float], q: float, expected: float | None) -> None:
    assert quantile(values, q) == expected


def test_metrics_from_final_chunk() -> None:
    chunk = {
        "done": True,
        "total_duration": 9_000_000_000,
        "load_duration": 2_500_000_000,
        "prompt_eval_count": 120,
        "prompt_eval_duration": 400_000_000,
        "eval_count": 50,
        "eval_duration": 1_000_000_000,
    }
    assert metrics_from_final_chunk(chunk) == {
        "load_s": 2.5,
        "prompt_eval_s": 0.4,
        "eval_s": 1.0,
        "prompt_tokens": 120,
        "completion_tokens": 50,
    }
    # Missing or nonsense fields are left out.
    assert (
        metrics_from_final_chunk({"eval_count": "7", "load_duration": -1, "eval_duration": True})
        == {}
    )


def test_latency_p75_over_a_bounded_window() -> None:
    book = PerfBook(window=4)
    for latency in (100.0, 100.0, 1.0, 2.0, 3.0, 4.0):  # the two outliers fall out
        book.observe("a", "M:1B", latency_s=latency)
    perf = book.freeze().model("a", "m:1b")
    assert perf is not None and perf.samples == 6
    assert perf.p75_s == pytest.approx(3.25)


@pytest.mark.parametrize(
    ("load_s", "cold", "learned"),
    [
        (2.0, None, 2.0),  # long load_duration: the request loaded the model
        (0.02, None, None),  # a hot model's few milliseconds are no load time
        (0.02, True, 0.02),  # unless the router knows it was cold
        (2.0, False, None),  # or knows it was hot (time spent waiting, not loading)
        (0.0, True, None),
        (None, True, None),
    ],
)
def test_load_time_only_from_cold_loads(
    load_s: float | None, cold: bool | None, learned: float | None
) -> None:
    book = PerfBook()
    book.observe("a", "m:1b", latency_s=3.0, load_s=load_s, cold=cold)
    perf = book.freeze().model("a", "m:1b")
    assert perf is not None and perf.load_s == learned


def test_rates_are_medians_and_ignore_tiny_counts() -> None:
    book = PerfBook(rate_window=3)
    for prompt_tokens, prompt_s, tokens, gen_s in (
        (100, 1.0, 50, 1.0),  # 100 tok/s prompt, 50 tok/s gen (falls out of the window)
        (300, 1.0, 20, 1.0),
        (200, 1.0, 40, 1.0),
        (400, 1.0, 30, 1.0),
        (4, 0.001, 2, 0.001),  # cached prompt, two tokens: not a rate sample
    ):
        book.observe(
            "a",
            "m:1b",
            prompt_tokens=prompt_tokens,
            prompt_eval_s=prompt_s,
            completion_tokens=tokens,
            eval_s=gen_s,
        )
    perf = book.freeze().model("a", "m:1b")
    assert perf is not None
    assert perf.prompt_tps == 300.0  # median of 300, 200, 400
    assert perf.gen_tps == 30.0  # median of 20, 40, 30
    assert perf.service_s == pytest.approx((2 + 2 + 2 + 2 + 0.002) / 5)
    assert perf.completion_tokens == pytest.approx((50 + 20 + 40 + 30 + 2) / 5)


def test_observe_outcome_learns_from_successes_only() -> None:
    book = PerfBook()
    ok = Outcome(
        "r1", "a", "m:1b", ok=True, total_s=3.0, prompt_tokens=100, completion_tokens=40,
        load_s=1.5, prompt_eval_s=0.5, eval_s=1.0,
    )  # fmt: skip
    book.observe_outcome(ok)
    book.observe_outcome(Outcome("r2", "a", "m:1b", ok=False, total_s=99.0, error="boom"))
    book.observe_outcome(Outcome("r3", None, "m:1b", ok=True, total_s=99.0))
    perf = book.freeze().model("a", "m:1b")
    assert perf is not None
    assert (perf.samples, perf.p75_s, perf.load_s) == (1, 3.0, 1.5)
    assert (perf.prompt_tps, perf.gen_tps, perf.service_s) == (200.0, 40.0, 1.5)
    book.observe_outcome(dataclasses.replace(ok, load_s=3.0), cold=False)
    assert book.freeze().model("a", "m:1b").load_s == 1.5  # type: ignore[union-attr]


def test_heartbeats_teach_sizes_and_warm_models() -> None:
    book = PerfBook()
    book.observe_heartbeat(hb("a", {"m:1b": 4 * GIB}, {"m:1b": 5 * GIB}), now=10.0)
    perf = book.freeze().model("a", "m:1b")
    assert perf is not None and (perf.resident_bytes, perf.unloaded_at) == (5 * GIB, None)
    assert book.freeze().fleet["m:1b"].resident_bytes == 5 * GIB
    # Gone from memory: "warm" since this heartbeat.
    book.observe_heartbeat(hb("a", {"m:1b": 4 * GIB}, {}), now=20.0)
    perf = book.freeze().model("a", "m:1b")
    assert perf is not None and (perf.resident_bytes, perf.unloaded_at) == (5 * GIB, 20.0)
    # Still gone: the time it left does not move.
    book.observe_heartbeat(hb("a", {"m:1b": 4 * GIB}, {}), now=30.0)
    assert book.freeze().model("a", "m:1b").unloaded_at == 20.0  # type: ignore[union-attr]
    # Back in memory: hot again, not warm.
    book.observe_heartbeat(hb("a", {"m:1b": 4 * GIB}, {"M:1B": 5 * GIB}), now=40.0)
    assert book.freeze().model("a", "m:1b").unloaded_at is None  # type: ignore[union-attr]


def test_freeze_is_cached_until_a_change() -> None:
    book = PerfBook()
    empty = book.freeze()
    assert empty == PerfStats() and book.freeze() is empty
    book.observe("a", "m:1b", latency_s=1.0)
    first = book.freeze()
    assert first is not empty and first.version > empty.version
    assert book.freeze() is first
    same = hb("a", {"m:1b": GIB}, {})
    book.observe_heartbeat(same, now=1.0)
    second = book.freeze()
    book.observe_heartbeat(same, now=2.0)  # nothing new in it
    assert book.freeze() is second
    # The frozen stats do not move when the book does.
    book.observe("a", "m:1b", latency_s=50.0)
    assert first.model("a", "m:1b").p75_s == 1.0  # type: ignore[union-attr]
    assert book.freeze().model("a", "m:1b").p75_s > 1.0  # type: ignore[operator,union-attr]


def test_frozen_stats_pickle_and_cannot_change() -> None:
    book = PerfBook()
    book.observe_heartbeat(hb("a", {"m:1b": GIB}, {"m:1b": GIB}), now=1.0)
    book.observe("a", "m:1b", latency_s=1.0, load_s=2.0, eval_s=1.0, completion_tokens=10)
    stats = book.freeze()
    assert pickle.loads(pickle.dumps(stats)) == stats
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.version = 5  # type: ignore[misc]


def test_node_rates_scale_with_model_size() -> None:
    book = PerfBook()
    book.observe_heartbeat(hb("a", {"small:1b": 1 * GIB, "big:8b": 8 * GIB}, {}), now=0.0)
    book.observe("a", "small:1b", load_s=0.5, cold=True, completion_tokens=80, eval_s=1.0)
    book.observe("a", "big:8b", load_s=4.0, cold=True, completion_tokens=10, eval_s=1.0,
                 prompt_tokens=100, prompt_eval_s=1.0)  # fmt: skip
    node = book.freeze().nodes["a"]
    assert node.load_bytes_per_s == pytest.approx(2 * GIB)  # both load 2 GiB/s
    assert node.gen_bytes_per_s == pytest.approx(80 * GIB)  # 80 tok/s x 1 GiB, 10 x 8 GiB
    assert node.prompt_bytes_per_s == pytest.approx(800 * GIB)
    assert "b" not in book.freeze().nodes


def test_fleet_view_of_a_model() -> None:
    book = PerfBook()
    for node, latency, tokens in (("a", 2.0, 10), ("b", 1.0, 30), ("c", 4.0, 20)):
        book.observe(node, "m:1b", latency_s=latency, completion_tokens=tokens, eval_s=1.0)
    book.observe_heartbeat(hb("a", {}, {"m:1b": 3 * GIB}), now=0.0)
    book.observe_heartbeat(hb("b", {}, {"m:1b": 2 * GIB}), now=0.0)
    fleet = book.freeze().fleet["m:1b"]
    assert fleet.best_p75_s == 1.0
    assert fleet.completion_tokens == pytest.approx(20.0)
    assert fleet.resident_bytes == 2 * GIB  # the smallest measured


def test_forget_node() -> None:
    book = PerfBook()
    book.observe_heartbeat(hb("a", {"m:1b": GIB}, {"m:1b": GIB}), now=0.0)
    book.observe("a", "m:1b", latency_s=1.0, load_s=1.0, cold=True)
    book.observe("b", "m:1b", latency_s=3.0)
    assert book.freeze().fleet["m:1b"].best_p75_s == 1.0
    book.forget_node("a")
    stats = book.freeze()
    assert stats.model("a", "m:1b") is None and "a" not in stats.nodes
    assert stats.fleet["m:1b"].best_p75_s == 3.0
    book.forget_node("b")
    assert book.freeze().fleet == {}


def test_forget_requests_keeps_what_heartbeats_tell() -> None:
    book = PerfBook()
    book.observe_heartbeat(hb("a", {"m:1b": GIB}, {"m:1b": 2 * GIB}), now=0.0)
    book.observe_heartbeat(hb("b", {"m:1b": GIB}, {}), now=0.0)
    book.observe("a", "m:1b", latency_s=9.0, load_s=1.0, cold=True, completion_tokens=10,
                 eval_s=1.0)  # fmt: skip
    book.observe("b", "m:1b", latency_s=1.0)
    before = book.freeze()
    assert book.forget_requests() == 2
    stats = book.freeze()
    assert stats.version > before.version
    a = stats.model("a", "m:1b")
    assert a is not None
    learned = (a.samples, a.p75_s, a.load_s, a.gen_tps, a.completion_tokens)
    assert learned == (0, None, None, None, None)
    assert a.resident_bytes == 2 * GIB  # from the heartbeat, kept
    assert "a" not in stats.nodes and stats.fleet["m:1b"].best_p75_s is None
    assert book.forget_requests() == 0  # nothing left to forget
    assert book.freeze() is stats
