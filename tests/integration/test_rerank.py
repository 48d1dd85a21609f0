"""``POST /v1/rerank`` on the shared fleet: the real MiniLM (sentence-transformers on the
``gemma`` node) ranks the relevant document first for the official ``cohere`` client,
the emulators' embedder answers the same shape, an LLM is refused, and the trace is
recorded with kind ``rerank``."""

from __future__ import annotations

from collections.abc import Iterator

import cohere
import httpx
import pytest

from .trace_support import wait_trace

pytestmark = pytest.mark.integration

MINILM = "all-minilm:l6-v2"
QUERY = "What is the capital of France?"
DOCS = [
    "Bananas are a yellow fruit rich in potassium.",
    "GPUs run thousands of matrix multiplications in parallel.",
    "Paris is the capital and largest city of France.",
    "The llama is a domesticated camelid from South America.",
]


@pytest.fixture
def co(endpoint: str) -> Iterator[cohere.Client]:
    http = httpx.Client(timeout=60)
    yield cohere.Client(api_key="not-needed", base_url=endpoint, httpx_client=http)
    http.close()


def test_minilm_ranks_the_relevant_document_first_and_is_traced(
    co: cohere.Client, endpoint: str
) -> None:
    raw = co.with_raw_response.rerank(model=MINILM, query=QUERY, documents=DOCS)
    answer = raw.data
    assert raw.headers["x-herd-node"] == "gemma"
    assert answer.results[0].index == 2
    assert sorted(r.index for r in answer.results) == [0, 1, 2, 3]
    scores = [r.relevance_score for r in answer.results]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.5 > scores[-1]  # MiniLM: Paris ~0.7, the rest near 0
    top = answer.results[0].document
    assert top is not None and top.text == DOCS[2]
    usage = answer.dict()["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] > 0
    trace = wait_trace(endpoint, raw.headers["x-herd-request-id"])
    assert (trace["dialect"], trace["kind"], trace["status"]) == ("openai", "rerank", "ok")
    assert trace["node_id"] == "gemma" and trace["served_model"] == MINILM
    assert trace["prompt_tokens"] == usage["prompt_tokens"]
    assert answer.id == raw.headers["x-herd-request-id"]


def test_top_n_without_documents_over_plain_http(endpoint: str) -> None:
    body = {
        "model": MINILM,
        "query": "Which device accelerates neural network training?",
        "documents": [{"text": d} for d in DOCS],
        "top_n": 2,
        "return_documents": False,
    }
    r = httpx.post(f"{endpoint}/v1/rerank", json=body, timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 2 and results[0]["index"] == 1
    assert all("document" not in item for item in results)


def test_the_emulators_embedder_answers_the_same_shape(co: cohere.Client) -> None:
    raw = co.with_raw_response.rerank(model="embedder", query=QUERY, documents=DOCS, top_n=3)
    assert raw.headers["x-herd-node"] in ("alpha", "gamma")
    assert len(raw.data.results) == 3
    assert len({r.index for r in raw.data.results}) == 3


def test_an_llm_is_refused_and_bad_input_is_openai_shaped(co: cohere.Client, endpoint: str) -> None:
    with pytest.raises(cohere.BadRequestError):
        co.rerank(model="smollm2:135m", query=QUERY, documents=DOCS)
    r = httpx.post(
        f"{endpoint}/v1/rerank",
        json={"model": "smollm2:135m", "query": QUERY, "documents": DOCS},
        timeout=30,
    )
    assert r.status_code == 400
    assert "is not an embedding model" in r.json()["error"]["message"]
    trace = wait_trace(endpoint, r.headers["x-herd-request-id"])
    assert (trace["kind"], trace["status"], trace["http_status"]) == ("rerank", "rejected", 400)
    r = httpx.post(f"{endpoint}/v1/rerank", json={"model": MINILM, "query": QUERY}, timeout=30)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(
        f"{endpoint}/v1/rerank",
        json={"model": "nowhere:1b", "query": QUERY, "documents": DOCS},
        timeout=30,
    )
    assert r.status_code == 404
