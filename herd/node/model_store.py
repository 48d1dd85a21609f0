"""Model management on one node: ``/api/show``, ``/api/pull`` and ``/api/delete``.

Ollama does these itself; a media engine's model is described here and cannot be
pulled or deleted through herd (its files come with a package or a models directory);
an OpenAI-compatible server (llama.cpp) gets a show body built from its model list
and cannot pull or delete either.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from herd.backends.base import Backend, BackendState
from herd.convert.ollama_show import show_body
from herd.domain import canonical_model
from herd.errors import BadRequest, ModelNotFound
from herd.node.media import NodeMedia


def _not_found(model: str) -> ModelNotFound:
    return ModelNotFound(f"model '{model}' not found")


async def show_model(
    backend: Backend, state: BackendState | None, media: NodeMedia, model: str, verbose: bool
) -> dict[str, Any]:
    body = media.show(model)
    if body is not None:
        return body
    show = getattr(backend, "show", None)
    if show is not None:
        result: dict[str, Any] = await show(model, verbose)
        return result
    key = canonical_model(model)
    models = state.models if state else ()
    loaded_models = state.loaded if state else ()
    for entry in models:
        if canonical_model(entry.name) == key:
            loaded = next((m for m in loaded_models if canonical_model(m.name) == key), None)
            return show_body(
                entry,
                engine=backend.kind,
                context_length=loaded.context_length if loaded else 0,
            )
    raise _not_found(model)


def _backend_op(backend: Backend, media: NodeMedia, node_id: str, model: str, op: str) -> Any:
    """The backend's ``pull`` or ``delete`` for ``model``; BadRequest when the model is a
    media engine's (its files come with the engine) or the backend cannot do ``op``."""
    found = media.engine_for(model)
    if found is not None:
        raise BadRequest(
            f"'{model}' is served by {found[1].kind}; its files come with the engine, "
            f"herd cannot {op} it"
        )
    method = getattr(backend, op, None)
    if method is None:
        raise BadRequest(f"node {node_id} runs {backend.kind}, which cannot {op} models")
    return method


async def pull_model(
    backend: Backend, media: NodeMedia, node_id: str, model: str, insecure: bool
) -> AsyncGenerator[dict[str, Any], None]:
    """Progress lines of a pull on this node's Ollama."""
    pull = _backend_op(backend, media, node_id, model, "pull")
    async for line in pull(model, insecure):
        yield line


async def delete_model(backend: Backend, media: NodeMedia, node_id: str, model: str) -> None:
    delete = _backend_op(backend, media, node_id, model, "delete")
    await delete(model)
