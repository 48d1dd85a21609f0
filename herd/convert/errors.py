"""The error body of each HTTP dialect: the one mapper per dialect, for every surface.

``openai``: OpenAI's envelope (:func:`~herd.convert.openai_response.openai_error_body`:
``type`` from the status, ``code`` from the error); ``ollama``: ``{"error": message}``,
which the dashboard's JSON API speaks too; ``anthropic``: ``{"type": "error", "error":
{"type": ..., "message": ...}}`` (:func:`~herd.convert.anthropic_response.anthropic_error_body`).
A ``retry_after`` becomes ``Retry-After``.
"""

from __future__ import annotations

from typing import Any, Literal

from herd.convert.anthropic_response import anthropic_error_body
from herd.convert.ollama_response import ollama_error_body
from herd.convert.openai_response import openai_error_body
from herd.errors import HerdError

ErrorDialect = Literal["openai", "ollama", "anthropic"]


def retry_headers(exc: HerdError) -> dict[str, str]:
    if exc.retry_after is not None:
        return {"Retry-After": str(max(1, round(exc.retry_after)))}
    return {}


def error_body(dialect: ErrorDialect, exc: HerdError) -> dict[str, Any]:
    """The JSON body that answers ``exc`` in ``dialect`` (status: ``exc.status``)."""
    if dialect == "openai":
        return openai_error_body(exc.status, exc.message, exc.code)
    if dialect == "anthropic":
        return anthropic_error_body(exc.status, exc.message)
    return ollama_error_body(exc.message)
