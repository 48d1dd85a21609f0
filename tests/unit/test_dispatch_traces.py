"""Traces and the end of an answer (herd/dispatch/dispatcher.py): exactly one TraceRecord
per request when the dispatcher owns the trace, none when the caller does (it fills the
caller's); mid-stream failures, disconnects and the outcome each attempt reports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from dispatch_fakes import (
    Fleet,
    Reply,
    chat_reply,
    content,
    drain,
    failing,
    final,
    heartbeat,
    request,
    running,
)

from herd.dispatch import attempts
from herd.dispatch import dispatcher as dispatcher_module
from herd.dispatch.trace_shipper import TraceShipper
from herd.errors import BackendError, BackendTimeout, ModelNotFound, NodeUnavailable
from herd.sim.testing import wait_for
from herd.traces.context import TraceContext, current_trace
from herd.traces.records import TraceRecord

TINY = "tiny:1b"
FLEET = (heartbeat("a", loaded=[TINY]), heartbeat("b", loaded=[TINY]))


@pytest.fixture
def open_trace() -> Iterator[TraceContext]:
    """A trace the caller owns (what the ingress's trace middleware sets)."""
    ctx = TraceContext(dialect="openai")
    token = current_trace.set(ctx)
    yield ctx
    current_trace.reset(token)


async def only_record(f: Fleet) -> TraceRecord:
    records = await f.records()
    assert len(records) == 1, records
    return records[0]


# --- traces the dispatcher owns -------------------------------------------------------------
async def test_a_served_request_has_one_ok_trace() -> None:
    async with running(*FLEET) as f:
        req = request(tags=("app-x",), client="alice")
        served = await f.d.stream(req)
        chunks = [*served.first, *await drain(served.rest)]
        assert chunks[-1]["done"] and len(chunks) == 4
        record = await only_record(f)
        assert (record.request_id, record.status, record.http_status) == (req.request_id, "ok", 200)
        assert (record.node_id, record.served_model, record.requested_model) == ("a", TINY, TINY)
        assert (record.attempts, record.retries, record.excluded_nodes) == (1, 0, ())
        assert (record.prompt_tokens, record.completion_tokens) == (7, 3)
        assert record.load_s == pytest.approx(0.25) and record.finish_reason == "stop"
        assert record.ttft_s is not None and record.error is None
        assert (record.tags, record.client, record.kind, record.stream) == (
            ("app-x",),
            "alice",
            "chat",
            True,
        )
        (outcome,) = await f.outcomes()
        assert outcome.ok and outcome.started and outcome.completion_tokens == 3
        assert outcome.load_s == pytest.approx(0.25) and outcome.first_chunk_s is not None


async def test_a_retried_request_still_has_one_trace() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", failing(NodeUnavailable("a is gone")))
        served = await f.d.stream(request())
        await drain(served.rest)
        record = await only_record(f)
        assert (record.status, record.node_id, record.attempts, record.retries) == ("ok", "b", 2, 1)
        assert record.excluded_nodes == ("a",) and record.error is None


async def test_a_failure_before_the_first_chunk_has_one_error_trace() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", failing(BackendError("model crashed", retryable=False)))
        with pytest.raises(BackendError):
            await f.d.stream(request())
        record = await only_record(f)
        assert (record.status, record.http_status, record.error) == ("error", 502, "model crashed")
        assert (record.attempts, record.retries, record.excluded_nodes) == (1, 0, ("a",))


async def test_retries_used_up_has_one_error_trace() -> None:
    async with running(*FLEET, max_retries=1) as f:
        f.nodes.script("a", failing(NodeUnavailable("a is gone")))
        f.nodes.script("b", failing(NodeUnavailable("b is gone")))
        with pytest.raises(NodeUnavailable):
            await f.d.stream(request())
        record = await only_record(f)
        assert (record.status, record.http_status, record.error) == ("error", 503, "b is gone")
        assert (record.attempts, record.retries, record.excluded_nodes) == (2, 1, ("a", "b"))


async def test_a_rejected_request_has_one_trace() -> None:
    async with running(*FLEET) as f:
        with pytest.raises(ModelNotFound):
            await f.d.stream(request("nowhere:1b"))
        record = await only_record(f)
        assert (record.status, record.http_status, record.attempts) == ("rejected", 404, 0)
        assert record.node_id is None


async def test_one_trace_per_request_whatever_happened() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", chat_reply(), failing(BackendError("x", retryable=False)))
        f.nodes.script("a", Reply(first=[content(TINY, "Hi")], rest=[NodeUnavailable("died")]))
        ok, failed, broken = (request(rid=rid) for rid in ("ok", "failed", "broken"))
        await drain((await f.d.stream(ok)).rest)
        with pytest.raises(BackendError):
            await f.d.stream(failed)
        with pytest.raises(BackendError):
            await drain((await f.d.stream(broken)).rest)
        records = {r.request_id: r.status for r in await f.records()}
        assert records == {"ok": "ok", "failed": "error", "broken": "error"}
        assert len(f.router.traces) == 3


# --- the end of an answer: mid-stream failures and disconnects ------------------------------
@pytest.mark.parametrize(
    "exc",
    [
        NodeUnavailable("a died"),  # what a port raises when the node goes away
        BackendError("a's backend broke", retryable=False),
        ConnectionResetError("peer reset"),  # a port that did not map its transport error
    ],
)
async def test_a_mid_stream_failure_is_not_retryable_and_cancels_the_answer(
    exc: Exception,
) -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", Reply(first=[content(TINY, "Hel")], rest=[[content(TINY, "lo")], exc]))
        served = await f.d.stream(request())
        got = []
        with pytest.raises(BackendError) as info:
            async for batch in served.rest:
                got.extend(batch)
        assert got == [content(TINY, "lo")]
        assert info.value.retryable is False
        assert f.nodes.opened_on() == ["a"]  # no retry once output went out
        (answer,) = f.nodes.answers
        assert answer.cancelled
        (outcome,) = await f.outcomes()
        assert (outcome.ok, outcome.started, outcome.node_id) == (False, True, "a")
        assert outcome.error == info.value.message
        record = await only_record(f)
        assert (record.status, record.http_status, record.error) == ("error", 502, outcome.error)
        assert len(f.core.fleet.in_flight()) == 0


async def test_a_stream_without_its_final_chunk_is_an_error() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", chat_reply(done=False))
        served = await f.d.stream(request())
        with pytest.raises(BackendError, match="without a final chunk") as info:
            await drain(served.rest)
        assert not info.value.retryable and f.nodes.answers[0].cancelled
        assert (await only_record(f)).status == "error"


async def test_a_node_that_stalls_mid_stream_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "MARGIN_S", 0.0)
    async with running(*FLEET, chunk_timeout=0.2) as f:
        f.nodes.script("a", Reply(first=[content(TINY, "Hel")], hang_after=True))
        served = await f.d.stream(request())
        with pytest.raises(
            BackendTimeout, match=r"sent nothing for 0.2s \(FLEET_CHUNK_TIMEOUT\)"
        ) as info:
            await drain(served.rest)
        assert not info.value.retryable and f.nodes.answers[0].cancelled
        assert info.value.status == 503


