"""Turn a backend's HTTP status and body into a :mod:`herd.errors` exception."""

from __future__ import annotations

import json

from herd.errors import BackendError, BadRequest, HerdError, ModelNotFound


def error_message(text: str) -> str:
    """The ``error`` field of an Ollama or OpenAI error body, else the raw text."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "empty error body"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if err is not None:
            return str(err)
    return text.strip()[:500]


def error_for_status(status: int, text: str, *, started: bool = False) -> HerdError:
    """Map a non-2xx backend reply. ``started``: chunks were already sent to the client."""
    message = error_message(text)
    if status == 404:
        return ModelNotFound(message)
    if status in (400, 422):
        return BadRequest(message)
    retryable = not started and (status >= 500 or status in (408, 429))
    return BackendError(message, retryable=retryable, backend_status=status)
