"""How the dispatcher reads one node's answer: a Ray streaming generator or an NDJSON
body from the node's HTTP data plane (``herd.node_http``). Both yield batches of
Ollama chunks; both can be cancelled."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import ray

from herd.errors import BackendError, HerdError, NodeUnavailable
from herd.models import InferenceRequest
from herd.node_http import STREAM_PATH, error_from_payload

Chunk = dict[str, Any]


def ray_next(gen: Any) -> Callable[[], Awaitable[list[Chunk]]]:
    async def nxt() -> list[Chunk]:
        batch: list[Chunk] = await (await gen.__anext__())
        return batch

    return nxt


def ray_cancel(gen: Any) -> Callable[[], None]:
    def cancel() -> None:
        with contextlib.suppress(Exception):
            ray.cancel(gen)

    return cancel


class HttpBody:
    """One NDJSON answer from a node's HTTP data plane (``herd.node_http``)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, node_id: str) -> None:
        self._session = session
        self._url = url + STREAM_PATH
        self._node_id = node_id
        self._resp: aiohttp.ClientResponse | None = None
        self._buf = b""
        self._ended = False

    async def open(self, req: InferenceRequest, model: str) -> list[Chunk]:
        """Send the request and return the first batch ([] for an empty answer).
        Any failure here is retryable unless the node said otherwise."""
        payload = {
            "request_id": req.request_id,
            "kind": req.kind,
            "model": model,
            "body": dict(req.body),
        }
        try:
            resp = await self._session.post(self._url, json=payload)
        except aiohttp.ClientError as exc:
            raise NodeUnavailable(
                f"node data plane unreachable ({self._node_id}): {type(exc).__name__}: {exc}"
            ) from None
        self._resp = resp
        if resp.status != 200:
            try:
                data = await resp.json(content_type=None)
            except Exception:
                data = {"error": f"node data plane answered HTTP {resp.status}"}
            finally:
                resp.release()
            if not isinstance(data, dict):
                data = {"error": str(data)}
            raise error_from_payload(data, default_retryable=True)
        try:
            return await self.next_batch()
        except StopAsyncIteration:
            return []
        except aiohttp.ClientError as exc:
            self.close()
            raise NodeUnavailable(f"node data plane broke ({self._node_id}): {exc}") from None
        except HerdError:
            self.close()
            raise

    async def next_batch(self) -> list[Chunk]:
        """Every complete line already received, waiting only for the first of them."""
        assert self._resp is not None
        content = self._resp.content
        while True:
            if self._ended:
                raise StopAsyncIteration
            data = await content.readany()
            if not data:
                self._ended = True
                self._resp.release()
                if self._buf.strip():
                    raise BackendError("node stream cut mid-line", retryable=False)
                raise StopAsyncIteration
            buf = self._buf + data
            end = buf.rfind(b"\n")
            if end < 0:
                self._buf = buf
                continue
            self._buf = buf[end + 1 :]
            batch: list[Chunk] = []
            for line in buf[:end].split(b"\n"):
                if not line.strip():
                    continue
                chunk = json.loads(line)
                if "herd_error" in chunk:
                    self.close()
                    raise error_from_payload(chunk, default_retryable=not batch)
                batch.append(chunk)
            if batch:
                return batch

    def close(self) -> None:
        resp, self._resp = self._resp, None
        if resp is not None and not self._ended:
            resp.close()  # drops the connection: the node sees the client go
        self._ended = True