async def test_the_answer_is_read_to_its_end() -> None:
    async with running(*FLEET) as f:
        # the final chunk comes first; the node's answer still ends properly after it
        f.nodes.script("a", Reply(first=[content(TINY, "Hi"), final(TINY)], rest=[[]]))
        served = await f.d.stream(request())
        assert await drain(served.rest) == []  # the empty batch is not passed on
        (answer,) = f.nodes.answers
        assert answer.exhausted and not answer.cancelled
        assert (await only_record(f)).status == "ok"


async def test_a_client_that_stops_reading_is_disconnected() -> None:
    async with running(*FLEET) as f:
        served = await f.d.stream(request())
        assert await anext(served.rest) == [content(TINY, "lo "), content(TINY, "world")]
        await served.rest.aclose()  # type: ignore[attr-defined]
        (answer,) = f.nodes.answers
        assert answer.cancelled and not answer.exhausted
        record = await only_record(f)
        assert (record.status, record.http_status, record.error) == (
            "disconnected",
            499,
            "client disconnected",
        )
        (outcome,) = await f.outcomes()
        assert (outcome.ok, outcome.started, outcome.error) == (False, True, "client disconnected")


async def test_a_client_cancelled_while_waiting_for_chunks_is_disconnected() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", Reply(first=[content(TINY, "Hel")], hang_after=True))
        served = await f.d.stream(request())
        task = asyncio.create_task(drain(served.rest))
        await wait_for(lambda: f.nodes.answers[0].waiting)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert f.nodes.answers[0].cancelled
        record = await only_record(f)
        assert (record.status, record.http_status) == ("disconnected", 499)
        assert len(await f.outcomes()) == 1 and len(f.core.fleet.in_flight()) == 0


