"""The dispatcher with the failure memory (herd/dispatch/dispatcher.py over the fakes in
dispatch_fakes.py and a real RouterCore): which outcomes count against a node, fast
failures that stop attracting traffic under every policy, the half-open probe and
readmission, and a client that hears at once when every holder failed its request."""

from __future__ import annotations

import time

import pytest
from dispatch_fakes import Reply, chat_reply, content, drain, failing, heartbeat, request, running

from herd.dispatch import dispatcher
from herd.errors import BackendError, BackendTimeout, BadRequest, NoCapacity
from herd.scoring import POLICY_NAMES
from herd.sim.testing import wait_for

TINY = "tiny:1b"
CRASH = "llama runner process has terminated: exit status 2"
REASON = f"cooling down after 3 failures: {CRASH}"
# a and b both have the model loaded and idle: a wins every tie by its name.
PAIR = (heartbeat("a", loaded=[TINY]), heartbeat("b", loaded=[TINY]))


def crash() -> Reply:
    return failing(BackendError(CRASH, backend_status=500))


async def served_by(f: object, n: int) -> list[tuple[str, int]]:
    """``n`` requests, one after the other: (node, retries) of each."""
    out = []
    for _ in range(n):
        served = await f.d.stream(request())  # type: ignore[attr-defined]
        out.append((served.decision.node_id, served.retries))
        assert await drain(served.rest)
    return out


# --- which outcomes count --------------------------------------------------------------------
async def test_only_the_nodes_own_failures_count() -> None:
    async with running(*PAIR, max_retries=0) as f:
        f.nodes.script("a", crash())
        with pytest.raises(BackendError):
            await f.d.stream(request())
        f.nodes.script("a", failing(BadRequest("invalid options")))  # the client's input
        with pytest.raises(BadRequest):
            await f.d.stream(request())
        f.nodes.script("a", chat_reply(done=False))  # the stream breaks after two batches
        served = await f.d.stream(request())
        with pytest.raises(BackendError, match="without a final chunk"):
            await drain(served.rest)
        served = await f.d.stream(request())  # the client leaves after the first chunk
        await served.rest.aclose()
        faults = [(o.ok, o.node_fault, o.error) for o in await f.outcomes()]
        assert faults == [
            (False, True, CRASH),
            (False, False, "invalid options"),
            (False, True, "stream ended without a final chunk"),
            (False, False, "client disconnected"),
        ]
        h = f.core.failures.pair("a", TINY)
        assert h is not None and (h.failures, h.consecutive, h.until) == (2, 2, None)


async def test_a_chunk_timeout_mid_stream_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher, "MARGIN_S", 0.0)
    async with running(*PAIR, chunk_timeout=0.05) as f:
        f.nodes.script("a", Reply(first=[content(TINY, "Hel")], hang_after=True))
        served = await f.d.stream(request())
        with pytest.raises(BackendTimeout, match="FLEET_CHUNK_TIMEOUT"):
            await drain(served.rest)
        (outcome,) = await f.outcomes()
        assert outcome.node_fault and not outcome.ok


# --- fast failures stop attracting traffic -------------------------------------------------
@pytest.mark.parametrize("policy", POLICY_NAMES)
async def test_a_node_that_fails_fast_is_cooled_down_under_every_policy(policy: str) -> None:
    async with running(*PAIR, routing_policy=policy) as f:
        for _ in range(12):  # a fails every request it gets; b serves
            f.nodes.script("a", crash())
        tried_a = 0
        for _ in range(12):
            ((node, _retries),) = await served_by(f, 1)
            assert node == "b"
            tried_a = f.nodes.opened_on().count("a")
            if tried_a == 3:
                break
        assert tried_a == 3  # every policy sent it the threshold's worth
        await f.d.flush()
        assert f.core.counters["cooled_down"] == 1
        before = len(f.nodes.opened)
        for served in await served_by(f, 4):
            assert served == ("b", 0)  # no retry paid: a is not tried any more
        assert f.nodes.opened_on()[before:] == ["b"] * 4
        decision = (await f.d.stream(request())).decision
        assert decision.eliminated == {"a": REASON}
        (record, *_) = reversed(await f.records())
        assert record.eliminated == {"a": REASON}  # the trace view shows why
        status = await f.d.status()
        (entry,) = next(n for n in status["nodes"] if n["node_id"] == "a")["failures"]
        assert (entry["state"], entry["reason"]) == ("cooling_down", REASON)


