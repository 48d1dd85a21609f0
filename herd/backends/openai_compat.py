"""The Backend protocol over an OpenAI-compatible server (llama.cpp server, LM Studio, vLLM).

Ollama-native bodies become ``/v1/chat/completions``, ``/v1/completions`` or
``/v1/embeddings`` requests; the SSE reply becomes Ollama chunks again, the final
``done: true`` chunk carrying Ollama's metrics (from llama.cpp's ``timings`` when present,
else measured by wall clock). Zero metrics are left out, as Ollama does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import string
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiohttp

from herd.backends.base import BackendState
from herd.backends.http_errors import error_for_status, error_message
from herd.domain import BackendKind, LoadedModel, ModelOnDisk, RequestKind
from herd.errors import BackendError, BackendTimeout, BadRequest, HerdError

JSON = dict[str, Any]
_OPTIONS: tuple[str, ...] = ("temperature", "top_p", "top_k", "min_p", "seed")
_OPTIONS += ("frequency_penalty", "presence_penalty")  # passed through under the same name
_LLAMACPP_OPTIONS = {"repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n"}
_LLAMACPP_OPTIONS |= {"typical_p": "typical_p", "num_keep": "n_keep"}
_MAGIC = {"iVBOR": "image/png", "/9j/": "image/jpeg", "R0lG": "image/gif", "UklG": "image/webp"}
_FOREVER = "2318-01-01T00:00:00Z"  # what Ollama's /api/ps shows for "loaded forever"
_PROBE_ERRORS = (HerdError, aiohttp.ClientError, TimeoutError, ValueError)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _call_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))


def _content(text: Any, images: Any) -> Any:
    """OpenAI message content: the text, or text and image parts when there are images."""
    if not images:
        return "" if text is None else text
    parts: list[JSON] = [{"type": "text", "text": str(text)}] if text else []
    for image in map(str, images):
        mime = next((m for p, m in _MAGIC.items() if image.startswith(p)), "image/png")
        url = image if image.startswith("data:") else f"data:{mime};base64,{image}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def openai_messages(messages: Any) -> list[JSON]:
    """Ollama chat messages as OpenAI ones (tool-call arguments become JSON strings)."""
    out: list[JSON] = []
    call_ids: dict[str, str] = {}  # latest call id per function name, for tool results
    for m in messages or ():
        role = str(m.get("role") or "user").lower()
        msg: JSON = {"role": role, "content": _content(m.get("content"), m.get("images"))}
        for tc in m.get("tool_calls") or ():
            fn = tc.get("function") or {}
            name, args = str(fn.get("name") or ""), fn.get("arguments")
            call_ids[name] = cid = str(tc.get("id") or _call_id())
            args = args if isinstance(args, str) else json.dumps(args or {})
            call = {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            msg.setdefault("tool_calls", []).append(call)
        tool_call_id = m.get("tool_call_id") or call_ids.get(str(m.get("tool_name") or ""))
        if role == "tool" and tool_call_id:
            msg["tool_call_id"] = tool_call_id
        out.append(msg)
    return out


def openai_request(
    kind: RequestKind, body: Mapping[str, Any], backend: BackendKind
) -> tuple[str, JSON]:
    """The ``/v1`` path and streaming payload for an Ollama chat or generate body."""
    payload: JSON = {"model": body.get("model") or ""}
    path = "/v1/chat/completions"
    if kind == "chat":
        payload["messages"] = openai_messages(body.get("messages"))
        if body.get("tools"):
            payload["tools"] = body["tools"]
    elif body.get("raw") or body.get("suffix"):  # no template: plain or fill-in completion
        path, payload["prompt"] = "/v1/completions", body.get("prompt") or ""
        if body.get("suffix"):
            payload["suffix"] = body["suffix"]
    else:  # Ollama wraps a generate prompt in the model's chat template; so does the server
        system = [{"role": "system", "content": body["system"]}] if body.get("system") else []
        user = {"role": "user", "content": _content(body.get("prompt"), body.get("images"))}
        payload["messages"] = [*system, user]
    options = body.get("options") or {}
    if not isinstance(options, Mapping):
        raise BadRequest("options must be an object")
    payload |= {k: options[k] for k in _OPTIONS if options.get(k) is not None}
    if backend == "llamacpp":
        payload |= {
            v: options[k] for k, v in _LLAMACPP_OPTIONS.items() if options.get(k) is not None
        }
        if isinstance(body.get("think"), bool):
            payload["chat_template_kwargs"] = {"enable_thinking": body["think"]}
    if stop := options.get("stop"):
        payload["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(num_predict := options.get("num_predict"), int) and num_predict > 0:
        payload["max_tokens"] = num_predict
    fmt = body.get("format")
    if fmt == "json":
        payload["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, Mapping):
        schema = {"name": "response", "schema": dict(fmt), "strict": True}
        payload["response_format"] = {"type": "json_schema", "json_schema": schema}
    payload |= {"stream": True, "stream_options": {"include_usage": True}}
    return path, payload


def _arguments(raw: str) -> JSON:
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise BackendError(f"backend sent bad tool arguments: {raw[:200]}", retryable=False)
    return value


class _Translator:
    """OpenAI stream events in, Ollama chunks out; keeps what the final chunk needs."""

    def __init__(self, kind: RequestKind, model: str) -> None:
        self.chat, self.model = kind == "chat", model
        self.began = self.last_at = time.perf_counter()
        self.first_at: float | None = None
        self.finish: str | None = None
        self.usage: JSON = {}
        self.timings: JSON = {}
        self.pieces = 0
        self._calls: dict[int, JSON] = {}

    def chunk(self, content: str = "", thinking: str = "", calls: Any = None) -> JSON:
        out: JSON = {"model": self.model, "created_at": _now()}
        extra = {"thinking": thinking} if thinking else {}
        if self.chat:
            out["message"] = {"role": "assistant", "content": content, **extra}
            if calls:
                out["message"]["tool_calls"] = calls
        else:
            out |= {"response": content, **extra}
        out["done"] = False
        return out

    def _piece(self, **parts: Any) -> JSON:
        self.last_at = time.perf_counter()
        self.first_at = self.first_at or self.last_at
        self.pieces += 1
        return self.chunk(**parts)

    def feed(self, event: Mapping[str, Any]) -> list[JSON]:
        self.usage = event.get("usage") or self.usage
        self.timings = event.get("timings") or self.timings
        out: list[JSON] = []
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or choice.get("message") or {}
            if thinking := delta.get("reasoning_content") or delta.get("reasoning"):
                out.append(self._piece(thinking=thinking))
            if text := choice.get("text") if "text" in choice else delta.get("content"):
                out.append(self._piece(content=text))
            for pos, tc in enumerate(delta.get("tool_calls") or ()):
                slot = self._calls.setdefault(
                    tc.get("index", pos), {"id": "", "name": "", "args": ""}
                )
                fn = tc.get("function") or {}
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] = fn.get("name") or slot["name"]
                args = fn.get("arguments")
                slot["args"] += args if isinstance(args, str) else json.dumps(args or {})
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
                out += self.flush()
        return out

    def flush(self) -> list[JSON]:
        """Pending tool calls, whole and in one chunk, as Ollama sends them."""
        slots = [self._calls[k] for k in sorted(self._calls)]
        self._calls.clear()
        calls = [
            {
                "id": s["id"] or _call_id(),
                "function": {"index": i, "name": s["name"], "arguments": _arguments(s["args"])},
            }
            for i, s in enumerate(slots)
        ]
        return [self._piece(calls=calls)] if calls and self.chat else []

    def final(self) -> JSON:
        now, usage, timings = time.perf_counter(), self.usage, self.timings
        prompt_n = int(usage.get("prompt_tokens") or 0)
        prompt_n = prompt_n or int(timings.get("prompt_n") or 0) + int(timings.get("cache_n") or 0)
        total = int((now - self.began) * 1e9)
        if "prompt_ms" in timings or "predicted_ms" in timings:
            prompt_ns = int(float(timings.get("prompt_ms") or 0) * 1e6)
            eval_ns = int(float(timings.get("predicted_ms") or 0) * 1e6)
            load_ns = max(0, total - prompt_ns - eval_ns)  # queueing and transport
            total = max(total, prompt_ns + eval_ns)
        else:
            first = self.first_at or now
            prompt_ns = int((first - self.began) * 1e9)  # time to the first token
            eval_ns, load_ns = int((self.last_at - first) * 1e9), 0
        metrics = {
            "total_duration": total,
            "load_duration": load_ns,
            "prompt_eval_count": prompt_n,
            "prompt_eval_duration": prompt_ns,
            "eval_count": int(
                usage.get("completion_tokens") or timings.get("predicted_n") or self.pieces
            ),
            "eval_duration": eval_ns,
        }
        out = self.chunk() | {
            "done": True,
            "done_reason": "length" if self.finish == "length" else "stop",
        }
        return out | {k: v for k, v in metrics.items() if v > 0}


async def _sse(resp: aiohttp.ClientResponse) -> AsyncIterator[JSON]:
    """The JSON of each SSE ``data:`` event, until ``[DONE]`` or the end of the body."""
    if resp.content_type == "application/json":  # a server that ignored stream: true
        yield await resp.json()
        return
    buf, data = b"", []
    async for block in resp.content.iter_any():
        *lines, buf = (buf + block).split(b"\n")
        for line in (raw.rstrip(b"\r") for raw in lines):
            if line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" ").decode())
            elif not line and data:
                payload, data = "\n".join(data), []
                if payload.strip() == "[DONE]":
                    return
                yield json.loads(payload)
    data += [buf[5:].removeprefix(b" ").decode()] if buf.startswith(b"data:") else []
    if data and "\n".join(data).strip() != "[DONE]":
        yield json.loads("\n".join(data))


def _load_reply(kind: RequestKind, body: Mapping[str, Any]) -> JSON | None:
    """Ollama answers an empty prompt or message list by loading (or unloading) the model."""
    if body.get("messages" if kind == "chat" else "prompt") or body.get("suffix"):
        return None
    unload = body.get("keep_alive") in (0, "0", "0s", "0m")
    reply = _Translator(kind, str(body.get("model") or "")).chunk()
    return reply | {"done": True, "done_reason": "unload" if unload else "load"}


def _describe(
    entry: Mapping[str, Any], sizes: Mapping[str, int]
) -> tuple[ModelOnDisk, LoadedModel]:
    """A ``/v1/models`` entry (with llama.cpp's ``meta`` when present) as Ollama sees it."""
    meta, name = entry.get("meta") or {}, str(entry["id"])
    size = int(sizes.get(name) or meta.get("size") or 0)
    params, ftype = int(meta.get("n_params") or 0), str(meta.get("ftype") or "")
    for words, short in ((" - Small", "_S"), (" - Medium", "_M"), (" - Large", "_L")):
        ftype = ftype.replace(words, short)  # "Q4_K - Medium" -> "Q4_K_M"
    scale = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.2f}M"
    created = entry.get("created")
    disk = ModelOnDisk(
        name=name,
        size=size,
        parameter_size=scale if params else "",
        quantization_level=ftype.replace(" ", ""),
        modified_at=datetime.fromtimestamp(created, UTC).isoformat() if created else "",
    )
    ctx = int(meta.get("n_ctx") or 0)  # llama.cpp: the context of one request slot
    return disk, LoadedModel(name, size, 0, context_length=ctx, expires_at=_FOREVER)


