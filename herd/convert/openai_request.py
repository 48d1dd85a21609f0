"""OpenAI request models -> Ollama-native :class:`InferenceRequest` bodies.

Follows the mapping in ``openai-api.md`` section 8.1, with these decisions:

* **Sampling defaults.** When ``temperature`` / ``top_p`` are absent we send nothing, so
  the model's Modelfile defaults apply (Ollama's compat layer forces 1.0). Model authors
  tune those defaults and a fleet router should not silently override them; pass
  ``force_sampling_defaults=True`` to get Ollama's ``/v1`` behaviour.
* ``max_completion_tokens`` wins over ``max_tokens``; both become ``options.num_predict``.
* ``frequency_penalty`` / ``presence_penalty`` are sent only when given (also for
  ``/v1/completions``, where Ollama always sends 0).
* ``tool_choice``: ``"none"`` drops ``tools``; ``{"type":"function","function":{"name"}}``
  keeps only that tool; ``"auto"`` and ``"required"`` cannot be enforced and pass as-is.
* Text parts of one message are joined with ``"\\n"`` into one ``content`` (Ollama's
  layer sends one message per part); refusal parts count as text.
* Assistant ``reasoning_content`` / ``reasoning`` strings in the history become
  ``thinking``.
* herd extensions: ``options`` (explicit OpenAI fields override its keys), ``keep_alive``
  and ``think`` (``reasoning_effort`` wins over ``think``) pass to the backend.
"""

from __future__ import annotations

from typing import Any

from herd.convert.routing import inference_request
from herd.domain import InferenceRequest
from herd.errors import BadRequest
from herd.wire.limits import Limits
from herd.wire.openai import (
    REASONING_EFFORT,
    AudioPart,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    ImagePart,
    OpenAICommon,
    RefusalPart,
    ResponseFormat,
    TextPart,
    ToolDef,
)

_ROLE = {"developer": "system", "function": "tool"}


def sampling_options(
    req: OpenAICommon, num_predict: int | None, *, force_defaults: bool = False
) -> dict[str, Any]:
    """``options`` for Ollama from the OpenAI sampling fields (section 8.1)."""
    options: dict[str, Any] = dict(req.options) if req.options else {}
    if req.temperature is not None:
        options["temperature"] = req.temperature
    elif force_defaults:
        options.setdefault("temperature", 1.0)
    if req.top_p is not None:
        options["top_p"] = req.top_p
    elif force_defaults:
        options.setdefault("top_p", 1.0)
    if req.stop is not None:
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        if stop:
            options["stop"] = stop
    if req.seed is not None:
        options["seed"] = req.seed
    if req.frequency_penalty is not None:
        options["frequency_penalty"] = req.frequency_penalty
    if req.presence_penalty is not None:
        options["presence_penalty"] = req.presence_penalty
    if num_predict is not None:
        options["num_predict"] = num_predict
    return options


