"""Python callers: use the fleet through actor handles, no HTTP.

    from actors.client import connect_client
    herd = connect_client()                      # joins the running cluster
    reply = herd.chat("llama3.2:3b", [{"role": "user", "content": "Hello!"}])
    print(reply["message"]["content"], reply["herd"]["node"])
    for chunk in herd.chat("llama3.2:3b", messages, stream=True): ...
    herd.embed("nomic-embed-text", ["a", "b"])["embeddings"]
    png = herd.image("tiny-sd:random", "a red fox", width=256, height=256)["image"]
    herd.transcribe("whisper:tiny.en", open("talk.wav", "rb").read())["text"]
    mp3 = herd.speech("tts-1", "Hello!", voice="alloy")["audio"]
    herd.fleet_status()

Requests get the same routing, retries, fallbacks and book-keeping as HTTP ones
(``herd.dispatch.dispatcher.Dispatcher``). Replies are Ollama-native dicts plus a ``herd``
key saying which node and model served.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Iterator, Sequence
from typing import Any

from actors import NAMESPACE, ROUTER_NAME, node_actor_name
from actors.cluster import connect
from actors.ports import ray_dispatcher
from herd.domain import Decision, InferenceRequest, RequestKind
from herd.settings import Settings, load_settings


def _meta(decision: Decision, retries: int) -> dict[str, Any]:
    return {
        "node": decision.node_id,
        "model": decision.model,
        "fallback": decision.fallback,
        "retries": retries,
        "score": decision.score,
        "breakdown": dict(decision.breakdown),
    }


class HerdClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dispatcher = ray_dispatcher(settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    # --- handles -----------------------------------------------------------------------
    @property
    def router(self) -> Any:
        import ray

        return ray.get_actor(ROUTER_NAME, namespace=NAMESPACE)

    def node(self, node_id: str) -> Any:
        import ray

        return ray.get_actor(node_actor_name(node_id), namespace=NAMESPACE)

    # --- async API ---------------------------------------------------------------------
    def _request(
        self, kind: RequestKind, model: str, body: dict[str, Any], stream: bool, **kw: Any
    ) -> InferenceRequest:
        body = {"model": model, **body}
        return InferenceRequest(
            request_id=uuid.uuid4().hex,
            kind=kind,
            model=model,
            body=body,
            stream=stream,
            dialect="python",
            fallback_models=tuple(kw.get("fallback_models") or ()),
            tags=tuple(kw.get("tags") or ()),
            received_at=time.time(),
        )

    async def arun(self, req: InferenceRequest) -> dict[str, Any]:
        decision, retries, result = await self.dispatcher.complete(req)
        return {**result, "herd": _meta(decision, retries)}

    async def astream(self, req: InferenceRequest) -> AsyncGenerator[dict[str, Any], None]:
        served = await self.dispatcher.stream(req)
        meta = _meta(served.decision, served.retries)
        try:
            for chunk in served.first:
                yield {**chunk, "herd": meta}
            async for batch in served.rest:
                for chunk in batch:
                    yield {**chunk, "herd": meta}
        finally:
            await served.rest.aclose()  # a caller that stops early ends the attempt

    # --- sync API ----------------------------------------------------------------------
    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, agen: AsyncGenerator[dict[str, Any], None]) -> Iterator[dict[str, Any]]:
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:  # the caller stopped early (or the answer ended): close the stream
            with contextlib.suppress(Exception):
                self._run(agen.aclose())

    def chat(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        *,
        stream: bool = False,
        options: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Any:
        body: dict[str, Any] = {"messages": list(messages)}
        if options:
            body["options"] = options
        req = self._request("chat", model, body, stream, **kw)
        return self._iterate(self.astream(req)) if stream else self._run(self.arun(req))

    def generate(
        self,
        model: str,
        prompt: str,
        *,
        stream: bool = False,
        options: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Any:
        body: dict[str, Any] = {"prompt": prompt}
        if options:
            body["options"] = options
        req = self._request("generate", model, body, stream, **kw)
        return self._iterate(self.astream(req)) if stream else self._run(self.arun(req))

    def embed(self, model: str, inputs: str | Sequence[str], **kw: Any) -> dict[str, Any]:
        value = inputs if isinstance(inputs, str) else list(inputs)
        req = self._request("embed", model, {"input": value}, False, **kw)
        result: dict[str, Any] = self._run(self.arun(req))
        return result

    def image(
        self,
        model: str,
        prompt: str,
        *,
        width: int = 1024,
        height: int = 1024,
        steps: int | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """One image: ``{"image": <png bytes>, "width", "height", "seed", "steps", ...}``."""
        body: dict[str, Any] = {"prompt": prompt, "width": width, "height": height}
        extra = {"steps": steps, "seed": seed, "negative_prompt": negative_prompt}
        body |= {k: v for k, v in extra.items() if v is not None}
        req = self._request("image", model, body, False, **kw)
        result: dict[str, Any] = self._run(self.arun(req))
        return result

    def transcribe(
        self,
        model: str,
        audio: bytes,
        *,
        filename: str = "audio.wav",
        language: str | None = None,
        prompt: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """Speech-to-text: ``{"text", "language", "duration", "segments", ...}``."""
        body: dict[str, Any] = {"audio": bytes(audio), "filename": filename}
        if language:
            body["language"] = language
        if prompt:
            body["prompt"] = prompt
        req = self._request("transcribe", model, body, False, **kw)
        result: dict[str, Any] = self._run(self.arun(req))
        return result

    def speech(
        self,
        model: str,
        text: str,
        *,
        voice: str = "alloy",
        response_format: str = "mp3",
        speed: float = 1.0,
        **kw: Any,
    ) -> dict[str, Any]:
        """Text-to-speech: ``{"audio": <file bytes>, "format", "media_type", "sample_rate",
        "duration", "voice", ...}`` (formats and voices: ``herd.backends.tts_common``)."""
        body = {"input": text, "voice": voice, "speed": speed, "response_format": response_format}
        req = self._request("speech", model, body, False, **kw)
        result: dict[str, Any] = self._run(self.arun(req))
        return result

    def fleet_status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._run(self.dispatcher.status())
        return result

    def close(self) -> None:
        """Send the last outcome reports to the router, then stop the client's loop."""
        with contextlib.suppress(Exception):  # the router is gone; nothing left to tell it
            self._run(asyncio.wait_for(self.dispatcher.flush(), timeout=10))
        with contextlib.suppress(Exception):
            self._run(asyncio.wait_for(self.dispatcher.aclose(), timeout=5))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def connect_client(address: str = "auto", settings: Settings | None = None) -> HerdClient:
    """Join the running cluster (bounded by ``FLEET_RAY_CONNECT_TIMEOUT``) and return a client."""
    settings = settings or load_settings()
    connect(address, timeout=settings.ray_connect_timeout)
    return HerdClient(settings)
