"""``/v1/rerank`` over an embedding model: the request becomes one ``/api/embed`` request
for ``[query, *documents]`` (so one node embeds them all, in one vector space), and the
answer is ranked here by cosine similarity to the query.

``relevance_score`` is that cosine similarity (-1 to 1; what vLLM answers for an
embedding model), not a cross-encoder's calibrated probability: compare scores within
one answer, not across models. Ties keep the documents' order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from operator import mul
from typing import Any

from herd.convert.routing import inference_request
from herd.domain import FleetSnapshot, InferenceRequest, canonical_model
from herd.errors import BackendError, BadRequest
from herd.wire.limits import Limits
from herd.wire.rerank import RerankRequest

Vector = Sequence[float]


def rerank_request(
    req: RerankRequest,
    *,
    model: str,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
) -> InferenceRequest:
    """``/v1/rerank`` -> ``InferenceRequest(kind="embed")`` whose ``/api/embed`` body holds
    the query first, then every document's text."""
    texts = req.texts
    body: dict[str, Any] = {"model": model, "input": [req.query, *texts]}
    if req.truncate is not None:
        body["truncate"] = req.truncate
    if req.keep_alive is not None:
        body["keep_alive"] = req.keep_alive
    return inference_request(
        req,
        limits=limits,
        kind="embed",
        model=model,
        body=body,
        stream=False,
        dialect="openai",
        request_id=request_id,
        received_at=received_at,
        header_tags=header_tags,
        client=req.user or client,
        prompt_chars=len(req.query) + sum(len(t) for t in texts),
    )


def _norm(vector: Vector) -> float:
    return math.sqrt(sum(map(mul, vector, vector)))


def rank(
    query: Vector, documents: Sequence[Vector], top: int | None = None
) -> list[tuple[int, float]]:
    """``(index, cosine similarity)`` of each document to ``query``, best first (ties in
    document order), the first ``top`` of them. A zero vector scores 0; scores stay
    within -1..1."""
    qnorm = _norm(query)
    scored: list[tuple[int, float]] = []
    for index, vector in enumerate(documents):
        if len(vector) != len(query):
            raise BackendError(
                f"the node answered a {len(vector)}-dimension embedding for document {index} "
                f"and a {len(query)}-dimension one for the query",
                retryable=False,
            )
        denominator = qnorm * _norm(vector)
        score = sum(map(mul, query, vector)) / denominator if denominator else 0.0
        if not math.isfinite(score):
            raise BackendError(
                f"the node answered a non-finite embedding ({index})", retryable=False
            )
        scored.append((index, min(1.0, max(-1.0, score))))  # rounding can pass 1
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored if top is None else scored[:top]


def _document(document: str | dict[str, Any]) -> dict[str, Any]:
    """The document as the answer shows it: ``{"text"}``, or the object as it was sent."""
    return {"text": document} if isinstance(document, str) else dict(document)


def rerank_response(
    result: Mapping[str, Any], req: RerankRequest, *, model: str, response_id: str
) -> dict[str, Any]:
    """An ``/api/embed`` answer for ``[query, *documents]`` -> the rerank answer:
    ``{"id", "model", "results": [{"index", "relevance_score", "document"?}], "usage"}``,
    best first. Documents are shown unless ``return_documents`` is false."""
    vectors = result.get("embeddings")
    expected = 1 + len(req.documents)
    if not isinstance(vectors, list) or len(vectors) != expected:
        got = len(vectors) if isinstance(vectors, list) else 0
        raise BackendError(
            f"the node answered {got} embeddings for {expected} texts", retryable=False
        )
    show = req.return_documents is not False
    results: list[dict[str, Any]] = []
    for index, score in rank(vectors[0], vectors[1:], req.count):
        item: dict[str, Any] = {"index": index, "relevance_score": score}
        if show:
            item["document"] = _document(req.documents[index])
        results.append(item)
    tokens = int(result.get("prompt_eval_count") or 0)
    return {
        "id": response_id,
        "model": model,
        "results": results,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# --- which models can rerank ------------------------------------------------------------
def snapshot_categories(snapshot: FleetSnapshot, model: str) -> list[str]:
    """The category each node that holds ``model`` gives it (empty: no node has it)."""
    key = canonical_model(model)
    found = (n.heartbeat.models_by_key.get(key) for n in snapshot.nodes)
    return [m.category for m in found if m is not None]


def catalog_categories(catalog: Iterable[Mapping[str, Any]], model: str) -> list[str]:
    """The same from the router's catalog entries (``{"model": {"name", "category"}}``)."""
    key = canonical_model(model)
    return [
        str(e["model"].get("category") or "llm")
        for e in catalog
        if canonical_model(e["model"]["name"]) == key
    ]


def embedding_model_problem(
    model: str, categories: Sequence[str], alias: str | None = None
) -> BadRequest | None:
    """A 400 when the nodes that hold ``model`` (what ``alias`` names, if the client sent
    an alias) say it is no embedding model; None when one of them does, or when none
    holds it (the dispatcher then answers 404 as usual)."""
    if not categories or "embedding" in categories:
        return None
    kinds = ", ".join(sorted(set(categories)))
    named = f"'{alias}' (an alias of '{model}')" if alias and alias != model else f"'{model}'"
    return BadRequest(
        f"model {named} is not an embedding model ({kinds}): rerank ranks documents by "
        "embedding similarity, so it needs an embedding model (category 'embedding' in "
        "/api/tags)"
    )


__all__ = [
    "catalog_categories",
    "embedding_model_problem",
    "rank",
    "rerank_request",
    "rerank_response",
    "snapshot_categories",
]
