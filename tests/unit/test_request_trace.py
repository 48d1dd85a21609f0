"""Request traces: TraceContext -> TraceRecord, the outbox, and the ingress middleware."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from herd.dispatch.trace_shipper import TraceShipper
from herd.domain import CandidateScore, Decision, InferenceRequest
from herd.traces.context import TraceContext, TraceOutbox, current_trace
from herd.traces.records import TraceRecord
from serve_app.tracing import TraceMiddleware, error_message


def _decision(node: str = "a") -> Decision:
    return Decision(
        request_id="r1",
        node_id=node,
        model="tiny:1b",
        requested_model="big:70b",
        score=62.0,
        breakdown={"thermal": 50.0, "queue_depth": 12.0},
        candidates=(CandidateScore(node, 62.0, {"thermal": 50.0, "queue_depth": 12.0}),),
        eliminated={"b": "offline"},
        fallback=True,
    )


def _req(**over: Any) -> InferenceRequest:
    values: dict[str, Any] = {
        "request_id": "r1",
        "kind": "chat",
        "model": "big:70b",
        "body": {},
        "stream": True,
        "dialect": "openai",
        "tags": ("app-x", " app-x ", ""),
        "client": "alice",
    }
    values.update(over)
    return InferenceRequest(**values)


def test_served_request_record_carries_route_and_answer() -> None:
    ctx = TraceContext()
    ctx.request(_req())
    ctx.attempt(_decision("b"))
    ctx.failed_attempt("b", "refused", retried=True)
    ctx.attempt(_decision("a"))
    final = {"prompt_eval_count": 11, "eval_count": 22, "load_duration": 2_500_000_000}
    ctx.answer(0.25, {**final, "done_reason": "stop"})
    rec = ctx.close()
    assert isinstance(rec, TraceRecord)
    assert (rec.request_id, rec.status, rec.http_status) == ("r1", "ok", 200)
    assert (rec.requested_model, rec.served_model, rec.node_id) == ("big:70b", "tiny:1b", "a")
    assert (rec.attempts, rec.retries, rec.excluded_nodes) == (2, 1, ("b",))
    assert rec.fallback_used and rec.eliminated == {"b": "offline"}
    assert rec.breakdown == {"thermal": 50.0, "queue_depth": 12.0}
    assert (rec.prompt_tokens, rec.completion_tokens, rec.load_s) == (11, 22, 2.5)
    assert (rec.ttft_s, rec.finish_reason, rec.error) == (0.25, "stop", None)
    assert rec.tags == ("app-x",) and rec.client == "alice" and rec.dialect == "openai"
    assert rec.latency_s is not None and rec.latency_s >= 0
    assert ctx.close() is None  # closed exactly once


@pytest.mark.parametrize(
    ("status", "attempts", "disconnected", "expected"),
    [
        (400, 0, False, "rejected"),
        (404, 0, False, "rejected"),
        (413, 0, False, "rejected"),
        (503, 0, False, "rejected"),  # holding queue timed out before any node
        (503, 1, False, "error"),  # a node was tried
        (502, 1, False, "error"),
        (None, 1, True, "disconnected"),
    ],
)
def test_status_of_unserved_requests(
    status: int | None, attempts: int, disconnected: bool, expected: str
) -> None:
    ctx = TraceContext()
    ctx.attempts = attempts
    ctx.disconnected = disconnected
    if status is not None:
        ctx.fail("nope", status)
    rec = ctx.close()
    assert rec is not None and rec.status == expected
    assert rec.error in ("nope", "client disconnected")


def test_outbox_keeps_order_on_put_back_and_is_bounded() -> None:
    box = TraceOutbox(limit=3, batch=2)
    for i in range(4):
        box.add(TraceContext(request_id=f"r{i}").close())
    assert box.dropped == 1 and len(box) == 3
    batch = box.take()
    assert [r.request_id for r in batch] == ["r1", "r2"]
    box.put_back(batch)
    assert [r.request_id for r in box.take()] == ["r1", "r2"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": "model \'x\' not found"}', "model 'x' not found"),
        (b'{"error": {"message": "bad", "type": "invalid_request_error"}}', "bad"),
        (b"Internal Server Error", "Internal Server Error"),
        (b"[1]", None),
    ],
)
def test_error_message_in_both_dialects(body: bytes, message: str | None) -> None:
    assert error_message(body) == message


class _Router:
    """Stands in for the router's ``record_traces``."""

    def __init__(self, fail: int = 0) -> None:
        self.got: list[TraceRecord] = []
        self.fail = fail
        self.record_traces = self

    async def record(self, records: list[TraceRecord]) -> int:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("router restarting")
        self.got.extend(records)
        return len(records)

    def remote(self, records: list[TraceRecord]) -> Any:
        return self.record(records)


def _app(shipper: TraceShipper) -> FastAPI:
    app = FastAPI()

    @app.post("/api/chat")
    async def chat(request: Request) -> Any:
        body = await request.json()
        ctx = current_trace.get()
        assert ctx is not None
        ctx.request(_req(request_id=body["id"], dialect="ollama"))
        if body.get("reject"):
            return JSONResponse({"error": "model 'nope' not found"}, status_code=404)
        ctx.attempt(_decision())

        async def chunks() -> Any:
            yield b'{"done": false}\n'
            ctx.answer(0.01, {"eval_count": 3, "done_reason": "stop"})
            yield b'{"done": true}\n'

        return StreamingResponse(chunks())

    @app.post("/api/other")
    async def other() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(TraceMiddleware, shipper=lambda: shipper)
    return app


async def test_middleware_traces_served_rejected_and_skips_other_paths() -> None:
    router = _Router(fail=1)
    shipper = TraceShipper(router.record)
    transport = httpx.ASGITransport(app=_app(shipper), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ok = await client.post("/api/chat", json={"id": "served"})
        bad = await client.post("/api/chat", json={"id": "rejected", "reject": True})
        await client.post("/api/other", json={})
        broken = await client.post("/api/chat", content=b"{not json")
    assert ok.status_code == 200 and bad.status_code == 404 and broken.status_code == 500
    assert len(shipper.outbox) == 3
    assert not await shipper.send_once()  # the router is away: the batch is kept
    assert len(shipper.outbox) == 3
    await shipper.drain()
    by_id = {r.request_id: r for r in router.got}
    assert by_id["served"].status == "ok" and by_id["served"].completion_tokens == 3
    assert by_id["rejected"].status == "rejected"
    assert by_id["rejected"].error == "model 'nope' not found"
    (broken_rec,) = [r for r in router.got if r.request_id not in ("served", "rejected")]
    assert broken_rec.status == "error" and broken_rec.http_status == 500


async def test_middleware_marks_an_abandoned_stream_disconnected() -> None:
    shipper = TraceShipper(_Router().record)
    started = asyncio.Event()
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> Any:
        async def chunks() -> Any:
            yield b"data: {}\n\n"
            started.set()
            await asyncio.Event().wait()  # the node is still generating
            yield b"never"

        return StreamingResponse(chunks())

    app.add_middleware(TraceMiddleware, shipper=lambda: shipper)
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await started.wait()
        return {"type": "http.disconnect"}  # the client hangs up mid-stream

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert sent[0]["status"] == 200
    (rec,) = shipper.outbox.take()
    assert rec.status == "disconnected" and rec.dialect == "openai"
