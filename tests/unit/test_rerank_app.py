"""``POST /v1/rerank`` over the real app (guard, routes, dispatcher, traces) and fake
nodes, driven by the official ``cohere`` client (its v1 ``rerank`` posts to
``/v1/rerank``): ranking by a scripted embedding answer, top_n, documents, the default
model, retries, the trace, and every bad input in OpenAI's error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import cohere
import httpx
import pytest
from dispatch_fakes import Fleet, Reply, failing, heartbeat, running

from herd.domain import ModelOnDisk, NodeHeartbeat
from herd.errors import NodeUnavailable
from serve_app.routes import build_app
from serve_app.service import HerdService

BASE = "http://127.0.0.1:11435"
EMBED = "minilm:l6"
LLM = "tiny:1b"
DOCS = ["Bananas are yellow fruit.", "Paris is the capital of France.", "GPUs run matrix maths."]
# The query's vector, then one per document: Paris is nearest, GPUs next, bananas last.
VECTORS = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.9, 0.1, 0.0], [0.3, 0.9, 0.1]]


def node(name: str, *, embed: bool = True, loaded: bool = True) -> NodeHeartbeat:
    """A node with the LLM loaded and, when ``embed``, the embedding model too."""
    names = [LLM, EMBED] if embed else [LLM]
    hb = heartbeat(name, loaded=names if loaded else [LLM], models=names)
    disk = [ModelOnDisk(LLM, size=100)]
    if embed:
        disk.append(ModelOnDisk(EMBED, size=100, category="embedding"))
    return replace(hb, models=tuple(disk))


def vectors(model: str = EMBED, rows: list[list[float]] = VECTORS) -> Reply:
    return Reply(first=[{"model": model, "embeddings": rows, "prompt_eval_count": 21}])


@asynccontextmanager
async def herd(
    *beats: NodeHeartbeat, local_routing: bool = True, **over: Any
) -> AsyncIterator[tuple[cohere.AsyncClient, httpx.AsyncClient, Fleet]]:
    async with running(*(beats or (node("alpha"),)), local_routing=local_routing, **over) as fleet:
        app = build_app(HerdService(fleet.d.settings, fleet.d))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            co = cohere.AsyncClient(api_key="anything", base_url=BASE, httpx_client=http)
            yield co, http, fleet


async def test_cohere_client_gets_documents_sorted_by_similarity_and_a_trace() -> None:
    async with herd() as (co, _, fleet):
        fleet.nodes.script("alpha", vectors())
        answer = await co.rerank(
            model=EMBED, query="What is the capital of France?", documents=DOCS
        )
        assert [r.index for r in answer.results] == [1, 2, 0]
        scores = [r.relevance_score for r in answer.results]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0.9 > scores[2]
        top = answer.results[0].document
        assert top is not None and top.text == DOCS[1]  # documents come back by default
        assert answer.id and answer.dict()["usage"] == {"prompt_tokens": 21, "total_tokens": 21}
        opened = fleet.nodes.opened[-1]
        assert opened.node_id == "alpha" and opened.model == EMBED
        assert opened.req.kind == "embed" and opened.req.body["input"] == [
            "What is the capital of France?",
            *DOCS,
        ]
        [record] = await fleet.records()
        assert (record.dialect, record.kind, record.status) == ("openai", "rerank", "ok")
        assert record.requested_model == EMBED and record.prompt_tokens == 21
        assert record.request_id == answer.id


async def test_top_n_return_documents_false_and_text_objects() -> None:
    async with herd() as (co, http, fleet):
        fleet.nodes.script("alpha", vectors(), vectors())
        answer = await co.rerank(
            model=EMBED, query="capital", documents=DOCS, top_n=2, return_documents=False
        )
        assert [(r.index, r.document) for r in answer.results] == [(1, None), (2, None)]
        objects = [{"text": d, "source": f"doc{i}"} for i, d in enumerate(DOCS)]
        r = await http.post(
            "/v1/rerank", json={"model": EMBED, "query": "capital", "documents": objects}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == EMBED and body["results"][0]["index"] == 1
        assert body["results"][0]["document"] == {"text": DOCS[1], "source": "doc1"}
        assert r.headers["x-herd-node"] == "alpha"


async def test_without_a_model_the_fleets_embedding_model_reranks() -> None:
    async with herd() as (co, _, fleet):
        fleet.nodes.script("alpha", vectors())
        answer = await co.rerank(query="capital", documents=DOCS)
        assert answer.results[0].index == 1
        assert fleet.nodes.opened[-1].model == EMBED


async def test_a_failed_node_is_retried_on_another_that_holds_the_model() -> None:
    async with herd(node("alpha"), node("beta", loaded=False)) as (co, _, fleet):
        fleet.nodes.script("alpha", failing(NodeUnavailable("alpha went away")))
        fleet.nodes.script("beta", vectors())
        raw = await co.with_raw_response.rerank(model=EMBED, query="capital", documents=DOCS)
        assert raw.data.results[0].index == 1
        assert fleet.nodes.opened_on() == ["alpha", "beta"]
        assert raw.headers["x-herd-node"] == "beta" and raw.headers["x-herd-retries"] == "1"
        [record] = await fleet.records()
        assert record.kind == "rerank" and record.retries == 1 and record.node_id == "beta"


@pytest.mark.parametrize("local_routing", [True, False])  # the mirror, or the router's catalog
async def test_an_llm_is_refused_with_a_clear_400(local_routing: bool) -> None:
    async with herd(local_routing=local_routing) as (co, http, fleet):
        with pytest.raises(cohere.BadRequestError):
            await co.rerank(model=LLM, query="q", documents=DOCS)
        r = await http.post("/v1/rerank", json={"model": LLM, "query": "q", "documents": DOCS})
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert "'tiny:1b' is not an embedding model (llm)" in error["message"]
        r = await http.post(
            "/v1/rerank",
            json={"model": EMBED, "query": "q", "documents": DOCS, "fallback_models": [LLM]},
        )
        assert r.status_code == 400 and "'tiny:1b' is not an embedding model" in r.text
        assert fleet.nodes.opened == []
        records = await fleet.records()
        assert [(r.kind, r.status, r.http_status) for r in records] == [
            ("rerank", "rejected", 400)
        ] * 3
        assert records[0].requested_model == LLM


async def test_unknown_model_is_404_and_no_embedding_model_is_404() -> None:
    async with herd() as (co, http, _):
        with pytest.raises(cohere.NotFoundError):
            await co.rerank(model="nowhere:1b", query="q", documents=DOCS)
    async with herd(node("alpha", embed=False)) as (_, http, fleet):
        r = await http.post("/v1/rerank", json={"query": "q", "documents": DOCS})
        assert r.status_code == 404
        assert r.json()["error"]["message"] == (
            "no node in the fleet has an embedding model to rerank with"
        )
        [record] = await fleet.records()
        assert (record.kind, record.http_status) == ("rerank", 404)


async def test_a_node_answer_that_does_not_fit_is_a_502_not_a_500() -> None:
    async with herd() as (_, http, fleet):
        fleet.nodes.script("alpha", vectors(rows=VECTORS[:2]))
        r = await http.post("/v1/rerank", json={"model": EMBED, "query": "q", "documents": DOCS})
        assert r.status_code == 502
        assert "the node answered 2 embeddings for 4 texts" in r.json()["error"]["message"]
        [record] = await fleet.records()
        assert (record.kind, record.status, record.http_status) == ("rerank", "error", 502)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": EMBED, "query": "q", "documents": ["d"] * 4}, "too many documents: 4 > 3"),
        ({"model": EMBED, "query": "q", "documents": ["x" * 65]}, "longer than 64 characters"),
        ({"model": EMBED, "query": "q", "documents": []}, "documents must not be empty"),
        ({"model": EMBED, "query": "q", "documents": ["a"], "top_n": -1}, "top_n must be"),
        ({"model": EMBED, "documents": ["a"]}, "query is required"),
        ({"model": EMBED, "query": "q", "documents": [{"x": 1}]}, "must have a text field"),
    ],
)
async def test_bad_inputs_get_openai_error_shape(body: dict[str, Any], words: str) -> None:
    async with herd(max_rerank_documents=3, max_rerank_chars=64) as (_, http, fleet):
        r = await http.post("/v1/rerank", json=body)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and words in error["message"]
        [record] = await fleet.records()
        assert (record.dialect, record.kind, record.status) == ("openai", "rerank", "rejected")


async def test_malformed_and_oversized_bodies() -> None:
    async with herd(max_body_bytes=1024) as (_, http, _fleet):
        r = await http.post(
            "/v1/rerank", content=b'{"query": ', headers={"content-type": "application/json"}
        )
        assert r.status_code == 400 and "invalid JSON" in r.json()["error"]["message"]
        big = {"model": EMBED, "query": "q", "documents": ["y" * 2000]}
        r = await http.post("/v1/rerank", json=big)
        assert r.status_code == 413 and r.json()["error"]["message"]
        r = await http.get("/v1/rerank")
        assert r.status_code == 405 and "error" in r.json()


async def test_an_inference_key_may_rerank_and_nobody_else() -> None:
    keys = "app:app-key-0123456789abcdef"
    async with herd(api_keys=keys, admin_token="admin-token-0123456789abcdef") as (_, http, fleet):
        fleet.nodes.script("alpha", vectors())
        body = {"model": EMBED, "query": "q", "documents": DOCS}
        r = await http.post("/v1/rerank", json=body)
        assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
        auth = {"Authorization": "Bearer app-key-0123456789abcdef"}
        r = await http.post("/v1/rerank", json=body, headers=auth)
        assert r.status_code == 200, r.text
        records = await fleet.records()
        assert [r.http_status for r in records] == [401, 200]
        assert "key:app" in records[1].tags


async def test_aliases_are_followed_to_an_embedding_model_or_refused() -> None:
    aliases = '{"text-embedding-3-small": "minilm:l6", "gpt-4o-mini": "tiny:1b"}'
    async with herd(model_aliases=aliases) as (co, http, fleet):
        fleet.nodes.script("alpha", vectors())
        answer = await co.rerank(model="text-embedding-3-small", query="q", documents=DOCS)
        assert answer.results[0].index == 1 and fleet.nodes.opened[-1].model == EMBED
        r = await http.post(
            "/v1/rerank", json={"model": "gpt-4o-mini", "query": "q", "documents": DOCS}
        )
        assert r.status_code == 400
        assert "'gpt-4o-mini' (an alias of 'tiny:1b') is not an embedding model" in r.text