async def test_a_client_cancelled_before_the_first_chunk_is_disconnected() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", Reply(hang=True))
        task = asyncio.create_task(f.d.stream(request()))
        await wait_for(lambda: f.nodes.hanging == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert f.nodes.hanging == 0 and f.nodes.opened_on() == ["a"]
        record = await only_record(f)
        assert (record.status, record.http_status, record.attempts) == ("disconnected", 499, 1)
        # The attempt ends: the slot it took on a is given back.
        (outcome,) = await f.outcomes()
        assert (outcome.node_id, outcome.ok, outcome.error) == ("a", False, "client disconnected")
        assert len(f.core.fleet.in_flight()) == 0
        snapshot = f.d.mirror.snapshot(f.core.clock())
        assert all(n.in_flight == 0 for n in snapshot.nodes)


async def test_complete_cancelled_before_the_first_chunk_ends_its_attempt() -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", Reply(hang=True))
        task = asyncio.create_task(f.d.complete(request(stream=False)))
        await wait_for(lambda: f.nodes.hanging == 1)
        task.cancel()  # the caller's own limit (or the client) gave up
        with pytest.raises(asyncio.CancelledError):
            await task
        assert f.nodes.hanging == 0
        (outcome,) = await f.outcomes()
        assert outcome.node_id == "a" and not outcome.ok
        assert len(await f.records()) == 1 and len(f.core.fleet.in_flight()) == 0


async def test_complete_from_a_silent_node_is_a_503_not_a_disconnect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A non-streamed answer whose node stays silent past the first-chunk limit ends in
    the timeout's error (503), its trace a failure, never 'the client left' (no total
    deadline cancels it from outside)."""
    monkeypatch.setattr(attempts, "MARGIN_S", 0.0)
    async with running(*FLEET, max_retries=0, first_chunk_timeout=0.05) as f:
        f.nodes.script("a", Reply(hang=True))
        with pytest.raises(BackendTimeout) as caught:
            await f.d.complete(request(stream=False))
        assert caught.value.status == 503 and "FLEET_FIRST_CHUNK_TIMEOUT" in caught.value.message
        assert f.nodes.hanging == 0
        record = await only_record(f)
        assert (record.status, record.http_status) == ("error", 503), record
        (outcome,) = await f.outcomes()
        assert (outcome.node_id, outcome.ok) == ("a", False)
        assert len(f.core.fleet.in_flight()) == 0


# --- traces the caller owns -----------------------------------------------------------------
async def test_an_open_trace_is_filled_but_not_finished(open_trace: TraceContext) -> None:
    async with running(*FLEET) as f:
        f.nodes.script("a", failing(NodeUnavailable("a is gone")))
        req = request()
        served = await f.d.stream(req)
        await drain(served.rest)
        ctx = open_trace
        assert not ctx.closed and ctx.served and ctx.request_id == req.request_id
        assert (ctx.attempts, ctx.retries, ctx.excluded) == (2, 1, ["a"])
        assert ctx.decision is not None and ctx.decision.node_id == "b"
        assert (ctx.prompt_tokens, ctx.completion_tokens, ctx.finish_reason) == (7, 3, "stop")
        assert await f.records() == []
        record = ctx.close()  # the caller closes it, once
        assert record is not None and record.status == "ok" and record.retries == 1


async def test_an_open_trace_gets_the_failure_but_stays_open(open_trace: TraceContext) -> None:
    async with running(*FLEET, max_retries=0) as f:
        f.nodes.script("a", failing(NodeUnavailable("a is gone")))
        with pytest.raises(NodeUnavailable):
            await f.d.stream(request())
        ctx = open_trace
        assert not ctx.closed and not ctx.served
        assert (ctx.error, ctx.http_status, ctx.excluded) == ("a is gone", 503, ["a"])
        with pytest.raises(ModelNotFound):
            await f.d.stream(request("nowhere:1b"))
        assert (ctx.http_status, ctx.closed) == (404, False)
        assert await f.records() == []


async def test_an_open_trace_sees_a_disconnect(open_trace: TraceContext) -> None:
    async with running(*FLEET) as f:
        served = await f.d.stream(request())
        await anext(served.rest)
        await served.rest.aclose()  # type: ignore[attr-defined]
        assert open_trace.disconnected and not open_trace.closed
        assert open_trace.status() == "disconnected"
        assert await f.records() == []


# --- shipping -------------------------------------------------------------------------------
async def test_traces_the_router_did_not_take_are_sent_again() -> None:
    sent: list[list[TraceRecord]] = []
    fail = True

    async def send(batch: list[TraceRecord]) -> None:
        if fail:
            raise ConnectionError("router restarting")
        sent.append(batch)

    shipper = TraceShipper(send)
    for rid in ("r1", "r2"):
        ctx = TraceContext(request_id=rid)
        ctx.answer(0.1, {"eval_count": 1})
        shipper.finish(ctx)
        shipper.finish(ctx)  # closing twice records once
    assert len(shipper.outbox) == 2
    assert not await shipper.send_once()
    assert len(shipper.outbox) == 2 and shipper.sent == 0
    fail = False
    await shipper.drain()
    assert [[r.request_id for r in batch] for batch in sent] == [["r1", "r2"]]
    assert len(shipper.outbox) == 0 and shipper.sent == 2


async def test_the_background_shipper_sends_finished_traces() -> None:
    async with running(*FLEET) as f:
        served = await f.d.stream(request(rid="shipped"))
        await drain(served.rest)
        await wait_for(lambda: len(f.router.traces) == 1)
        assert f.router.traces[0].request_id == "shipped" and f.d.traces.sent == 1


async def test_a_rest_closed_before_it_was_read_ends_the_attempt() -> None:
    # The ingress closes the rest when the client is gone at the first write: nothing was
    # read from it, yet the node's side stops, the outcome is reported and the trace ends.
    async with running(*FLEET) as f:
        served = await f.d.stream(request())
        await served.rest.aclose()
        await served.rest.aclose()  # twice: still one outcome, one trace
        (answer,) = f.nodes.answers
        assert answer.cancelled and not answer.exhausted
        record = await only_record(f)
        assert (record.status, record.http_status) == ("disconnected", 499)
        (outcome,) = await f.outcomes()
        assert (outcome.ok, outcome.error) == (False, "client disconnected")
