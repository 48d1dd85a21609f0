"""Request ids: X-Request-Id becomes the trace id; every response carries the ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import httpx2
import ollama
import pytest
from dispatch_fakes import Fleet, heartbeat, running
from openai import AsyncOpenAI

from herd.traces.request_ids import MAX_REQUEST_ID_CHARS, RequestIds, valid_request_id
from serve_app.routes import build_app
from serve_app.service import HerdService

BASE = "http://127.0.0.1:11435"
MODEL = "tiny:1b"


@pytest.mark.parametrize(
    "value",
    ["0b8f1c2e-7c1d-4c8e-9b1a-3f0e2d4c5b6a", "01HZY3J6Q8", "req_abc.DEF:1", "a", "x" * 128],
)
def test_common_id_forms_are_taken(value: str) -> None:
    assert valid_request_id(value)
    assert RequestIds().assign(value).trace_id == value


@pytest.mark.parametrize("value", ["", "has space", 'quote"', "x" * 129, "tab\there", "é", "a~1"])
def test_other_values_get_an_id_of_herds_own(value: str) -> None:
    ids = RequestIds().assign(value)
    assert ids.trace_id == ids.echo != value
    assert len(ids.trace_id) == 32 and int(ids.trace_id, 16) >= 0


def test_a_repeated_id_gets_a_distinct_trace_id_and_the_echo_stays() -> None:
    ids = RequestIds()
    first, second, third = (ids.assign("retry-me") for _ in range(3))
    assert (first.trace_id, second.trace_id, third.trace_id) == (
        "retry-me",
        "retry-me~2",
        "retry-me~3",
    )
    assert {first.echo, second.echo, third.echo} == {"retry-me"}
    long = "y" * MAX_REQUEST_ID_CHARS
    ids.assign(long)
    again = ids.assign(long)
    assert len(again.trace_id) == MAX_REQUEST_ID_CHARS and again.trace_id.endswith("~2")


def test_memory_is_bounded_least_recently_used_first_out() -> None:
    ids = RequestIds(remember=2)
    for value in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" comes
        ids.assign(value)
    assert ids.assign("a").trace_id == "a~3"
    assert ids.assign("b").trace_id == "b"  # forgotten, so taken as new


@asynccontextmanager
async def herd() -> AsyncIterator[tuple[httpx.AsyncClient, httpx2.AsyncClient, Fleet]]:
    async with running(heartbeat("alpha", loaded=[MODEL])) as fleet:
        app = build_app(HerdService(fleet.d.settings, fleet.d))
        plain = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        sdk = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))
        async with plain, sdk:
            fleet.app = app  # type: ignore[attr-defined]
            yield plain, sdk, fleet


async def test_incoming_id_is_the_trace_id_in_every_dialect() -> None:
    async with herd() as (http, sdk, fleet):
        client = AsyncOpenAI(base_url=BASE + "/v1", api_key="x", http_client=sdk, max_retries=0)
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Request-Id": "openai-1"},
        )
        assert raw.headers["x-request-id"] == raw.headers["x-herd-request-id"] == "openai-1"
        assert raw.request_id == "openai-1"  # what the SDK reports to its caller
        r = await http.post(
            "/api/chat",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-Request-Id": "ollama-1"},
        )
        assert r.status_code == 200 and r.headers["x-herd-request-id"] == "ollama-1"
        app = fleet.app  # type: ignore[attr-defined]
        stream = ollama.AsyncClient(host=BASE, transport=httpx.ASGITransport(app=app))
        async for _ in await stream.chat(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
        records = await fleet.records()
        ids = [r.request_id for r in records]
        assert ids[:2] == ["openai-1", "ollama-1"]
        assert len(ids[2]) == 32  # no header: herd's own id


async def test_errors_and_untraced_routes_carry_the_ids() -> None:
    async with herd() as (http, _, fleet):
        r = await http.post("/api/chat", json={"model": 5}, headers={"X-Request-Id": "bad-body-1"})
        assert r.status_code == 400
        assert r.headers["x-request-id"] == r.headers["x-herd-request-id"] == "bad-body-1"
        tags = await http.get("/api/tags", headers={"X-Request-Id": "tags-1"})
        assert tags.headers["x-request-id"] == "tags-1"
        own = await http.get("/api/version")
        assert own.headers["x-request-id"] == own.headers["x-herd-request-id"]
        records = await fleet.records()
        assert [(r.request_id, r.http_status) for r in records] == [("bad-body-1", 400)]


async def test_a_reused_id_keeps_both_traces() -> None:
    async with herd() as (http, _, fleet):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
        answers = [
            await http.post("/api/chat", json=body, headers={"X-Request-Id": "same"})
            for _ in range(2)
        ]
        assert [a.headers["x-request-id"] for a in answers] == ["same", "same"]
        assert [a.headers["x-herd-request-id"] for a in answers] == ["same", "same~2"]
        assert [r.request_id for r in await fleet.records()] == ["same", "same~2"]
