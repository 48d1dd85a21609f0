"""Anthropic Messages requests -> the Ollama-native ``/api/chat`` :class:`InferenceRequest`.

The mapping (every node speaks ``/api/chat``, or herd's translation of it for llama.cpp
and OpenAI-compatible servers; none is sent ``/v1/messages`` as such):

* ``system`` (a string or text blocks, joined with ``"\\n"``) -> a first ``system``
  message.
* A user message's text blocks are joined with ``"\\n"`` into ``content``; its base64
  image blocks become ``images``; each ``tool_result`` block becomes a ``tool`` message
  (``tool_call_id``, and ``tool_name`` from the ``tool_use`` it answers; an
  ``is_error`` result is prefixed ``"Error: "``), in the order the blocks come.
* An assistant message's text -> ``content``, ``tool_use`` blocks -> ``tool_calls``
  (``id``, ``function.name``, ``function.arguments`` = ``input``), ``thinking`` blocks ->
  ``thinking``; ``redacted_thinking`` is dropped (no node can read it).
* ``max_tokens`` -> ``options.num_predict``; ``stop_sequences`` -> ``options.stop``;
  ``temperature`` / ``top_p`` / ``top_k`` -> the options of the same names (absent: the
  model's own defaults); ``thinking`` enabled / adaptive -> ``think: true``, disabled ->
  ``think: false``.
* ``tools`` -> Ollama function tools (``input_schema`` -> ``parameters``);
  ``tool_choice`` ``none`` drops them, ``tool`` keeps only the named one, ``auto`` /
  ``any`` cannot be enforced by a local model and pass as-is.
* ``metadata.user_id`` (else the peer address) is the trace's ``client``.

:func:`count_prompt_tokens` is the estimate ``/v1/messages/count_tokens`` answers: the
same characters / 4 plus a flat cost per image the router uses to place the request
(:func:`herd.convert.routing.estimate_tokens`), since no backend of every node exposes
its tokenizer.
"""

from __future__ import annotations

import json
from typing import Any

from herd.convert.routing import estimate_tokens, inference_request
from herd.domain import InferenceRequest
from herd.wire.anthropic import (
    CountTokensRequest,
    ImageBlock,
    Message,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from herd.wire.limits import Limits


def _tool_result_message(block: ToolResultBlock, names: dict[str, str]) -> dict[str, Any]:
    images: list[str] = []
    if block.content is None:
        text = ""
    elif isinstance(block.content, str):
        text = block.content
    else:
        texts = []
        for part in block.content:
            if isinstance(part, TextBlock):
                texts.append(part.text)
            else:
                images.append(part.source.data or "")
        text = "\n".join(texts)
    if block.is_error:
        text = f"Error: {text}"
    item: dict[str, Any] = {"role": "tool", "content": text, "tool_call_id": block.tool_use_id}
    name = names.get(block.tool_use_id)
    if name:
        item["tool_name"] = name
    if images:
        item["images"] = images
    return item


def _message(message: Message, names: dict[str, str], out: list[dict[str, Any]]) -> int:
    """Append the Ollama messages of one Anthropic message; the number of images."""
    if isinstance(message.content, str):
        out.append({"role": message.role, "content": message.content})
        return 0
    texts: list[str] = []
    images: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    count = 0
    start = len(out)

    def flush() -> None:
        if texts or images or thinking or calls:
            item: dict[str, Any] = {"role": message.role, "content": "\n".join(texts)}
            if images:
                item["images"] = list(images)
            if thinking:
                item["thinking"] = "\n".join(thinking)
            if calls:
                item["tool_calls"] = list(calls)
            out.append(item)
            for pending in (texts, images, thinking, calls):
                pending.clear()

    for block in message.content:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ImageBlock):
            images.append(block.source.data or "")
            count += 1
        elif isinstance(block, ToolUseBlock):
            names[block.id] = block.name
            calls.append(
                {"id": block.id, "function": {"name": block.name, "arguments": block.input}}
            )
        elif isinstance(block, ToolResultBlock):
            flush()  # results answer the calls before them: keep the order
            item = _tool_result_message(block, names)
            count += len(item.get("images", ()))
            out.append(item)
        elif isinstance(block, ThinkingBlock):
            thinking.append(block.thinking)
    flush()
    if len(out) == start:  # an empty block list is still a turn
        out.append({"role": message.role, "content": ""})
    return count


def ollama_messages(req: CountTokensRequest) -> tuple[list[dict[str, Any]], int]:
    """The Ollama ``messages`` of a request (system first) and its image count."""
    out: list[dict[str, Any]] = []
    system = req.system_text
    if system:
        out.append({"role": "system", "content": system})
    names: dict[str, str] = {}
    images = 0
    for message in req.messages:
        images += _message(message, names, out)
    return out, images


def ollama_tools(req: CountTokensRequest) -> list[dict[str, Any]] | None:
    choice = req.tool_choice
    if not req.tools or (choice is not None and choice.type == "none"):
        return None
    tools = req.tools
    if choice is not None and choice.type == "tool":
        tools = [tool for tool in tools if tool.name == choice.name]
    out = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
        if tool.description:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


def _prompt_chars(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
    chars = 0
    for item in messages:
        chars += len(item.get("content") or "") + len(item.get("thinking") or "")
        for call in item.get("tool_calls") or ():
            function = call["function"]
            chars += len(function["name"]) + len(json.dumps(function["arguments"]))
    if tools:
        chars += len(json.dumps(tools))
    return chars


def count_prompt_tokens(req: CountTokensRequest) -> int:
    """The prompt's tokens, estimated (characters / 4, rounded up, plus 256 per image)."""
    messages, images = ollama_messages(req)
    return estimate_tokens(_prompt_chars(messages, ollama_tools(req)), images)


def anthropic_messages_request(
    req: MessagesRequest,
    *,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
) -> InferenceRequest:
    """``/v1/messages`` -> ``InferenceRequest(kind="chat", dialect="anthropic")``."""
    messages, images = ollama_messages(req)
    body: dict[str, Any] = {"model": req.model, "messages": messages, "stream": req.streaming}
    options: dict[str, Any] = dict(req.options) if req.options else {}
    options["num_predict"] = req.max_tokens
    if req.stop_sequences:
        options["stop"] = list(req.stop_sequences)
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(req, name)
        if value is not None:
            options[name] = value
    body["options"] = options
    tools = ollama_tools(req)
    if tools:
        body["tools"] = tools
    if req.thinking is not None:
        body["think"] = req.thinking.type != "disabled"
    if req.keep_alive is not None:
        body["keep_alive"] = req.keep_alive
    return inference_request(
        req,
        limits=limits,
        kind="chat",
        model=req.model,
        body=body,
        stream=req.streaming,
        dialect="anthropic",
        request_id=request_id,
        received_at=received_at,
        header_tags=header_tags,
        client=req.user_id or client,
        prompt_chars=_prompt_chars(messages, tools),
        images=images,
    )
