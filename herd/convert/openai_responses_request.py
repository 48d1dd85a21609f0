"""OpenAI Responses request -> Ollama-native ``/api/chat`` :class:`InferenceRequest`.

* ``instructions`` -> a first ``system`` message; ``developer`` -> ``system``.
* ``input`` string -> one user message; message items -> messages (text parts joined
  with ``"\\n"``, ``input_image`` -> ``images``); consecutive ``function_call`` items ->
  one assistant message with ``tool_calls`` (joined to the assistant message just
  before them); ``function_call_output`` -> a ``tool`` message named after its call.
* ``tools`` -> Ollama function tools; ``tool_choice`` as for chat completions ("none"
  drops them, a named function keeps only that one).
* ``max_output_tokens`` -> ``options.num_predict``; ``temperature`` / ``top_p`` /
  ``seed`` -> options only when given (the model's defaults apply otherwise).
* ``text.format``: ``json_schema`` -> its schema as ``format``, ``json_object`` ->
  ``"json"``; ``reasoning.effort`` -> ``think`` (like ``reasoning_effort``).
"""

from __future__ import annotations

from typing import Any

from herd.convert.routing import inference_request
from herd.domain import InferenceRequest
from herd.errors import BadRequest
from herd.wire.limits import Limits
from herd.wire.openai import REASONING_EFFORT
from herd.wire.openai_responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputImage,
    InputRefusal,
    InputText,
    MessageItem,
    ResponsesRequest,
    TextConfig,
)

_ROLE = {"developer": "system"}


def _content(content: str | list[Any]) -> tuple[str, list[str]]:
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        if isinstance(part, InputText):
            texts.append(part.text)
        elif isinstance(part, InputRefusal):
            texts.append(part.refusal)
        elif isinstance(part, InputImage):
            images.append(part.data)
    return "\n".join(texts), images


def responses_messages(req: ResponsesRequest) -> tuple[list[dict[str, Any]], int, int]:
    """(Ollama messages, prompt characters, image count) of a Responses request."""
    out: list[dict[str, Any]] = []
    if req.instructions:
        out.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        out.append({"role": "user", "content": req.input})
        return out, sum(len(m["content"]) for m in out), 0
    names: dict[str, str] = {}
    image_count = 0
    for item in req.input:
        if isinstance(item, MessageItem):
            text, images = _content(item.content)
            message: dict[str, Any] = {"role": _ROLE.get(item.role, item.role), "content": text}
            if images:
                message["images"] = images
                image_count += len(images)
            out.append(message)
        elif isinstance(item, FunctionCallItem):
            names[item.call_id] = item.name
            call = {
                "id": item.call_id,
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            text, images = _content(item.output)
            message = {"role": "tool", "content": text, "tool_call_id": item.call_id}
            name = names.get(item.call_id)
            if name:
                message["tool_name"] = name
            if images:
                message["images"] = images
                image_count += len(images)
            out.append(message)
        # reasoning items from earlier turns are not sent to the model
    if not any(m["role"] != "system" for m in out):
        raise BadRequest("input holds no message for the model to answer")
    chars = sum(len(m["content"]) + len(str(m.get("tool_calls", ""))) for m in out)
    return out, chars, image_count


def responses_tools(req: ResponsesRequest) -> list[dict[str, Any]] | None:
    if not req.tools or req.tool_choice == "none":
        return None
    out: list[dict[str, Any]] = []
    for tool in req.tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            function["description"] = tool.description
        function["parameters"] = tool.parameters or {"type": "object", "properties": {}}
        out.append({"type": "function", "function": function})
    choice = req.tool_choice
    if isinstance(choice, dict):
        name = choice["name"]
        out = [tool for tool in out if tool["function"]["name"] == name]
        if not out:
            raise BadRequest(f"tool_choice names function {name!r}, which is not in tools")
    return out


def responses_format(text: TextConfig | None) -> str | dict[str, Any] | None:
    """``text.format`` -> Ollama ``format`` (a schema object, ``"json"``, or None)."""
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema":
        if fmt.schema_ is None:
            raise BadRequest("text.format.schema is required for type json_schema")
        return fmt.schema_
    return "json"


def openai_responses_request(
    req: ResponsesRequest,
    *,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
) -> InferenceRequest:
    """``/v1/responses`` -> ``InferenceRequest(kind="chat", dialect="openai")``."""
    messages, chars, images = responses_messages(req)
    body: dict[str, Any] = {"model": req.model, "messages": messages, "stream": req.streaming}
    options: dict[str, Any] = dict(req.options) if req.options else {}
    if req.temperature is not None:
        options["temperature"] = req.temperature
    if req.top_p is not None:
        options["top_p"] = req.top_p
    if req.seed is not None:
        options["seed"] = req.seed
    if req.max_output_tokens is not None:
        options["num_predict"] = req.max_output_tokens
    if options:
        body["options"] = options
    fmt = responses_format(req.text)
    if fmt is not None:
        body["format"] = fmt
    tools = responses_tools(req)
    if tools:
        body["tools"] = tools
        chars += len(str(tools))
    effort = req.reasoning.effort if req.reasoning is not None else None
    think = REASONING_EFFORT[effort] if effort is not None else req.think
    if think is not None:
        body["think"] = think
    if req.keep_alive is not None:
        body["keep_alive"] = req.keep_alive
    return inference_request(
        req,
        limits=limits,
        kind="chat",
        model=req.model,
        body=body,
        stream=req.streaming,
        dialect="openai",
        request_id=request_id,
        received_at=received_at,
        header_tags=header_tags,
        client=req.user or client,
        prompt_chars=chars,
        images=images,
    )
