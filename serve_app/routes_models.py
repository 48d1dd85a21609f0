"""Models across the herd, in both dialects: ``/api/tags``, ``/api/ps``, ``/api/show``,
``/api/pull``, ``/api/delete``, ``/v1/models`` and ``/v1/models/{id}``.

``/api/tags`` and ``/api/ps`` entries carry herd's extra fields (``nodes``,
``loaded_on``, ``node``, ``category``), which clients ignore. Pull and delete take a
``node`` (body field or ``X-Herd-Node`` header); the responses name the node(s) in
``X-Herd-Node``.

Aliases (``FLEET_MODEL_ALIASES``): ``/v1/models`` lists each one whose target the fleet
serves and ``/v1/models/{alias}`` finds it (OpenAI clients check those), ``/api/show``
shows the target; ``/api/tags`` and ``/api/ps`` stay the inventory of real models (what
pull, delete and copy act on), and pull and delete never resolve an alias.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from herd import convert
from herd.convert.headers import header_value
from herd.convert.openai_models import find_openai_model
from herd.dispatch.model_ops import Pull
from herd.domain import ModelOnDisk, canonical_model
from herd.errors import BackendError, HerdError, ModelNotFound
from herd.wire.limits import Limits, check_model_name
from herd.wire.ollama_models import parse_delete_request, parse_pull_request, parse_show_request
from serve_app.service import NDJSON, HerdService, json_response


def _models(catalog: list[dict[str, Any]]) -> list[ModelOnDisk]:
    return [ModelOnDisk(**entry["model"]) for entry in catalog]


def tags_body(catalog: list[dict[str, Any]]) -> dict[str, Any]:
    body = convert.ollama_tags_body(_models(catalog))
    where = {canonical_model(e["model"]["name"]): e for e in catalog}
    for entry in body["models"]:
        held = where.get(canonical_model(entry["name"]))
        if held is not None:
            entry["nodes"] = held["nodes"]
            entry["loaded_on"] = held["loaded_on"]
            entry["category"] = held["model"].get("category", "llm")
    return body


def ps_body(running: list[dict[str, Any]]) -> dict[str, Any]:
    models = []
    for item in running:
        loaded, disk = item["loaded"], item.get("model") or {}
        models.append(
            {
                "name": loaded["name"],
                "model": loaded["name"],
                "size": loaded["size"],
                "size_vram": loaded["size_vram"],
                "digest": disk.get("digest", ""),
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": disk.get("family", ""),
                    "families": [disk["family"]] if disk.get("family") else None,
                    "parameter_size": disk.get("parameter_size", ""),
                    "quantization_level": disk.get("quantization_level", ""),
                },
                "expires_at": loaded["expires_at"] or "0001-01-01T00:00:00Z",
                "context_length": loaded["context_length"],
                "node": item["node"],
            }
        )
    models.sort(key=lambda m: m["expires_at"], reverse=True)
    return {"models": models}


def _node_choice(field: str | None, request: Request) -> str | None:
    return (field or request.headers.get("x-herd-node") or "").strip() or None


async def _pull_lines(pull: Pull) -> AsyncIterator[bytes]:
    if pull.first is not None:
        yield convert.ndjson_line(pull.first)
    try:
        async for line in pull.rest:
            yield convert.ndjson_line(line)
    except HerdError as exc:  # after the first line: Ollama ends the stream with an error line
        yield convert.ndjson_line(convert.ollama_error_body(exc.message))


async def _pull_result(pull: Pull) -> dict[str, Any]:
    """The non-streamed pull: wait for the end; the last status line is the answer."""
    last = pull.first
    async for line in pull.rest:
        last = line
    if last is None or last.get("status") != "success":
        raise BackendError("the pull ended without success", retryable=False)
    return {"status": "success"}


def add_model_routes(app: FastAPI, svc: HerdService) -> None:
    limits = Limits.from_settings(svc.settings)  # model names: FLEET_MAX_MODEL_NAME_CHARS

    @app.get("/api/tags")
    @app.head("/api/tags")
    async def tags() -> Response:
        return json_response(tags_body(await svc.catalog()))

    @app.get("/api/ps")
    async def ps() -> Response:
        return json_response(ps_body(await svc.running()))

    @app.post("/api/show")
    async def show(request: Request) -> Response:
        parsed = parse_show_request(await svc.read_body(request), limits)
        node, body = await svc.models.show(parsed.target, bool(parsed.verbose))
        return json_response(body, headers={"X-Herd-Node": header_value(node)})

    @app.post("/api/pull")
    async def pull(request: Request) -> Response:
        parsed = parse_pull_request(await svc.read_body(request), limits)
        node = _node_choice(parsed.node, request)
        started = await svc.models.pull(parsed.target, node, bool(parsed.insecure))
        headers = {"X-Herd-Node": header_value(started.node)}
        if parsed.streaming:
            return StreamingResponse(_pull_lines(started), media_type=NDJSON, headers=headers)
        return json_response(await _pull_result(started), headers=headers)

    @app.delete("/api/delete")
    async def delete(request: Request) -> Response:
        parsed = parse_delete_request(await svc.read_body(request), limits)
        node = _node_choice(parsed.node, request)
        done = await svc.models.delete(parsed.target, node)
        return Response(status_code=200, headers={"X-Herd-Node": header_value(",".join(done))})

    @app.get("/v1/models")
    async def models() -> Response:
        listed = convert.openai_model_list(_models(await svc.catalog()), svc.models.aliases)
        return json_response(listed)

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> Response:
        check_model_name(model_id, limits)
        found = find_openai_model(_models(await svc.catalog()), model_id, svc.models.aliases)
        if found is None:
            raise ModelNotFound(f"The model `{model_id}` does not exist")
        return json_response(found)
