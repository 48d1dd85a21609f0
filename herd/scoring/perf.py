"""The router's performance learner: what each model does on each node.

:class:`PerfBook` is mutable and lives in the RouterActor. It learns, per (node,
model), from finished requests and heartbeats:

* p75 end-to-end latency over the last ``window`` successful requests;
* cold-load time (Ollama's ``load_duration`` when the request loaded the model),
  prompt tokens/s (``prompt_eval_count / prompt_eval_duration``) and generation
  tokens/s (``eval_count / eval_duration``): medians of the last ``rate_window``;
* mean service time (prompt eval + generation) and mean answer length;
* the model's size in memory while loaded, and when it was last unloaded ("warm").

:meth:`PerfBook.freeze` returns a frozen :class:`~herd.domain.PerfStats` for
scoring (and for ingress replicas). It is cached until the next change, and a change
only rebuilds the entries it touched, so freezing after every outcome stays cheap.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from herd.domain import (
    FleetModelPerf,
    ModelPerf,
    NodeHeartbeat,
    NodePerf,
    Outcome,
    PerfStats,
    canonical_model,
)

NS = 1e-9
MIN_PROMPT_TOKENS = 8  # fewer (a cached prompt) says nothing about prompt speed
MIN_EVAL_TOKENS = 4


def quantile(values: Iterable[float], q: float) -> float | None:
    """Linear-interpolated quantile (``q`` in [0, 1]); ``None`` for no values."""
    data = sorted(values)
    if not data:
        return None
    pos = q * (len(data) - 1)
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def metrics_from_final_chunk(chunk: Mapping[str, Any]) -> dict[str, Any]:
    """Outcome fields from Ollama's final chunk (durations in ns, absent ones left out):
    ``load_s``, ``prompt_eval_s``, ``eval_s``, ``prompt_tokens``, ``completion_tokens``."""
    out: dict[str, Any] = {}
    for src, dst in (
        ("load_duration", "load_s"),
        ("prompt_eval_duration", "prompt_eval_s"),
        ("eval_duration", "eval_s"),
    ):
        value = chunk.get(src)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            out[dst] = value * NS
    for src, dst in (("prompt_eval_count", "prompt_tokens"), ("eval_count", "completion_tokens")):
        value = chunk.get(src)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[dst] = value
    return out


@dataclass(slots=True)
class _Pair:
    """Raw observations for one (node, model)."""

    latency: deque[float]
    service: deque[float]
    completion: deque[float]
    load: deque[float]
    prompt_tps: deque[float]
    gen_tps: deque[float]
    samples: int = 0
    resident: int = 0
    unloaded_at: float | None = None

    def freeze(self) -> ModelPerf:
        return ModelPerf(
            samples=self.samples,
            p75_s=quantile(self.latency, 0.75),
            service_s=statistics.fmean(self.service) if self.service else None,
            load_s=statistics.median(self.load) if self.load else None,
            prompt_tps=statistics.median(self.prompt_tps) if self.prompt_tps else None,
            gen_tps=statistics.median(self.gen_tps) if self.gen_tps else None,
            completion_tokens=statistics.fmean(self.completion) if self.completion else None,
            resident_bytes=self.resident,
            unloaded_at=self.unloaded_at,
        )


@dataclass(slots=True)
class PerfBook:
    window: int = 64  # latency / service / answer-length samples kept per (node, model)
    rate_window: int = 16  # load and token-rate samples kept per (node, model)
    cold_load_s: float = 0.1  # a load_duration this long means the request loaded the model
    _pairs: dict[tuple[str, str], _Pair] = field(default_factory=dict)
    _sizes: dict[tuple[str, str], int] = field(default_factory=dict)  # file sizes
    _loaded: dict[str, frozenset[str]] = field(default_factory=dict)  # per node
    # model -> node -> frozen perf; an inner dict is replaced, never changed, once published
    _frozen: dict[str, dict[str, ModelPerf]] = field(default_factory=dict)
    _nodes: dict[str, NodePerf] = field(default_factory=dict)
    _fleet: dict[str, FleetModelPerf] = field(default_factory=dict)
    _keys_of: dict[str, set[str]] = field(default_factory=dict)  # node -> models with a pair
    _nodes_of: dict[str, set[str]] = field(default_factory=dict)  # model -> nodes with a pair
    _dirty: set[tuple[str, str]] = field(default_factory=set)
    _stats: PerfStats | None = None
    version: int = 0

    # --- inputs ------------------------------------------------------------------------
    def observe_heartbeat(self, hb: NodeHeartbeat, now: float) -> None:
        """File sizes, sizes in memory, and models that left memory since the last one."""
        node = hb.node_id
        for key, disk in hb.models_by_key.items():
            if disk.size > 0 and self._sizes.get((node, key)) != disk.size:
                self._sizes[(node, key)] = disk.size
                self._touch(node, key)
        loaded = frozenset(hb.loaded_by_key)
        for key in self._loaded.get(node, frozenset()) - loaded:
            self._pair(node, key).unloaded_at = now
            self._touch(node, key)
        for key, entry in hb.loaded_by_key.items():
            pair = self._pairs.get((node, key))
            if entry.size > 0 and (pair is None or pair.resident != entry.size):
                self._pair(node, key).resident = entry.size
                self._touch(node, key)
            if pair is not None and pair.unloaded_at is not None:
                pair.unloaded_at = None
                self._touch(node, key)
        self._loaded[node] = loaded

    def observe(
        self,
        node_id: str,
        model: str,
        *,
        latency_s: float | None = None,
        load_s: float | None = None,
        prompt_tokens: int = 0,
        prompt_eval_s: float | None = None,
        completion_tokens: int = 0,
        eval_s: float | None = None,
        cold: bool | None = None,
    ) -> None:
        """One successful request. ``cold``: did it load the model (``None``: guess from
        ``load_s >= cold_load_s``)? Durations in seconds, token counts from Ollama."""
        key = canonical_model(model)
        pair = self._pair(node_id, key)
        pair.samples += 1
        if latency_s is not None and latency_s >= 0:
            pair.latency.append(latency_s)
        if load_s is not None:
            is_cold = load_s >= self.cold_load_s if cold is None else cold
            if is_cold and load_s > 0:
                pair.load.append(load_s)
        if prompt_eval_s and prompt_eval_s > 0 and prompt_tokens >= MIN_PROMPT_TOKENS:
            pair.prompt_tps.append(prompt_tokens / prompt_eval_s)
        if eval_s and eval_s > 0 and completion_tokens >= MIN_EVAL_TOKENS:
            pair.gen_tps.append(completion_tokens / eval_s)
        if prompt_eval_s is not None or eval_s is not None:
            pair.service.append((prompt_eval_s or 0.0) + (eval_s or 0.0))
        if eval_s is not None or completion_tokens:
            pair.completion.append(float(completion_tokens))
        self._touch(node_id, key)

    def observe_outcome(self, outcome: Outcome, cold: bool | None = None) -> None:
        """A finished attempt as the dispatcher reports it; failures teach nothing here."""
        if not outcome.ok or outcome.node_id is None:
            return
        self.observe(
            outcome.node_id,
            outcome.model,
            latency_s=outcome.total_s,
            load_s=outcome.load_s,
            prompt_tokens=outcome.prompt_tokens,
            prompt_eval_s=outcome.prompt_eval_s,
            completion_tokens=outcome.completion_tokens,
            eval_s=outcome.eval_s,
            cold=cold,
        )

    def forget_requests(self) -> int:
        """Drop what requests taught (latencies, load times, token rates, answer lengths)
        and keep what heartbeats tell (sizes, residency, when a model left memory): an
        operator reset after fixing a device, tests between cases. Returns how many
        (node, model) pairs had learned something."""
        learned = 0
        for (node, key), pair in self._pairs.items():
            if pair.samples == 0:
                continue
            learned += 1
            pair.samples = 0
            for samples in (
                pair.latency, pair.service, pair.completion,
                pair.load, pair.prompt_tps, pair.gen_tps,
            ):  # fmt: skip
                samples.clear()
            self._touch(node, key)
        return learned

    def forget_node(self, node_id: str) -> None:
        """A node left the fleet for good: drop what was learned about it."""
        for table in (self._pairs, self._sizes):
            for pair_key in [k for k in table if k[0] == node_id]:
                del table[pair_key]
                self._dirty.add(pair_key)
        for key in self._keys_of.pop(node_id, set()):
            self._nodes_of[key].discard(node_id)
            self._dirty.add((node_id, key))
        self._loaded.pop(node_id, None)
        self._nodes.pop(node_id, None)
        self._stats = None
        self.version += 1

    # --- output ------------------------------------------------------------------------
    def freeze(self) -> PerfStats:
        """Frozen stats for scoring; the same object until something changes."""
        if self._stats is not None:
            return self._stats
        nodes = {n for n, _ in self._dirty}
        touched: dict[str, list[str]] = {}
        for node, key in self._dirty:
            touched.setdefault(key, []).append(node)
        self._dirty.clear()
        for key, changed in touched.items():
            inner = dict(self._frozen.get(key, {}))
            for node in changed:
                pair = self._pairs.get((node, key))
                if pair is None:
                    inner.pop(node, None)
                else:
                    inner[node] = pair.freeze()
            if inner:
                self._frozen[key] = inner
            else:
                self._frozen.pop(key, None)
        models = set(touched)
        for node in nodes:
            self._refresh_node(node)
        for key in models:
            self._refresh_model(key)
        self._stats = PerfStats(
            dict(self._frozen), dict(self._nodes), dict(self._fleet), self.version
        )
        return self._stats

    # --- internals ---------------------------------------------------------------------
    def _pair(self, node: str, key: str) -> _Pair:
        pair = self._pairs.get((node, key))
        if pair is None:
            w, r = self.window, self.rate_window
            pair = _Pair(
                deque(maxlen=w), deque(maxlen=w), deque(maxlen=w),
                deque(maxlen=r), deque(maxlen=r), deque(maxlen=r),
            )  # fmt: skip
            self._pairs[(node, key)] = pair
            self._keys_of.setdefault(node, set()).add(key)
            self._nodes_of.setdefault(key, set()).add(node)
        return pair

    def _touch(self, node: str, key: str) -> None:
        self._dirty.add((node, key))
        self._stats = None
        self.version += 1

    def _size(self, node: str, key: str) -> int:
        size = self._sizes.get((node, key), 0)
        if size <= 0:
            pair = self._pairs.get((node, key))
            size = pair.resident if pair is not None else 0
        return size

    def _refresh_node(self, node: str) -> None:
        loads: list[float] = []
        gens: list[float] = []
        prompts: list[float] = []
        for key in self._keys_of.get(node, ()):
            perf = self._frozen.get(key, {}).get(node)
            if perf is None:
                continue
            size = self._size(node, key)
            if size <= 0:
                continue
            if perf.load_s:
                loads.append(size / perf.load_s)
            if perf.gen_tps:
                gens.append(perf.gen_tps * size)
            if perf.prompt_tps:
                prompts.append(perf.prompt_tps * size)
        if not (loads or gens or prompts):
            self._nodes.pop(node, None)
            return
        self._nodes[node] = NodePerf(
            load_bytes_per_s=statistics.median(loads) if loads else 0.0,
            gen_bytes_per_s=statistics.median(gens) if gens else 0.0,
            prompt_bytes_per_s=statistics.median(prompts) if prompts else 0.0,
        )

    def _refresh_model(self, key: str) -> None:
        p75s: list[float] = []
        residents: list[int] = []
        answered = 0.0  # answer tokens over every node's window, and how many answers
        answers = 0
        learned = self._frozen.get(key, {})
        for n in self._nodes_of.get(key, ()):
            perf = learned.get(n)
            if perf is None:
                continue
            if perf.p75_s is not None:
                p75s.append(perf.p75_s)
            if perf.resident_bytes > 0:
                residents.append(perf.resident_bytes)
            pair = self._pairs.get((n, key))
            if pair is not None and perf.completion_tokens is not None:
                answered += perf.completion_tokens * len(pair.completion)
                answers += len(pair.completion)
        if not (p75s or residents or answers):
            self._fleet.pop(key, None)
            return
        self._fleet[key] = FleetModelPerf(
            best_p75_s=min(p75s) if p75s else None,
            completion_tokens=answered / answers if answers else None,
            resident_bytes=min(residents) if residents else 0,
        )
