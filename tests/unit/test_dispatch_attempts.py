"""The dispatcher's attempt loop (herd/dispatch/dispatcher.py, attempts.py) over fake ports
and a real RouterCore: retries, moves, fallbacks, the holding queue, 404 vs 503."""

from __future__ import annotations

import asyncio
import time

import pytest
from dispatch_fakes import (
    Reply,
    chat_reply,
    drain,
    failing,
    heartbeat,
    make_settings,
    request,
    running,
)

from herd.dispatch import attempts
from herd.dispatch.attempts import (
    MAX_MOVES,
    Attempts,
    as_herd_error,
    first_chunk_limit,
)
from herd.errors import (
    BackendError,
    BackendTimeout,
    FleetUnavailable,
    ModelNotFound,
    NoCapacity,
    NodeUnavailable,
    Rebalanced,
)
from herd.sim.testing import wait_for

TINY = "tiny:1b"
# a and b have the model loaded (a wins ties by name), c only on disk: a, b, c in order.
FLEET = (
    heartbeat("a", loaded=[TINY]),
    heartbeat("b", loaded=[TINY]),
    heartbeat("c", models=[TINY]),
)


# --- Attempts: the rules alone --------------------------------------------------------------
def test_a_retry_excludes_the_node_for_the_rest_of_the_request() -> None:
    tries = Attempts(max_retries=2)
    assert tries.failed(NodeUnavailable("gone"), "a") == "retry"
    assert tries.failed(ModelNotFound("lost it"), "b") == "retry"
    assert (tries.attempt, tries.exclude()) == (2, frozenset({"a", "b"}))
    assert tries.failed(BackendError("500"), "c") is None  # no retries left
    assert tries.attempt == 2 and "c" not in tries.exclude()


def test_a_move_avoids_the_node_for_the_next_decision_only() -> None:
    tries = Attempts(max_retries=2)
    assert tries.failed(Rebalanced("handed back"), "a") == "move"
    assert (tries.attempt, tries.moves, tries.exclude()) == (0, 1, frozenset({"a"}))
    assert tries.failed(NodeUnavailable("gone"), "b") == "retry"
    assert tries.exclude() == frozenset({"b"})  # a may be chosen again


def test_moves_are_bounded_then_count_as_retries() -> None:
    tries = Attempts(max_retries=1)
    for node in ("a", "b", "a")[:MAX_MOVES]:
        assert tries.failed(Rebalanced("handed back"), node) == "move"
    assert tries.failed(Rebalanced("handed back"), "b") == "retry"
    assert (tries.attempt, tries.moves, tries.exclude()) == (1, MAX_MOVES, frozenset({"b"}))
    assert tries.failed(Rebalanced("handed back"), "a") is None


@pytest.mark.parametrize(
    "err",
    [BackendError("bad", retryable=False), NoCapacity("full"), FleetUnavailable("gone")],
)
def test_what_is_not_retried(err: Exception) -> None:
    tries = Attempts(max_retries=5)
    assert tries.failed(err, "a") is None  # type: ignore[arg-type]
    assert (tries.attempt, tries.exclude()) == (0, frozenset())


def test_as_herd_error_maps_what_a_port_raised() -> None:
    err = NodeUnavailable("x")
    assert as_herd_error(err, "a") is err
    timeout = as_herd_error(TimeoutError(), "a")
    assert isinstance(timeout, BackendTimeout) and timeout.retryable and "(a)" in timeout.message
    assert timeout.status == 503  # 504 is not a status herd answers
    other = as_herd_error(ConnectionResetError("peer reset"), "b")
    assert type(other) is NodeUnavailable
    assert other.message == "node failed (b): ConnectionResetError: peer reset"
    assert as_herd_error(RuntimeError(), "b").message == "node failed (b): RuntimeError"


