"""The device model: memory budget, loaded runners, LRU eviction, slots, queue, keep-alive.

Follows section 8 of the Ollama reference (``sched.go``):

* A request for a loaded model whose load-time options match takes the fast path:
  it skips the pending queue and waits only for one of the runner's
  ``num_parallel`` slots.
* Any other request enters the pending queue (``max_queue``; full -> immediate 503
  with the "server busy" message). The queue is served one request at a time: a
  reload (changed ``num_ctx``...) waits for the old runner's in-flight requests,
  then unloads it; a load first evicts idle runners, least recently used first,
  while the model count or the memory budget requires it (waiting for in-flight
  requests if nothing is idle), then sleeps ``size / load_bytes_per_s``.
* ``load_duration`` runs from the request's arrival until a runner is ready, so it
  includes the pending-queue wait and the load; it is tiny when the model is warm.
* Keep-alive starts when a runner's last request ends: ``0`` unloads it then,
  ``None`` (negative) keeps it forever, otherwise it unloads after that many seconds.
  A request that sets ``keep_alive`` replaces the runner's value.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from herd.domain import canonical_model
from herd.sim.faults import FaultInjector
from herd.sim.profile import GIB, SimModel, SimProfile
from herd.sim.protocol import (
    BUSY_MESSAGE,
    FOREVER_S,
    UNSET,
    KeepAliveArg,
    OllamaError,
    created_at,
    load_key,
    not_found,
    resolve_num_ctx,
)
from herd.sim.runner import Counters, DiskEntry, Lease, Runner


def human_bytes(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


class Device:
    """One emulated Ollama server's scheduler and memory."""

    def __init__(self, profile: SimProfile) -> None:
        self.profile = profile
        self.faults = FaultInjector(profile.faults)
        self.counters = Counters()
        self.runners: dict[str, Runner] = {}
        self.disk: dict[str, DiskEntry] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=100)
        self.started_at = time.time()
        self._lock = asyncio.Lock()
        self._released = asyncio.Event()
        self._pending = 0
        self._in_flight = 0
        for model in profile.models:
            self.add_to_disk(model, modified_at=self._default_mtime(model))

    # --- disk ----------------------------------------------------------------------

    def _default_mtime(self, model: SimModel) -> float:
        return self.started_at - 3600.0 - zlib.crc32(model.key.encode()) % (30 * 86400)

    def add_to_disk(self, model: SimModel, modified_at: float | None = None) -> DiskEntry:
        digest = model.digest or hashlib.sha256(model.key.encode()).hexdigest()
        entry = DiskEntry(model, digest, time.time() if modified_at is None else modified_at)
        self.disk[model.key] = entry
        return entry

    def find(self, name: str) -> DiskEntry | None:
        return self.disk.get(canonical_model(name))

    def lookup(self, name: str) -> DiskEntry:
        entry = self.find(name)
        if entry is None:
            raise not_found(name)
        return entry

    @property
    def disk_used(self) -> int:
        return sum(e.model.size for e in self.disk.values())

    @property
    def disk_free(self) -> int:
        return max(0, self.profile.disk_bytes - self.disk_used)

    def delete(self, name: str) -> bool:
        entry = self.disk.pop(canonical_model(name), None)
        if entry is None:
            return False
        self.expire(entry)
        return True

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Load the profile's ``preload`` models at once, kept alive forever."""
        for name in self.profile.preload:
            entry = self.lookup(name)
            async with self.session(entry, {}, None, need_slot=False, instant=True):
                pass

    async def close(self) -> None:
        self.faults.release_hangs()
        for runner in list(self.runners.values()):
            if runner.expire_handle is not None:
                runner.expire_handle.cancel()

    def update_profile(self, changes: Mapping[str, Any]) -> SimProfile:
        self.profile = SimProfile.model_validate({**self.profile.model_dump(), **changes})
        return self.profile

    def count_request(self, endpoint: str) -> None:
        counters = self.counters
        counters.requests += 1
        counters.by_endpoint[endpoint] = counters.by_endpoint.get(endpoint, 0) + 1

    # --- speeds --------------------------------------------------------------------

    def load_delay(self, model: SimModel, slow: float = 1.0) -> float:
        p = self.profile
        if p.no_delays or p.load_bytes_per_s <= 0:
            return 0.0
        return model.size / p.load_bytes_per_s * slow

    def prompt_delay(self, model: SimModel, tokens: int, slow: float = 1.0) -> float:
        p = self.profile
        rate = model.prompt_tokens_per_s or p.prompt_tokens_per_s
        if p.no_delays or rate <= 0 or tokens <= 0:
            return 0.0
        return tokens / rate * slow

    def token_interval(self, model: SimModel, slow: float = 1.0) -> float:
        p = self.profile
        rate = model.tokens_per_s or p.tokens_per_s
        if p.no_delays or rate <= 0:
            return 0.0
        return slow / rate

    # --- scheduling ----------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def memory_used(self) -> int:
        return sum(r.size for r in self.runners.values())

    def footprint(self, model: SimModel, num_ctx: int) -> int:
        return model.size + model.kv_bytes_per_token * num_ctx * self.profile.num_parallel

    @asynccontextmanager
    async def session(
        self,
        entry: DiskEntry,
        options: Mapping[str, Any],
        keep_alive: KeepAliveArg = UNSET,
        *,
        slow: float = 1.0,
        need_slot: bool = True,
        instant: bool = False,
    ) -> AsyncIterator[Lease]:
        """Hold a runner for ``entry`` (loading it if needed) and, by default, a slot."""
        start = time.perf_counter_ns()
        self._in_flight += 1
        try:
            runner, cold = await self._acquire(entry, options, slow, instant)
            try:
                if keep_alive is not UNSET:
                    runner.keep_alive = keep_alive
                lease = Lease(runner, time.perf_counter_ns() - start, cold, start)
                if not need_slot:
                    yield lease
                    return
                await runner.slots.acquire()
                runner.busy += 1
                try:
                    yield lease
                finally:
                    runner.busy -= 1
                    runner.slots.release()
            finally:
                self._release(runner)
        finally:
            self._in_flight -= 1

    async def _acquire(
        self, entry: DiskEntry, options: Mapping[str, Any], slow: float, instant: bool
    ) -> tuple[Runner, bool]:
        model = entry.model
        num_ctx = resolve_num_ctx(options, self.profile.default_num_ctx, model.context_length)
        key = load_key(options, num_ctx)
        runner = self.runners.get(model.key)
        if runner is not None and not runner.draining and runner.load_key == key:
            self._claim(runner)
            return runner, False
        if self._pending >= self.profile.max_queue:
            self.counters.busy_rejections += 1
            raise OllamaError(503, BUSY_MESSAGE)
        self._pending += 1
        try:
            async with self._lock:
                runner, cold = await self._schedule(entry, num_ctx, key, slow, instant)
                self._claim(runner)
                return runner, cold
        finally:
            self._pending -= 1

    async def _schedule(
        self, entry: DiskEntry, num_ctx: int, key: tuple[Any, ...], slow: float, instant: bool
    ) -> tuple[Runner, bool]:
        model = entry.model
        while True:
            current = self.runners.get(model.key)
            if current is not None:
                if current.load_key == key:
                    current.draining = False
                    return current, False
                current.draining = True
                if current.active:
                    await self._wait_release()
                    continue
                self._unload(current, "reload")
                self.counters.reloads += 1
                continue
            size = self.footprint(model, num_ctx)
            budget = self.profile.memory_bytes
            if size > budget:
                raise OllamaError(
                    500,
                    f"model requires more system memory ({human_bytes(size)}) "
                    f"than is available ({human_bytes(budget)})",
                )
            if len(self.runners) >= self.profile.loaded_limit or self.memory_used + size > budget:
                idle = [r for r in self.runners.values() if r.active == 0]
                if idle:
                    victim = min(idle, key=lambda r: r.last_used)
                    self._unload(victim, "evict")
                    self.counters.evictions += 1
                else:
                    await self._wait_release()
                continue
            delay = 0.0 if instant else self.load_delay(model, slow)
            if delay > 0:
                await asyncio.sleep(delay)
            runner = Runner(entry, num_ctx, key, size, self.profile.num_parallel)
            runner.keep_alive = self.profile.keep_alive_s
            self.runners[model.key] = runner
            self.counters.cold_loads += 1
            self._event("load", model.name, num_ctx=num_ctx, seconds=round(delay, 3))
            return runner, True

    async def _wait_release(self) -> None:
        await self._released.wait()

    def _claim(self, runner: Runner) -> None:
        runner.active += 1
        if runner.expire_handle is not None:
            runner.expire_handle.cancel()
            runner.expire_handle = None

    def _release(self, runner: Runner) -> None:
        runner.active -= 1
        runner.last_used = time.monotonic()
        if runner.active == 0 and self.runners.get(runner.model.key) is runner:
            if runner.keep_alive == 0:
                if not runner.draining:
                    self._unload(runner, "expire")
            elif not runner.draining:
                self._arm_expiry(runner)
        self._released.set()
        self._released = asyncio.Event()

    def _arm_expiry(self, runner: Runner) -> None:
        ka = runner.keep_alive
        if ka is None:
            runner.expires_at = time.time() + FOREVER_S
            return
        runner.expires_at = time.time() + ka
        loop = asyncio.get_running_loop()
        runner.expire_handle = loop.call_later(ka, self._expire_runner, runner)

    def _expire_runner(self, runner: Runner) -> None:
        runner.expire_handle = None
        if runner.active == 0 and self.runners.get(runner.model.key) is runner:
            self._unload(runner, "expire")
            self._released.set()
            self._released = asyncio.Event()

    def _unload(self, runner: Runner, reason: str) -> None:
        if self.runners.get(runner.model.key) is runner:
            del self.runners[runner.model.key]
        if runner.expire_handle is not None:
            runner.expire_handle.cancel()
            runner.expire_handle = None
        self.counters.unloads += 1
        self._event("unload", runner.model.name, reason=reason)

    def expire(self, entry: DiskEntry) -> None:
        """``keep_alive: 0`` with an empty request: unload now, or when it goes idle."""
        runner = self.runners.get(entry.model.key)
        if runner is None:
            return
        runner.keep_alive = 0
        if runner.active == 0:
            self._unload(runner, "expire")
            self._released.set()
            self._released = asyncio.Event()

    def expires_at(self, runner: Runner) -> float:
        """Wall-clock expiry (an estimate while the runner is busy)."""
        if runner.active or runner.expires_at == 0.0:
            ka = runner.keep_alive
            return time.time() + (FOREVER_S if ka is None else ka)
        return runner.expires_at

    def _event(self, kind: str, model: str, **extra: Any) -> None:
        self.events.append({"at": created_at(), "event": kind, "model": model, **extra})

    # --- reporting -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The ``GET /_sim/state`` document."""
        p = self.profile
        loaded = [
            {
                "name": r.model.name,
                "size": r.size,
                "context_length": r.num_ctx,
                "active": r.active,
                "busy_slots": r.busy,
                "waiting": max(0, r.active - r.busy),
                "num_parallel": r.num_parallel,
                "keep_alive": r.keep_alive,
                "expires_in": None if r.active else round(self.expires_at(r) - time.time(), 3),
                "draining": r.draining,
                "served": r.served,
            }
            for r in self.runners.values()
        ]
        return {
            "node": p.name,
            "version": p.version,
            "memory_bytes": p.memory_bytes,
            "memory_used": self.memory_used,
            "num_parallel": p.num_parallel,
            "max_queue": p.max_queue,
            "max_loaded_models": p.loaded_limit,
            "instant": p.no_delays,
            "loaded": loaded,
            "disk": [e.model.name for e in self.disk.values()],
            "disk_bytes": p.disk_bytes,
            "disk_free": self.disk_free,
            "pending": self._pending,
            "in_flight": self._in_flight,
            "queue_depth": self._pending
            + sum(max(0, r.active - r.busy) for r in self.runners.values()),
            "counters": {**asdict(self.counters), "faults_injected": self.faults.injected},
            "faults": self.faults.list(),
            "events": list(self.events)[-20:],
        }