class _Guard:
    """Maps aiohttp, timeout and bad-reply failures in its block to :mod:`herd.errors` types."""

    def __init__(self, where: str, *, buffered: bool = True) -> None:
        self.where, self.buffered, self.sent = where, buffered, False

    @property
    def retryable(self) -> bool:
        """Until a chunk reached the client (never, when buffered) a retry is safe."""
        return self.buffered or not self.sent

    def __enter__(self) -> _Guard:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, TimeoutError):
            raise BackendTimeout(f"{self.where} timed out", retryable=self.retryable) from None
        if isinstance(exc, aiohttp.ClientConnectorError):
            raise BackendError(f"cannot connect to {self.where}: {exc}", retryable=True) from None
        if isinstance(exc, aiohttp.ClientError):
            raise BackendError(f"{self.where}: {exc!r}", retryable=self.retryable) from None
        if isinstance(exc, ValueError | TypeError | AttributeError | KeyError):
            raise BackendError(f"{self.where} sent a bad reply: {exc!r}", retryable=False) from None


class OpenAICompatBackend:
    """One OpenAI-compatible server; ``kind`` is ``llamacpp`` or ``openai`` (LM Studio, vLLM).

    ``model_sizes`` maps a model id to its size in bytes (the GGUF file size) for
    probes. ``read_timeout`` bounds the silence between two reads of an answer (a
    request has no total limit: a long answer takes what it takes), ``connect_timeout``
    the TCP connect.
    """

    def __init__(
        self,
        url: str,
        kind: BackendKind = "llamacpp",
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        probe_timeout: float = 2.0,
        model_sizes: Mapping[str, int] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.url = url.rstrip("/").removesuffix("/v1")
        self.kind = kind
        self.model_sizes = dict(model_sizes or {})
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._probe_timeout = aiohttp.ClientTimeout(
            total=probe_timeout, sock_connect=connect_timeout
        )
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._loop = loop  # a session is bound to the loop that made it
            # keep-alive shorter than llama.cpp's 5 s, so idle connections are not stale
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4),
                timeout=self._timeout,
                headers=self._headers,
            )
        return self._session

    async def _get(self, path: str) -> Any:
        for attempt in (1, 2):  # a pooled connection the server already closed: retry once
            try:
                async with self._http().get(self.url + path, timeout=self._probe_timeout) as resp:
                    text = await resp.text()
                    if resp.status != 200:
                        raise error_for_status(resp.status, text)
                    return json.loads(text)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if attempt == 2:
                    raise
        return None  # pragma: no cover

    async def probe(self) -> BackendState:
        version = ""
        try:
            if self.kind == "llamacpp":
                await self._get("/health")  # 503 while the model is still loading
            listing = await self._get("/v1/models")
            if self.kind == "llamacpp":
                with contextlib.suppress(*_PROBE_ERRORS):
                    version = str((await self._get("/props")).get("build_info") or "")
        except _PROBE_ERRORS as exc:
            return BackendState(self.kind, self.url, ok=False, error=str(exc) or repr(exc))
        try:
            described = [_describe(e, self.model_sizes) for e in listing.get("data") or ()]
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            return BackendState(self.kind, self.url, ok=False, error=f"bad /v1/models: {exc}")
        models, loaded = tuple(d[0] for d in described), tuple(d[1] for d in described)
        return BackendState(self.kind, self.url, True, version, models, loaded)

    async def stream(self, kind: RequestKind, body: Mapping[str, Any]) -> AsyncIterator[JSON]:
        async for chunk in self._chunks(kind, body, buffered=False):
            yield chunk

    async def complete(self, kind: RequestKind, body: Mapping[str, Any]) -> JSON:
        if kind in ("embed", "embeddings"):
            return await self._embed(kind, body)
        texts, thoughts, calls = [], [], []  # type: list[str], list[str], list[JSON]
        async for chunk in self._chunks(kind, body, buffered=True):
            part = chunk.get("message") or chunk
            texts.append(part.get("content") or part.get("response") or "")
            thoughts.append(part.get("thinking") or "")
            calls += part.get("tool_calls") or ()
            if chunk["done"]:
                part["content" if "message" in chunk else "response"] = "".join(texts)
                if any(thoughts):
                    part["thinking"] = "".join(thoughts)
                if calls:
                    part["tool_calls"] = calls
                return chunk
        raise BackendError("backend ended without a final chunk")  # pragma: no cover

    async def _chunks(
        self, kind: RequestKind, body: Mapping[str, Any], *, buffered: bool
    ) -> AsyncIterator[JSON]:
        if kind in ("embed", "embeddings"):
            yield await self._embed(kind, body)
            return
        if (reply := _load_reply(kind, body)) is not None:
            yield reply
            return
        path, payload = openai_request(kind, body, self.kind)
        tr = _Translator(kind, str(body.get("model") or ""))
        with _Guard(f"{self.kind} at {self.url}", buffered=buffered) as guard:
            # llama.cpp closes the connection after a stream despite its Keep-Alive header;
            # a pooled connection would fail the next request, so streams never reuse one.
            headers = {"Connection": "close"}
            async with self._http().post(self.url + path, json=payload, headers=headers) as resp:
                if resp.status != 200:
                    raise error_for_status(resp.status, await resp.text())
                async for event in _sse(resp):
                    if "error" in event:
                        raise self._event_error(event, retryable=guard.retryable)
                    for chunk in tr.feed(event):
                        guard.sent = True
                        yield chunk
            if tr.finish is None and not tr.usage and not tr.timings:
                raise BackendError("backend closed the stream early", retryable=guard.retryable)
            for chunk in tr.flush():
                yield chunk
            yield tr.final()

    @staticmethod
    def _event_error(event: Mapping[str, Any], *, retryable: bool) -> HerdError:
        text = json.dumps(event)
        code = event["error"].get("code") if isinstance(event["error"], dict) else None
        if retryable and isinstance(code, int) and code >= 400:
            return error_for_status(code, text)
        return BackendError(f"backend error mid-stream: {error_message(text)}", retryable=retryable)

    async def _embed(self, kind: RequestKind, body: Mapping[str, Any]) -> JSON:
        model = str(body.get("model") or "")
        inputs = body.get("input" if kind == "embed" else "prompt")
        inputs = ([inputs] if inputs else []) if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise BadRequest("invalid input type")
        if not inputs:
            return {"model": model, "embeddings": []} if kind == "embed" else {"embedding": []}
        payload: JSON = {"model": model, "input": inputs, "encoding_format": "float"}
        if body.get("dimensions"):
            payload["dimensions"] = body["dimensions"]
        began = time.perf_counter()
        with _Guard(f"{self.kind} at {self.url}"):
            async with self._http().post(self.url + "/v1/embeddings", json=payload) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise error_for_status(resp.status, text)
                data = json.loads(text)
        rows = sorted(data.get("data") or (), key=lambda r: r.get("index", 0))
        usage = data.get("usage") or {}
        vectors = [[float(x) for x in row.get("embedding") or ()] for row in rows]
        if kind == "embeddings":  # legacy endpoint: one vector, not normalised
            return {"embedding": vectors[0] if vectors else []}
        norms = [math.sqrt(sum(x * x for x in vec)) or 1.0 for vec in vectors]
        out: JSON = {
            "model": model,
            "embeddings": [[x / n for x in v] for v, n in zip(vectors, norms, strict=True)],
        }
        out["total_duration"] = int((time.perf_counter() - began) * 1e9)
        if prompt_n := int(usage.get("prompt_tokens") or 0):
            out["prompt_eval_count"] = prompt_n
        return out

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
