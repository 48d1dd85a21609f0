"""OpenAI ``/v1/models`` list and model objects from the fleet's models on disk."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from herd.domain import ModelOnDisk, canonical_model


def unix_seconds(timestamp: str) -> int:
    """RFC 3339 / ISO 8601 (any offset, nanoseconds allowed) -> Unix seconds; 0 if unset
    or unreadable."""
    if not timestamp:
        return 0
    try:
        return int(datetime.fromisoformat(timestamp).timestamp())
    except ValueError:
        return 0


def owned_by(name: str) -> str:
    """The namespace of ``[host/][namespace/]model[:tag]``; ``library`` when absent."""
    parts = name.split("/")
    return parts[-2] if len(parts) > 1 and parts[-2] else "library"


def openai_model(model: ModelOnDisk) -> dict[str, Any]:
    """A ``model`` object: ``id`` is the tag name, ``created`` its ``modified_at``."""
    return {
        "id": model.name,
        "object": "model",
        "created": unix_seconds(model.modified_at),
        "owned_by": owned_by(model.name),
    }


def openai_model_list(models: Iterable[ModelOnDisk]) -> dict[str, Any]:
    """``GET /v1/models`` body; a model on several nodes is listed once (the newest
    ``modified_at`` wins), in first-seen order; ``data`` is ``[]`` when empty."""
    by_key: dict[str, dict[str, Any]] = {}
    for model in models:
        item = openai_model(model)
        key = canonical_model(model.name)
        seen = by_key.get(key)
        if seen is None or item["created"] > seen["created"]:
            if seen is not None:
                item["id"] = seen["id"]
            by_key[key] = item
    return {"object": "list", "data": list(by_key.values())}
