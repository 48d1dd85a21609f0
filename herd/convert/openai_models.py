"""OpenAI ``/v1/models`` list and model objects from the fleet's models on disk, and the
aliases (``FLEET_MODEL_ALIASES``) whose target one of them is: OpenAI clients check the
list for the name they were configured with."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from herd.domain import ModelOnDisk, canonical_model
from herd.model_names import ModelAliases


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


def openai_model_list(
    models: Iterable[ModelOnDisk], aliases: ModelAliases | None = None
) -> dict[str, Any]:
    """``GET /v1/models`` body; a model on several nodes is listed once (the newest
    ``modified_at`` wins), in first-seen order, then each alias whose target is among them
    (as its target's object, named as configured); ``data`` is ``[]`` when empty."""
    by_key = _by_key(models)
    for alias in aliases or ():
        target = by_key.get(canonical_model(alias.target))
        key = canonical_model(alias.name)
        if target is not None and key not in by_key:
            by_key[key] = {**target, "id": alias.name}
    return {"object": "list", "data": list(by_key.values())}


def find_openai_model(
    models: Iterable[ModelOnDisk], name: str, aliases: ModelAliases | None = None
) -> dict[str, Any] | None:
    """``GET /v1/models/{name}``: the model object, or None when the fleet has no such
    model (an alias is found when its target is served, under the alias's name)."""
    alias = aliases.get(name) if aliases else None
    found = _by_key(models).get(canonical_model(alias.target if alias else name))
    if found is None or alias is None:
        return found
    return {**found, "id": alias.name}


def _by_key(models: Iterable[ModelOnDisk]) -> dict[str, dict[str, Any]]:
    by_key: dict[str, dict[str, Any]] = {}
    for model in models:
        item = openai_model(model)
        key = canonical_model(model.name)
        seen = by_key.get(key)
        if seen is None or item["created"] > seen["created"]:
            if seen is not None:
                item["id"] = seen["id"]
            by_key[key] = item
    return by_key