def test_time_limits_per_kind() -> None:
    s = make_settings(first_chunk_timeout=30.0, node={"image_timeout": 100.0})
    margin = attempts.MARGIN_S
    assert first_chunk_limit(s, "chat") == 30.0 + margin
    assert first_chunk_limit(s, "embed") == 30.0 + margin
    assert first_chunk_limit(s, "image") == 100.0 + margin  # the one chunk is the whole job
    assert not hasattr(attempts, "request_limit")  # no total limit on a whole request


# --- retries ----------------------------------------------------------------------------
@pytest.mark.parametrize("local_routing", [True, False])
async def test_a_failure_before_the_first_chunk_goes_to_the_next_node(local_routing: bool) -> None:
    async with running(*FLEET, local_routing=local_routing) as f:
        f.nodes.script("a", failing(NodeUnavailable("a is gone")))
        f.nodes.script("b", failing(ModelNotFound("b lost the model")))
        served = await f.d.stream(request())
        assert (served.decision.node_id, served.retries) == ("c", 2)
        assert served.decision.attempt == 2
        assert f.nodes.opened_on() == ["a", "b", "c"]
        assert f.nodes.forgotten == ["a", "b"]
        assert await drain(served.rest)
        outcomes = await f.outcomes()
        if local_routing:
            assert f.router.acquired == []  # no router call on the token path
            assert [b.attempt for b in f.router.begins()] == [0, 1, 2]
        else:
            excluded = [(attempt, exclude) for _, _, exclude, attempt in f.router.acquired]
            assert excluded == [(0, frozenset()), (1, {"a"}), (2, {"a", "b"})]
        failed = [(o.node_id, o.ok, o.moved) for o in outcomes]
        assert failed == [("a", False, False), ("b", False, False), ("c", True, False)]
        assert f.core.counters["failed"] == 2 and f.core.counters["ok"] == 1
        assert len(f.core.fleet.in_flight()) == 0


async def test_the_failed_node_is_not_chosen_again_in_the_same_request() -> None:
    async with running(*FLEET[:2], max_retries=1) as f:
        f.nodes.script("a", failing(NodeUnavailable("a is gone")))
        served = await f.d.stream(request())
        assert served.decision.node_id == "b" and served.retries == 1
        await drain(served.rest)
        # The next request may go to a again: the exclusion was for that request only.
        served = await f.d.stream(request())
        assert served.decision.node_id == "a" and served.retries == 0
        await drain(served.rest)


async def test_an_error_from_a_misbehaving_port_is_a_retry() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", failing(ConnectionResetError("peer reset")))
        served = await f.d.stream(request())
        assert (served.decision.node_id, served.retries) == ("b", 1)
        await drain(served.rest)
        assert "ConnectionResetError" in (await f.outcomes())[0].error  # type: ignore[operator]


async def test_a_node_that_never_answers_is_retried_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(attempts, "MARGIN_S", 0.0)
    async with running(*FLEET, first_chunk_timeout=0.2) as f:
        f.nodes.script("a", Reply(hang=True))
        served = await f.d.stream(request())
        assert (served.decision.node_id, served.retries) == ("b", 1)
        await drain(served.rest)
        outcome = (await f.outcomes())[0]
        assert outcome.node_id == "a"
        assert outcome.error == "node a sent no first chunk within 0.2s (FLEET_FIRST_CHUNK_TIMEOUT)"
        assert f.nodes.hanging == 0  # the hung open was cancelled


async def test_a_non_retryable_error_ends_the_request_with_its_status() -> None:
    async with running(*FLEET) as f:
        bad = BackendError("the model rejected the prompt", retryable=False, backend_status=400)
        f.nodes.script("a", failing(bad))
        with pytest.raises(BackendError) as info:
            await f.d.stream(request())
        assert info.value is bad and info.value.status == 502
        assert f.nodes.opened_on() == ["a"]
        (outcome,) = await f.outcomes()
        assert (outcome.ok, outcome.moved, outcome.error) == (False, False, bad.message)
        assert len(f.core.fleet.in_flight()) == 0