@pytest.mark.parametrize("policy", ["least_busy", "expected_latency"])
async def test_without_the_memory_a_fast_failing_node_keeps_attracting_traffic(
    policy: str,
) -> None:
    """The premise of the test above, with FLEET_FAILURE_THRESHOLD=0 (memory off)."""
    async with running(*PAIR, routing_policy=policy, failure_threshold=0) as f:
        for _ in range(6):
            f.nodes.script("a", crash())
        assert await served_by(f, 6) == [("b", 1)] * 6  # every request pays a retry
        assert f.core.failures.models == {} and f.core.counters["cooled_down"] == 0


# --- the half-open probe -------------------------------------------------------------------
async def test_a_failed_probe_cools_longer_and_a_successful_one_readmits() -> None:
    async with running(*PAIR, failure_cooldown=0.05, failure_cooldown_max=10.0) as f:
        for _ in range(4):
            f.nodes.script("a", crash())
        assert await served_by(f, 3) == [("b", 1)] * 3
        h = f.d.mirror.failures.pair("a", TINY)
        assert h is not None and h.trips == 1 and h.until is not None
        until = h.until
        await wait_until_past(until)
        assert await served_by(f, 1) == [("b", 1)]  # the probe went to a, and failed
        h = f.d.mirror.failures.pair("a", TINY)
        assert h is not None and h.trips == 2 and h.until is not None
        assert h.until - until >= 0.1  # twice the first cooldown, counted from the probe

        await wait_until_past(h.until)
        assert await served_by(f, 1) == [("a", 0)]  # a recovered: the probe succeeds
        assert f.d.mirror.failures.models == {}
        await f.d.flush()
        assert f.core.failures.models == {}
        assert (f.core.counters["cooled_down"], f.core.counters["readmitted"]) == (2, 1)
        kinds = [e["kind"] for e in f.core.events]
        assert kinds == ["cooled_down", "cooled_down", "readmitted"]
        assert await served_by(f, 2) == [("a", 0), ("a", 0)]  # readmitted for good


async def wait_until_past(moment: float) -> None:
    await wait_for(lambda: time.time() >= moment)


# --- every holder failed: the client hears at once --------------------------------------------
async def test_when_the_only_holder_fails_the_client_gets_its_error_at_once() -> None:
    beats = (heartbeat("a", loaded=[TINY]), heartbeat("b", loaded=["other:1b"]))
    async with running(*beats, holding_queue_timeout=30.0) as f:
        err = BackendError(CRASH, backend_status=500)
        f.nodes.script("a", failing(err))
        with pytest.raises(BackendError) as info:
            await f.d.stream(request())
        assert info.value is err and info.value.status == 502
        assert f.nodes.opened_on() == ["a"]
        assert f.router.acquired == [] and f.core.counters["held"] == 0  # never held
        (record,) = await f.records()
        assert (record.status, record.http_status, record.error) == ("error", 502, CRASH)


async def test_when_every_holder_fails_the_last_error_comes_at_once() -> None:
    async with running(*PAIR, heartbeat("c", loaded=["other:1b"]), holding_queue_timeout=30.0) as f:
        f.nodes.script("a", crash())
        timeout = BackendTimeout("node b sent no first chunk within 3s (FLEET_FIRST_CHUNK_TIMEOUT)")
        f.nodes.script("b", failing(timeout))
        with pytest.raises(BackendTimeout) as info:
            await f.d.stream(request())
        assert info.value is timeout and info.value.status == 503
        assert f.nodes.opened_on() == ["a", "b"]
        assert f.core.counters["held"] == 0


async def test_every_holder_cooling_down_is_a_503_with_the_reason() -> None:
    async with running(*PAIR, holding_queue_timeout=30.0, failure_cooldown=60.0) as f:
        for _ in range(6):
            f.nodes.script("a", crash())
            f.nodes.script("b", crash())
        for _ in range(3):
            with pytest.raises(BackendError):
                await f.d.stream(request())
        with pytest.raises(NoCapacity) as info:
            await f.d.stream(request())
        assert info.value.status == 503 and info.value.retry_after is not None
        assert f"a: {REASON}" in info.value.message and f"b: {REASON}" in info.value.message
        assert f.core.counters["held"] == 0 and len(f.nodes.opened) == 6
