"""The pieces the device model is made of: disk entries, runners, leases, counters."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from herd.sim.profile import SimModel


@dataclass(slots=True)
class DiskEntry:
    model: SimModel
    digest: str
    modified_at: float


@dataclass(slots=True)
class Counters:
    requests: int = 0
    served: int = 0
    errors: int = 0
    cold_loads: int = 0
    reloads: int = 0
    evictions: int = 0
    unloads: int = 0
    busy_rejections: int = 0
    client_gone: int = 0
    prompt_tokens: int = 0
    eval_tokens: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)


class Runner:
    """One loaded model (an Ollama runner process)."""

    def __init__(
        self, entry: DiskEntry, num_ctx: int, key: tuple[Any, ...], size: int, parallel: int
    ) -> None:
        self.entry = entry
        self.num_ctx = num_ctx
        self.load_key = key
        self.size = size
        self.num_parallel = parallel
        self.slots = asyncio.Semaphore(parallel)
        self.busy = 0
        self.active = 0
        self.keep_alive: float | None = 300.0
        self.expires_at = 0.0
        self.expire_handle: asyncio.TimerHandle | None = None
        self.last_used = time.monotonic()
        self.loaded_at = time.time()
        self.draining = False
        self.served = 0
        self._prompts: deque[tuple[str, ...]] = deque(maxlen=min(parallel, 8))

    @property
    def model(self) -> SimModel:
        return self.entry.model

    def cached_prefix(self, tokens: Sequence[str]) -> int:
        """Prompt tokens already in a slot's KV cache (at least one is always evaluated)."""
        new = tuple(tokens)
        best = 0
        for old in self._prompts:
            best = max(best, _common_prefix(old, new))
        return min(best, max(0, len(new) - 1))

    def remember(self, tokens: Sequence[str]) -> None:
        new = tuple(tokens)
        if new not in self._prompts:
            self._prompts.append(new)


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Length of the common prefix, by binary search over C-speed slice comparisons."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(slots=True)
class Lease:
    """A request's hold on a runner (and a slot, unless it only loads)."""

    runner: Runner
    load_ns: int
    cold: bool
    start_ns: int
