"""The body of ``POST /v1/rerank``, in the shape the common rerank servers share (Jina,
Cohere's v1 client, vLLM, llama.cpp's server, LocalAI, LiteLLM):

``{"model"?, "query", "documents": [str | {"text": str, ...}], "top_n"?,
"return_documents"?}``

Bounds (:mod:`herd.wire.limits`): at most ``FLEET_MAX_RERANK_DOCUMENTS`` documents, the
query and each document at most ``FLEET_MAX_RERANK_CHARS`` characters, none empty;
``top_n`` at least 1 (more than the documents returns them all). ``rank_fields`` other
than ``["text"]`` is a 400 (only the text is ranked); Cohere's ``max_chunks_per_doc`` /
``max_tokens_per_doc`` are accepted and left to the model's own truncation.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, field_validator

from herd.wire.common import HerdFields, Int64, JSONInput, KeepAlive, ModelName, bare, validate
from herd.wire.limits import Limits, limits_of


def _check_text(text: str, where: str, limits: Limits) -> None:
    if not text:
        raise bare(f"{where} must not be empty")
    if len(text) > limits.rerank_chars:
        raise bare(
            f"{where} is longer than {limits.rerank_chars} characters (FLEET_MAX_RERANK_CHARS)"
        )


def document_text(document: str | dict[str, Any]) -> str:
    """The text a document is ranked by (validated: a string, or an object's ``text``)."""
    return document if isinstance(document, str) else str(document["text"])


class RerankRequest(HerdFields):
    """``POST /v1/rerank``. ``model`` may be left out: the fleet's embedding model."""

    model: ModelName | None = None
    query: str
    documents: list[str | dict[str, Any]]
    top_n: Int64 | None = None
    return_documents: bool | None = None
    rank_fields: list[str] | None = None
    truncate: bool | None = None
    keep_alive: KeepAlive = None
    user: str | None = None

    @field_validator("query")
    @classmethod
    def _query(cls, value: str, info: ValidationInfo) -> str:
        _check_text(value, "query", limits_of(info))
        return value

    @field_validator("documents", mode="before")
    @classmethod
    def _documents(cls, value: Any, info: ValidationInfo) -> Any:
        limits = limits_of(info)
        if not isinstance(value, list):
            raise bare("documents must be a list of strings or of objects with a text field")
        if not value:
            raise bare("documents must not be empty")
        if len(value) > limits.rerank_documents:
            raise bare(
                f"too many documents: {len(value)} > {limits.rerank_documents} per request "
                "(FLEET_MAX_RERANK_DOCUMENTS)"
            )
        for index, item in enumerate(value):
            where = f"documents[{index}]"
            if isinstance(item, dict):
                text = item.get("text")
                if not isinstance(text, str):
                    raise bare(f"{where} must have a text field that is a string")
                where += ".text"
            elif isinstance(item, str):
                text = item
            else:
                raise bare(f"{where} must be a string or an object with a text field")
            _check_text(text, where, limits)
        return value

    @field_validator("top_n")
    @classmethod
    def _top_n(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise bare("top_n must be at least 1")
        return value

    @field_validator("rank_fields")
    @classmethod
    def _rank_fields(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and value != ["text"]:
            raise bare('rank_fields is not supported: documents are ranked by their "text"')
        return value

    @property
    def texts(self) -> list[str]:
        return [document_text(d) for d in self.documents]

    @property
    def count(self) -> int:
        """How many results the answer holds: ``top_n``, at most every document."""
        return min(self.top_n or len(self.documents), len(self.documents))


def parse_rerank_request(raw: JSONInput, limits: Limits | None = None) -> RerankRequest:
    """Body of ``/v1/rerank`` -> :class:`RerankRequest`, or :class:`BadRequest`."""
    return validate(RerankRequest, raw, limits)


__all__ = ["RerankRequest", "document_text", "parse_rerank_request"]