def ollama_format(response_format: ResponseFormat | None) -> str | dict[str, Any] | None:
    """``response_format`` -> Ollama ``format`` (``"json"``, a schema object, or None)."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_schema":
        spec = response_format.json_schema
        if spec is not None and spec.schema_ is not None:
            return spec.schema_
    return "json"


def ollama_tools(
    tools: list[ToolDef] | None, tool_choice: str | dict[str, Any] | None
) -> list[dict[str, Any]] | None:
    """Tools passed through; ``tool_choice`` "none" drops them, a named one filters."""
    if not tools or tool_choice == "none":
        return None
    out = []
    for tool in tools:
        item = tool.model_dump(exclude_unset=True)
        item["type"] = "function"
        out.append(item)
    if isinstance(tool_choice, dict) and tool_choice.get("type", "function") == "function":
        name = tool_choice["function"]["name"]
        out = [item for item in out if item["function"]["name"] == name]
        if not out:
            raise BadRequest(f"tool_choice names function {name!r}, which is not in tools")
    return out


def ollama_messages(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], int, int]:
    """OpenAI messages -> (Ollama messages, prompt characters, image count)."""
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    chars = 0
    image_count = 0
    for message in messages:
        role = _ROLE.get(message.role, message.role)
        content = message.content
        images: list[str] = []
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        else:
            texts: list[str] = []
            for part in content:
                if isinstance(part, TextPart):
                    texts.append(part.text)
                elif isinstance(part, ImagePart):
                    images.append(part.image_url.data)
                elif isinstance(part, AudioPart):
                    images.append(part.input_audio.data)
                elif isinstance(part, RefusalPart):
                    texts.append(part.refusal)
            text = "\n".join(texts)
        chars += len(text)
        item: dict[str, Any] = {"role": role, "content": text}
        if images:
            item["images"] = images
            image_count += len(images)
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                function = {"name": call.function.name, "arguments": call.function.arguments}
                if call.id:
                    call_names[call.id] = call.function.name
                    calls.append({"id": call.id, "function": function})
                else:
                    calls.append({"function": function})
            item["tool_calls"] = calls
        if role == "tool":
            call_id = message.tool_call_id
            name = call_names.get(call_id) if call_id else None
            name = name or message.name
            if name:
                item["tool_name"] = name
            if call_id:
                item["tool_call_id"] = call_id
        elif role == "assistant" and message.model_extra:
            thinking = message.model_extra.get("reasoning_content") or message.model_extra.get(
                "reasoning"
            )
            if isinstance(thinking, str) and thinking:
                item["thinking"] = thinking
        out.append(item)
    return out, chars, image_count


def openai_chat_request(
    req: ChatCompletionRequest,
    *,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
    force_sampling_defaults: bool = False,
) -> InferenceRequest:
    """``/v1/chat/completions`` -> ``InferenceRequest(kind="chat", dialect="openai")``
    with an ``/api/chat`` body; ``user`` (else ``client``) becomes ``client``."""
    messages, chars, images = ollama_messages(req.messages)
    num_predict = (
        req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    )
    body: dict[str, Any] = {"model": req.model, "messages": messages, "stream": req.streaming}
    options = sampling_options(req, num_predict, force_defaults=force_sampling_defaults)
    if options:
        body["options"] = options
    fmt = ollama_format(req.response_format)
    if fmt is not None:
        body["format"] = fmt
    tools = ollama_tools(req.tools, req.tool_choice)
    if tools:
        body["tools"] = tools
        chars += len(str(tools))
    effort = req.effort
    think = REASONING_EFFORT[effort] if effort is not None else req.think
    if think is not None:
        body["think"] = think
    if req.logprobs is not None:
        body["logprobs"] = req.logprobs
    if req.top_logprobs is not None:
        body["top_logprobs"] = req.top_logprobs
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


def openai_completion_request(
    req: CompletionRequest,
    *,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
    force_sampling_defaults: bool = False,
) -> InferenceRequest:
    """``/v1/completions`` -> ``InferenceRequest(kind="generate")`` with an
    ``/api/generate`` body (``prompt``, ``suffix``, options as for chat)."""
    body: dict[str, Any] = {"model": req.model, "prompt": req.prompt, "stream": req.streaming}
    if req.suffix is not None:
        body["suffix"] = req.suffix
    options = sampling_options(req, req.max_tokens, force_defaults=force_sampling_defaults)
    if options:
        body["options"] = options
    if req.keep_alive is not None:
        body["keep_alive"] = req.keep_alive
    return inference_request(
        req,
        limits=limits,
        kind="generate",
        model=req.model,
        body=body,
        stream=req.streaming,
        dialect="openai",
        request_id=request_id,
        received_at=received_at,
        header_tags=header_tags,
        client=req.user or client,
        prompt_chars=len(req.prompt) + len(req.suffix or ""),
    )


def openai_embedding_request(
    req: EmbeddingRequest,
    *,
    request_id: str,
    received_at: float,
    header_tags: str | None = None,
    client: str | None = None,
    limits: Limits | None = None,
) -> InferenceRequest:
    """``/v1/embeddings`` -> ``InferenceRequest(kind="embed")`` with an ``/api/embed``
    body (``input`` str or [str], ``dimensions``). ``encoding_format`` stays on ``req``
    for the response writer."""
    body: dict[str, Any] = {"model": req.model, "input": req.input}
    if req.dimensions is not None:
        body["dimensions"] = req.dimensions
    if req.truncate is not None:
        body["truncate"] = req.truncate
    if req.options:
        body["options"] = dict(req.options)
    if req.keep_alive is not None:
        body["keep_alive"] = req.keep_alive
    return inference_request(
        req,
        limits=limits,
        kind="embed",
        model=req.model,
        body=body,
        stream=False,
        dialect="openai",
        request_id=request_id,
        received_at=received_at,
        header_tags=header_tags,
        client=req.user or client,
        prompt_chars=sum(len(text) for text in req.inputs),
    )