@pytest.mark.parametrize("max_retries", [0, 1, 2])
async def test_max_retries_is_respected(max_retries: int) -> None:
    async with running(*FLEET, max_retries=max_retries) as f:
        for node in "abc":
            f.nodes.script(node, failing(NodeUnavailable(f"{node} is gone")))
        with pytest.raises(NodeUnavailable) as info:
            await f.d.stream(request())
        tried = f.nodes.opened_on()
        assert tried == ["a", "b", "c"][: max_retries + 1]
        assert info.value.message == f"{tried[-1]} is gone" and info.value.status == 503
        assert len(await f.outcomes()) == max_retries + 1


# --- moves ------------------------------------------------------------------------------
async def test_a_handed_back_request_moves_without_counting_a_retry() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", failing(Rebalanced("handed back")))
        f.nodes.script("b", failing(NodeUnavailable("b is gone")))
        served = await f.d.stream(request())
        # a was avoided for the decision after its move only: after b failed, a again.
        assert f.nodes.opened_on() == ["a", "b", "a"]
        assert (served.decision.node_id, served.retries) == ("a", 1)
        assert f.nodes.forgotten == ["b"]  # a node that handed a request back is fine
        await drain(served.rest)
        moved = [(o.node_id, o.ok, o.moved) for o in await f.outcomes()]
        assert moved == [("a", False, True), ("b", False, False), ("a", True, False)]
        assert (f.core.counters["failed"], f.core.counters["ok"]) == (1, 1)


async def test_a_single_move_is_not_a_retry() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", failing(Rebalanced("handed back")))
        served = await f.d.stream(request())
        assert (served.decision.node_id, served.retries, served.moves) == ("b", 0, 1)
        assert served.decision.attempt == 0
        await drain(served.rest)
        outcome = (await f.outcomes())[0]
        assert outcome.moved and not outcome.ok and outcome.node_id == "a"


async def test_more_moves_than_allowed_are_retries() -> None:
    async with running(*FLEET[:2], max_retries=1) as f:
        f.nodes.script("a", failing(Rebalanced("1")), failing(Rebalanced("3")))
        f.nodes.script("b", failing(Rebalanced("2")), failing(Rebalanced("4")))
        served = await f.d.stream(request())
        assert f.nodes.opened_on() == ["a", "b", "a", "b", "a"]
        assert (served.decision.node_id, served.retries, served.moves) == ("a", 1, MAX_MOVES)
        await drain(served.rest)
        moved = [o.moved for o in await f.outcomes()]
        assert moved == [True] * MAX_MOVES + [False, False]
        assert f.nodes.forgotten == ["b"]


# --- fallbacks --------------------------------------------------------------------------
@pytest.mark.parametrize("local_routing", [True, False])
async def test_a_fallback_model_serves_when_nobody_has_the_requested_one(
    local_routing: bool,
) -> None:
    async with running(*FLEET, local_routing=local_routing) as f:
        req = request("huge:405b", fallback_models=("nowhere:1b", TINY))
        decision, retries, result = await f.d.complete(req)
        assert (decision.model, decision.requested_model, decision.fallback) == (
            TINY,
            "huge:405b",
            True,
        )
        assert retries == 0 and decision.node_id == "a"
        assert [o.model for o in f.nodes.opened] == [TINY]
        assert result["model"] == TINY and result["message"]["content"] == "Hello world"
        (record,) = await f.records()
        assert (record.requested_model, record.served_model, record.fallback_used) == (
            "huge:405b",
            TINY,
            True,
        )


