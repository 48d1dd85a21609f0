"""A device's agent, without Ray: picks the local backend, reports metrics, runs requests.

The NodeActor wraps one ``NodeAgent``. Backend detection: the local Ollama at
``FLEET_NODE_OLLAMA_HOST`` when it answers; otherwise (``FLEET_NODE_LLAMACPP`` auto/on)
the packaged llama.cpp server with gemma3 270M, started and supervised here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncGenerator
from typing import Any

from herd import __version__
from herd.backends.base import Backend, BackendState
from herd.backends.ollama import OllamaBackend
from herd.convert.ollama_response import OllamaAggregator
from herd.errors import BackendTimeout, NodeUnavailable
from herd.models import InferenceRequest, NodeHeartbeat
from herd.settings import Settings
from herd.sysmetrics import collect_system_metrics

log = logging.getLogger("herd.node")

_DONE = object()


class NodeAgent:
    def __init__(
        self,
        settings: Settings,
        node_id: str | None = None,
        ray_node_id: str | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.settings = settings
        self.node_id = node_id or settings.node.name or socket.gethostname()
        self.ray_node_id = ray_node_id
        self.backend: Backend | None = backend
        self.supervisor: Any = None  # LlamaCppSupervisor when this node runs llama.cpp
        self.state: BackendState | None = None
        self.draining = False
        self.data_url = ""  # set by the NodeActor when its HTTP data plane runs
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> BackendState:
        if self.backend is None:
            self.backend = await self._detect_backend()
        self.state = await self.backend.probe()
        return self.state

    async def _detect_backend(self) -> Backend:
        node = self.settings.node
        ollama = OllamaBackend(
            node.ollama_host,
            connect_timeout=node.connect_timeout,
            request_timeout=node.request_timeout,
            probe_timeout=node.probe_timeout,
        )
        if node.llamacpp == "on":
            await ollama.close()
            return await self._start_llamacpp()
        state = await ollama.probe()
        if state.ok or node.llamacpp == "off":
            return ollama
        await ollama.close()
        log.info("no Ollama at %s (%s); starting llama.cpp", node.ollama_host, state.error)
        return await self._start_llamacpp()

    async def _start_llamacpp(self) -> Backend:
        from herd.backends.llamacpp_server import LlamaCppSupervisor
        from herd.backends.openai_compat import OpenAICompatBackend

        node = self.settings.node
        if node.llamacpp_model_path is not None:
            alias = node.llamacpp_model_path.stem
            self.supervisor = LlamaCppSupervisor(
                node.llamacpp_model_path, alias, port=node.llamacpp_port, parallel=node.num_parallel
            )
        else:
            self.supervisor = LlamaCppSupervisor.for_gemma(
                self.settings.data_dir / "models",
                port=node.llamacpp_port,
                parallel=node.num_parallel,
            )
        await self.supervisor.start()
        return OpenAICompatBackend(
            self.supervisor.url,
            kind="llamacpp",
            connect_timeout=node.connect_timeout,
            request_timeout=node.request_timeout,
            probe_timeout=node.probe_timeout,
        )

    async def stop(self) -> None:
        if self.backend is not None:
            await self.backend.close()
        if self.supervisor is not None:
            await self.supervisor.stop()

    async def drain(self, timeout: float) -> bool:
        """Take no new work; wait up to ``timeout`` for in-flight requests to finish."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- metrics ---------------------------------------------------------------------
    async def heartbeat(self) -> NodeHeartbeat:
        backend = self._require_backend()
        if self.supervisor is not None:
            await self.supervisor.ensure_running()
        state = await backend.probe()
        self.state = state
        metrics = collect_system_metrics()
        return NodeHeartbeat(
            node_id=self.node_id,
            hostname=socket.gethostname(),
            ray_node_id=self.ray_node_id,
            backend=backend.kind,
            backend_url=backend.url,
            backend_ok=state.ok,
            backend_version=state.version,
            herd_version=__version__,
            cpu_percent=metrics.cpu_percent,
            cpu_count=metrics.cpu_count,
            memory_total=metrics.memory_total,
            memory_available=metrics.memory_available,
            memory_pressure=metrics.memory_pressure,
            models=state.models,
            loaded=state.loaded,
            num_parallel=self.settings.node.num_parallel,
            draining=self.draining,
            sent_at=time.time(),
            data_url=self.data_url,
        )

    # --- requests --------------------------------------------------------------------
    def _require_backend(self) -> Backend:
        if self.backend is None:
            raise NodeUnavailable(f"node {self.node_id} has no backend yet")
        return self.backend

    def _body(self, req: InferenceRequest, model: str) -> dict[str, Any]:
        body = dict(req.body)
        body["model"] = model
        if req.kind in ("chat", "generate", "embed") and "keep_alive" not in body:
            body["keep_alive"] = self.settings.keep_alive
        return body

    def _enter(self) -> None:
        if self.draining:
            raise NodeUnavailable(f"node {self.node_id} is draining")
        self.in_flight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def complete(self, req: InferenceRequest, model: str) -> dict[str, Any]:
        """One whole response. Chat and generate are streamed from the backend and folded
        here, so a backend that hangs is caught by the first-chunk timeout like a stream."""
        backend = self._require_backend()
        if req.kind not in ("chat", "generate"):
            self._enter()
            try:
                async with asyncio.timeout(self.settings.first_chunk_timeout):
                    return await backend.complete(req.kind, self._body(req, model))
            except TimeoutError:
                raise BackendTimeout(f"{self.node_id}: no answer in time") from None
            finally:
                self._leave()
        folded = OllamaAggregator(req.kind)
        async for batch in self.stream(req, model):
            for chunk in batch:
                folded.feed(chunk)
        return folded.result()

    async def stream(
        self, req: InferenceRequest, model: str
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Yield lists of Ollama chunks: whatever is already buffered goes out together,
        but nothing ever waits to fill a batch."""
        backend = self._require_backend()
        self._enter()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            chunks = aiter(backend.stream(req.kind, self._body(req, model)))
            timeout = self.settings.first_chunk_timeout
            started = False
            try:
                while True:
                    try:
                        async with asyncio.timeout(timeout):
                            chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    queue.put_nowait(chunk)
                    started = True
                    timeout = self.settings.chunk_timeout
                queue.put_nowait(_DONE)
            except TimeoutError:
                queue.put_nowait(
                    BackendTimeout(f"{self.node_id}: backend stalled", retryable=not started)
                )
            except Exception as exc:  # handed to the consumer, re-raised there
                queue.put_nowait(exc)
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]

        task = asyncio.create_task(pump())
        try:
            while True:
                item = await queue.get()
                batch: list[dict[str, Any]] = []
                while True:
                    if item is _DONE:
                        if batch:
                            yield batch
                        return
                    if isinstance(item, BaseException):
                        if batch:
                            yield batch
                        raise item
                    batch.append(item)
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                yield batch
        finally:
            task.cancel()
            self._leave()
