"""``/v1/rerank`` without an app: the body's parsing and bounds (herd/wire/rerank.py), the
request it becomes, the cosine ranking and the answer (herd/convert/rerank.py)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from dispatch_fakes import heartbeat
from hypothesis import given
from hypothesis import strategies as st

from herd.convert.rerank import (
    catalog_categories,
    embedding_model_problem,
    rank,
    rerank_request,
    rerank_response,
    snapshot_categories,
)
from herd.domain import FleetSnapshot, ModelOnDisk, NodeView
from herd.errors import BackendError, BadRequest
from herd.settings import load_settings
from herd.wire.limits import Limits
from herd.wire.rerank import RerankRequest, parse_rerank_request

LIMITS = Limits.from_settings(load_settings(max_rerank_documents=3, max_rerank_chars=10))


def parse(body: dict[str, Any], limits: Limits = LIMITS) -> RerankRequest:
    return parse_rerank_request(json.dumps(body).encode(), limits)


def refused(body: Any, limits: Limits = LIMITS) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(BadRequest) as err:
        parse_rerank_request(raw, limits)
    assert err.value.status == 400
    return err.value.message


# --- parsing and bounds ------------------------------------------------------------------
def test_strings_and_text_objects_are_documents() -> None:
    req = parse({"model": "m", "query": "q", "documents": ["a", {"text": "b", "id": 7}]})
    assert req.texts == ["a", "b"] and req.count == 2
    assert req.documents[1] == {"text": "b", "id": 7}
    assert req.return_documents is None and req.top_n is None


def test_top_n_caps_the_answer_and_a_larger_one_means_all() -> None:
    assert parse({"query": "q", "documents": ["a", "b", "c"], "top_n": 2}).count == 2
    assert parse({"query": "q", "documents": ["a", "b"], "top_n": 50}).count == 2


def test_cohere_fields_are_accepted() -> None:
    req = parse(
        {
            "query": "q",
            "documents": ["a"],
            "rank_fields": ["text"],
            "max_chunks_per_doc": 10,
            "max_tokens_per_doc": 512,
            "return_documents": False,
        }
    )
    assert req.return_documents is False and req.model is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"query": "q", "documents": ["a", "b", "c", "d"]}, "too many documents: 4 > 3"),
        ({"query": "q", "documents": ["a" * 11]}, "documents[0] is longer than 10 characters"),
        ({"query": "q", "documents": [{"text": "x" * 11}]}, "documents[0].text is longer"),
        ({"query": "q" * 11, "documents": ["a"]}, "query is longer than 10 characters"),
        ({"query": "", "documents": ["a"]}, "query must not be empty"),
        ({"query": "q", "documents": ["a", ""]}, "documents[1] must not be empty"),
        ({"query": "q", "documents": []}, "documents must not be empty"),
        ({"query": "q", "documents": "a"}, "documents must be a list"),
        ({"query": "q", "documents": [3]}, "documents[0] must be a string or an object"),
        ({"query": "q", "documents": [{"title": "a"}]}, "documents[0] must have a text field"),
        ({"query": "q", "documents": [{"text": 3}]}, "documents[0] must have a text field"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n must be at least 1"),
        ({"query": "q", "documents": ["a"], "top_n": 2**70}, "top_n: must be a 64-bit integer"),
        ({"query": "q", "documents": ["a"], "top_n": "2"}, "top_n: Input should be a valid"),
        ({"query": "q", "documents": ["a"], "rank_fields": ["title"]}, "rank_fields is not"),
        ({"query": "q", "documents": ["a"], "return_documents": "yes"}, "return_documents:"),
        ({"query": 3, "documents": ["a"]}, "query: Input should be a valid string"),
        ({"documents": ["a"]}, "query is required"),
        ({"query": "q"}, "documents is required"),
        ({"model": "no spaces", "query": "q", "documents": ["a"]}, "invalid model name"),
        ([1, 2], "request body must be a JSON object"),
    ],
)
def test_bad_bodies_are_400_with_the_reason(body: Any, words: str) -> None:
    assert words in refused(body)


def test_malformed_json_and_no_body() -> None:
    assert "invalid JSON" in refused(b'{"query": ')
    assert refused(b"") == "missing request body"


def test_the_defaults_come_from_the_settings() -> None:
    defaults = Limits.from_settings(load_settings())
    assert (defaults.rerank_documents, defaults.rerank_chars) == (1000, 32768)
    many = {"query": "q", "documents": ["d"] * 1000}
    assert parse(many, defaults).count == 1000
    assert "too many documents" in refused({**many, "documents": ["d"] * 1001}, defaults)


# --- the request the dispatcher gets -------------------------------------------------------
def test_request_is_one_embedding_of_the_query_then_the_documents() -> None:
    body = {
        "query": "q",
        "documents": ["a", {"text": "b"}],
        "keep_alive": "5m",
        "truncate": False,
        "user": "ann",
        "fallback_models": ["other-embed"],
        "metadata": {"tags": ["rag"]},
    }
    req = rerank_request(
        parse(body), model="minilm", request_id="r1", received_at=1.0, client="10.0.0.1"
    )
    assert req.kind == "embed" and not req.stream and req.dialect == "openai"
    assert req.body == {
        "model": "minilm",
        "input": ["q", "a", "b"],
        "truncate": False,
        "keep_alive": "5m",
    }
    assert req.model == "minilm" and req.fallback_models == ("other-embed",)
    assert req.client == "ann" and req.tags == ("rag",) and req.request_id == "r1"
    assert req.estimated_tokens == 1  # 3 characters


# --- ranking -------------------------------------------------------------------------------
def test_rank_orders_by_cosine_and_ignores_length() -> None:
    query = [1.0, 0.0]
    docs = [[0.0, 1.0], [10.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]
    ranked = rank(query, docs)
    assert [i for i, _ in ranked] == [1, 2, 0, 3]
    scores = dict(ranked)
    assert scores[1] == pytest.approx(1.0) and scores[2] == pytest.approx(math.sqrt(0.5))
    assert scores[0] == pytest.approx(0.0) and scores[3] == pytest.approx(-1.0)
    assert rank(query, docs, 2) == ranked[:2]


def test_ties_keep_document_order_and_zero_vectors_score_zero() -> None:
    ranked = rank([1.0, 1.0], [[0.0, 0.0], [2.0, 2.0], [0.0, 0.0], [1.0, 1.0]])
    assert [i for i, _ in ranked] == [1, 3, 0, 2]
    assert ranked[2][1] == 0.0 and ranked[3][1] == 0.0
    assert rank([0.0, 0.0], [[1.0, 0.0]]) == [(0, 0.0)]


def test_a_vector_of_another_width_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="2-dimension embedding for document 1"):
        rank([1.0, 0.0, 0.0], [[1.0, 0.0, 0.0], [1.0, 0.0]])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_vector_is_a_backend_error(bad: float) -> None:
    with pytest.raises(BackendError, match="non-finite embedding"):
        rank([1.0, 0.0], [[1.0, 0.0], [bad, 0.0]])


vectors = st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3)


@given(query=vectors, docs=st.lists(vectors, min_size=1, max_size=8))
def test_rank_is_a_sorted_permutation_of_bounded_scores(
    query: list[float], docs: list[list[float]]
) -> None:
    ranked = rank(query, docs)
    assert sorted(i for i, _ in ranked) == list(range(len(docs)))
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)


# --- the answer -----------------------------------------------------------------------------
ANSWER = {
    "model": "minilm",
    "embeddings": [[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.5, 0.5]],
    "prompt_eval_count": 12,
}


def test_response_is_sorted_with_documents_and_usage() -> None:
    req = parse({"query": "q", "documents": ["far", {"text": "near", "id": 3}, "mid"]})
    body = rerank_response(ANSWER, req, model="minilm:l6", response_id="abc")
    assert body["id"] == "abc" and body["model"] == "minilm:l6"
    assert [r["index"] for r in body["results"]] == [1, 2, 0]
    assert body["results"][0]["document"] == {"text": "near", "id": 3}
    assert body["results"][1]["document"] == {"text": "mid"}
    assert body["results"][0]["relevance_score"] > body["results"][1]["relevance_score"]
    assert body["usage"] == {"prompt_tokens": 12, "total_tokens": 12}


def test_top_n_and_return_documents_false() -> None:
    req = parse(
        {"query": "q", "documents": ["far", "near", "mid"], "top_n": 1, "return_documents": False}
    )
    body = rerank_response(ANSWER, req, model="m", response_id="abc")
    assert body["results"] == [
        {"index": 1, "relevance_score": pytest.approx(0.9 / math.hypot(0.9, 0.1))}
    ]


@pytest.mark.parametrize(
    "answer",
    [
        {"embeddings": [[1.0, 0.0]]},
        {"embeddings": [[1.0, 0.0]] * 5},
        {"embedding": [1.0, 0.0]},
        {"embeddings": "no"},
    ],
)
def test_a_wrong_number_of_vectors_is_a_backend_error(answer: dict[str, Any]) -> None:
    req = parse({"query": "q", "documents": ["a", "b", "c"]})
    with pytest.raises(BackendError, match="embeddings for 4 texts") as err:
        rerank_response(answer, req, model="m", response_id="x")
    assert err.value.status == 502


# --- which models may rerank ---------------------------------------------------------------
def _snapshot() -> FleetSnapshot:
    a = heartbeat("a", models=["minilm:l6", "tiny:1b"])
    a = replace(a, models=(ModelOnDisk("minilm:l6", category="embedding"), ModelOnDisk("tiny:1b")))
    b = heartbeat("b", models=["tiny:1b"])
    return FleetSnapshot(nodes=(NodeView(a, "online"), NodeView(b, "online")), taken_at=0.0)


def test_categories_from_the_snapshot_and_the_catalog() -> None:
    snap = _snapshot()
    assert snapshot_categories(snap, "MiniLM:l6") == ["embedding"]
    assert snapshot_categories(snap, "tiny:1b") == ["llm", "llm"]
    assert snapshot_categories(snap, "nowhere") == []
    catalog = [
        {"model": {"name": "minilm:l6", "category": "embedding"}},
        {"model": {"name": "tiny:1b"}},
    ]
    assert catalog_categories(catalog, "minilm:l6") == ["embedding"]
    assert catalog_categories(catalog, "tiny:1b") == ["llm"]
    assert catalog_categories(catalog, "nowhere") == []


def test_only_a_model_known_as_something_else_is_refused() -> None:
    assert embedding_model_problem("minilm", ["embedding"]) is None
    assert embedding_model_problem("mixed", ["llm", "embedding"]) is None
    assert embedding_model_problem("unknown", []) is None  # the dispatcher answers 404
    problem = embedding_model_problem("tiny:1b", ["llm", "llm"])
    assert problem is not None and problem.status == 400
    assert "'tiny:1b' is not an embedding model (llm)" in problem.message
    aliased = embedding_model_problem("tiny:1b", ["llm"], "gpt-4o-mini")
    assert aliased is not None
    assert "'gpt-4o-mini' (an alias of 'tiny:1b')" in aliased.message