async def test_the_requested_model_wins_over_a_fallback() -> None:
    async with running(*FLEET) as f:
        served = await f.d.stream(request("coder:1b", fallback_models=(TINY,)))
        assert (served.decision.node_id, served.decision.model) == ("a", TINY)
        assert served.decision.fallback
        await drain(served.rest)
        f.nodes.add(heartbeat("d", models=["coder:1b"]))
        await f.synced()
        served = await f.d.stream(request("coder:1b", fallback_models=(TINY,)))
        assert (served.decision.node_id, served.decision.model) == ("d", "coder:1b")
        assert not served.decision.fallback
        await drain(served.rest)


# --- the router's side: holding queue, 404, 503, stale mirror ----------------------------
@pytest.mark.parametrize("local_routing", [True, False])
async def test_a_held_request_is_released_by_a_heartbeat(local_routing: bool) -> None:
    async with running(
        heartbeat("a", loaded=[TINY], draining=True), local_routing=local_routing
    ) as f:
        task = asyncio.create_task(f.d.complete(request()))
        await wait_for(lambda: f.core.waiting == 1)
        assert not task.done() and f.nodes.opened == []
        f.nodes.add(heartbeat("a", loaded=[TINY]))  # drain over
        decision, retries, result = await asyncio.wait_for(task, 5)
        assert (decision.node_id, retries, result["done"]) == ("a", 0, True)
        assert len(f.router.acquired) == 1 and f.core.counters["held"] == 1
        assert f.core.waiting == 0


async def test_no_capacity_after_the_holding_queue() -> None:
    async with running(
        heartbeat("a", loaded=[TINY], draining=True), holding_queue_timeout=0.1
    ) as f:
        with pytest.raises(NoCapacity) as info:
            await f.d.stream(request())
        assert info.value.status == 503 and info.value.retry_after is not None
        assert f.nodes.opened == [] and f.core.counters["hold_timeouts"] == 1
        (record,) = await f.records()
        assert (record.status, record.http_status, record.attempts) == ("rejected", 503, 0)


@pytest.mark.parametrize("local_routing", [True, False])
async def test_an_unknown_model_is_a_404(local_routing: bool) -> None:
    async with running(*FLEET, local_routing=local_routing) as f:
        with pytest.raises(ModelNotFound) as info:
            await f.d.stream(request("nowhere:7b"))
        assert info.value.status == 404
        assert [models for _, models, _, _ in f.router.acquired] == [("nowhere:7b",)]
        assert f.nodes.opened == [] and f.core.waiting == 0


async def test_a_stale_mirror_routes_through_the_router() -> None:
    async with running(*FLEET) as f:
        served = await f.d.stream(request())
        await drain(served.rest)
        assert f.router.acquired == []
        f.router.view_error = FleetUnavailable("router restarting")
        await wait_for(lambda: not f.d.mirror.fresh(time.time()), timeout=5)
        assert f.router.forgotten >= 1
        served = await f.d.stream(request(rid="via-router"))
        assert served.decision.node_id == "a"
        assert [rid for rid, *_ in f.router.acquired] == ["via-router"]
        await drain(served.rest)


async def test_a_router_that_does_not_decide_in_time_is_fleet_unavailable() -> None:
    settings = {"holding_queue_timeout": 0.2, "actor_call_timeout": 0.1}
    async with running(*FLEET, local_routing=False, **settings) as f:
        f.router.acquire_hangs = True
        started = time.monotonic()
        with pytest.raises(FleetUnavailable, match="no decision in time"):
            await f.d.stream(request())
        assert time.monotonic() - started < 2  # holding queue + call timeout, not forever
        assert f.router.forgotten == 1 and f.nodes.opened == []
        (record,) = await f.records()
        assert (record.status, record.http_status, record.attempts) == ("rejected", 503, 0)


async def test_the_node_gets_the_served_model_and_its_data_url() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", chat_reply(TINY))
        req = request()
        served = await f.d.stream(req)
        (opened,) = f.nodes.opened
        assert (opened.node_id, opened.model, opened.data_url) == ("a", TINY, "http://a.local:9000")
        assert opened.req == req
        await drain(served.rest)
