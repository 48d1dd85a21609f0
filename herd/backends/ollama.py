"""Client for a device's local Ollama, over aiohttp (measured ~6x faster than httpx here)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from herd.backends.base import BackendState
from herd.backends.http_errors import error_for_status
from herd.domain import BackendKind, LoadedModel, ModelOnDisk, RequestKind
from herd.errors import BackendError, BackendTimeout, HerdError
from herd.json_codec import dumps, loads
from herd.taxonomy import model_category

_JSON_HEADERS = {"Content-Type": "application/json"}
_PATHS: dict[str, str] = {
    "chat": "/api/chat",
    "generate": "/api/generate",
    "embed": "/api/embed",
    "embeddings": "/api/embeddings",
}


async def _line_batches(content: aiohttp.StreamReader) -> AsyncIterator[list[bytes]]:
    """The non-empty NDJSON lines of a body, as many as each read brought (not one await
    per line); a last line without its newline comes at the end."""
    rest = b""
    async for data in content.iter_any():
        *lines, rest = (rest + data).split(b"\n") if rest else data.split(b"\n")
        kept = [line for line in lines if line.strip()]
        if kept:
            yield kept
    if rest.strip():
        yield [rest]


def _model_on_disk(entry: Mapping[str, Any]) -> ModelOnDisk:
    details = entry.get("details") or {}
    name = str(entry.get("model") or entry.get("name") or "")
    family = str(details.get("family") or "")
    return ModelOnDisk(
        name=name,
        size=int(entry.get("size") or 0),
        family=family,
        parameter_size=str(details.get("parameter_size") or ""),
        quantization_level=str(details.get("quantization_level") or ""),
        modified_at=str(entry.get("modified_at") or ""),
        digest=str(entry.get("digest") or ""),
        category=model_category(name, family, entry.get("capabilities")),
    )


def _loaded(entry: Mapping[str, Any]) -> LoadedModel:
    return LoadedModel(
        name=str(entry.get("model") or entry.get("name") or ""),
        size=int(entry.get("size") or 0),
        size_vram=int(entry.get("size_vram") or 0),
        context_length=int(entry.get("context_length") or 0),
        expires_at=str(entry.get("expires_at") or ""),
    )


class OllamaBackend:
    """The Backend protocol over Ollama's native API.

    No request has a total time limit: a long answer or a 40 GB pull takes what it
    takes. Silence is what is bounded: ``read_timeout`` between two reads of any answer
    (the node's first-chunk and chunk timeouts are the precise limits; this is the
    socket's backstop), ``pull_read_timeout`` between two reads of a pull (Ollama is
    silent while it verifies a layer), ``connect_timeout`` the TCP connect. An image
    job sends nothing until its PNG is ready: it is bounded by the node's job limit."""

    kind: BackendKind = "ollama"

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        pull_read_timeout: float = 600.0,
        probe_timeout: float = 2.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._read_timeout = read_timeout
        self._pull_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=pull_read_timeout
        )
        self._job_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self._probe_timeout = probe_timeout
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                timeout=self._timeout,
            )
        return self._session

    async def _get_json(self, path: str) -> Any:
        timeout = aiohttp.ClientTimeout(total=self._probe_timeout)
        async with self._http().get(self.url + path, timeout=timeout) as resp:
            if resp.status != 200:
                raise error_for_status(resp.status, await resp.text())
            return await resp.json(content_type=None)

    async def probe(self) -> BackendState:
        try:
            version, tags, ps = await asyncio.gather(
                self._get_json("/api/version"),
                self._get_json("/api/tags"),
                self._get_json("/api/ps"),
            )
        except (aiohttp.ClientError, TimeoutError, HerdError, ValueError) as exc:
            return BackendState("ollama", self.url, ok=False, error=str(exc) or type(exc).__name__)
        return BackendState(
            "ollama",
            self.url,
            ok=True,
            version=str(version.get("version", "")),
            models=tuple(_model_on_disk(m) for m in tags.get("models") or ()),
            loaded=tuple(_loaded(m) for m in ps.get("models") or ()),
        )

    async def stream(
        self, kind: RequestKind, body: Mapping[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        async for raw in self._lines(kind, body):
            yield loads(raw)

    def stream_lines(self, kind: RequestKind, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """The chunks as Ollama sent them, one JSON line each (see ``RawLines``)."""
        return self._lines(kind, body)

    async def _lines(self, kind: RequestKind, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """Each chunk's line; only a line that may be an error or the final chunk is
        decoded here (a cheap look at its bytes first)."""
        payload = dict(body)
        payload["stream"] = True
        started = False
        try:
            async with self._http().post(
                self.url + _PATHS[kind], data=dumps(payload), headers=_JSON_HEADERS
            ) as resp:
                if resp.status != 200:
                    raise error_for_status(resp.status, await resp.text())
                async for lines in _line_batches(resp.content):
                    for raw in lines:
                        final = False
                        if b'"error"' in raw or b'"done":true' in raw or b'"done": true' in raw:
                            chunk = loads(raw)
                            if "error" in chunk:
                                raise BackendError(str(chunk["error"]), retryable=not started)
                            final = bool(chunk.get("done"))
                        started = True
                        yield raw
                        if final:
                            return
            raise BackendError("backend closed the stream early", retryable=not started)
        except TimeoutError:
            raise BackendTimeout(
                f"ollama sent nothing for {self._read_timeout:g}s", retryable=not started
            ) from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"ollama: {exc}", retryable=not started) from None
        except ValueError as exc:
            raise BackendError(f"ollama sent bad JSON: {exc}", retryable=not started) from None

    async def complete(self, kind: RequestKind, body: Mapping[str, Any]) -> dict[str, Any]:
        payload = dict(body)
        if kind in ("chat", "generate"):
            payload["stream"] = False
        return await self._post_json(_PATHS[kind], payload)

    # --- model management (Ollama only) ------------------------------------------------
    async def show(self, model: str, verbose: bool = False) -> dict[str, Any]:
        """``/api/show``; 404 -> ModelNotFound."""
        payload: dict[str, Any] = {"model": model}
        if verbose:
            payload["verbose"] = True
        return await self._post_json("/api/show", payload)

    async def pull(self, model: str, insecure: bool = False) -> AsyncIterator[dict[str, Any]]:
        """``/api/pull`` progress lines, as Ollama streams them; an ``error`` line raises
        BackendError (after the lines before it were yielded)."""
        payload: dict[str, Any] = {"model": model, "stream": True}
        if insecure:
            payload["insecure"] = True
        started = False
        try:
            post = self._http().post(
                self.url + "/api/pull", json=payload, timeout=self._pull_timeout
            )
            async with post as resp:
                if resp.status != 200:
                    raise error_for_status(resp.status, await resp.text())
                async for raw in resp.content:
                    if not raw.strip():
                        continue
                    line = json.loads(raw)
                    if "error" in line:
                        raise BackendError(str(line["error"]), retryable=False)
                    started = True
                    yield line
        except TimeoutError:
            stall = self._pull_timeout.sock_read
            raise BackendTimeout(
                f"ollama's pull sent no progress for {stall:g}s", retryable=not started
            ) from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"ollama: {exc}", retryable=not started) from None
        except ValueError as exc:
            raise BackendError(f"ollama sent bad JSON: {exc}", retryable=False) from None

    async def delete(self, model: str) -> None:
        """``DELETE /api/delete``; 404 -> ModelNotFound."""
        try:
            async with self._http().delete(self.url + "/api/delete", json={"model": model}) as resp:
                if resp.status != 200:
                    raise error_for_status(resp.status, await resp.text())
        except TimeoutError as exc:
            raise BackendTimeout(f"ollama timed out: {exc}") from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"ollama: {exc}") from None

    async def generate_image(
        self,
        model: str,
        prompt: str,
        *,
        width: int,
        height: int,
        steps: int | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
    ) -> bytes:
        """A PNG from an Ollama native image model (``x/z-image-turbo``, ``x/flux2-klein``)
        through Ollama's ``/v1/images/generations``."""
        payload: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "size": f"{width}x{height}",
            "response_format": "b64_json",
        }
        extra = {"steps": steps, "seed": seed, "negative_prompt": negative_prompt}
        payload |= {k: v for k, v in extra.items() if v is not None}
        result = await self._post_json("/v1/images/generations", payload, self._job_timeout)
        try:
            return base64.b64decode(result["data"][0]["b64_json"])
        except (KeyError, IndexError, TypeError, ValueError):
            raise BackendError("ollama returned no image", retryable=False) from None

    async def _post_json(
        self,
        path: str,
        payload: Mapping[str, Any],
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> dict[str, Any]:
        try:
            timeout = timeout or self._timeout
            async with self._http().post(self.url + path, json=payload, timeout=timeout) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise error_for_status(resp.status, text)
                result: dict[str, Any] = json.loads(text)
                return result
        except TimeoutError:
            raise BackendTimeout(f"ollama sent no answer in {self._read_timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"ollama: {exc}") from None
        except ValueError as exc:
            raise BackendError(f"ollama sent bad JSON: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
