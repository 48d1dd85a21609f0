"""Expected completion time of one request on one node, from what the router learned.

    total = queue wait + model load + prefill + generation

* **queue wait**: requests of this model beyond the node's ``OLLAMA_NUM_PARALLEL``
  slots (ours included) wait; each slot finishes one request per service time, so
  ``waiting / num_parallel x service time`` (learned mean prompt-eval + generation
  time per request on this node and model, else this request's own estimate).
* **load**: 0 when the model is loaded. Else the learned median cold-load time on
  this node (Ollama's ``load_duration``), else model bytes / the node's learned load
  rate (else a default). A load already under way (requests in flight for a model
  the last heartbeat did not show loaded) costs half, on average.
* **prefill**: prompt tokens / prompt tokens per second.
* **generation**: answer tokens (``num_predict`` capped by the model's learned mean
  answer length, else either one, else a default; 0 for embeddings) / tokens per second.

Token rates come from this node and model when learned; else from the node's learned
"bytes x tokens/s" (decoding is memory-bandwidth bound, so tokens/s scales with
1 / model size) divided by the model's size; else from the defaults in the weights.
With ``contention`` > 0, every request of another model in flight on the node
stretches this one's service time by that fraction.

On a node that learns its owner's week (``herd.capacity``), herd gets what the owner
leaves: availability ``a`` now stretches the service time by ``(1 / a) ^
owner_contention`` (``a`` at least 0.1: ten times at most), and **reclaim** adds
the expected cost of the owner coming back mid-request: with the next hour's
availability ``n``, the owner returns at a rate of ``(1 - n)`` per hour, so a request
of ``T`` seconds is caught with probability ``p = 1 - exp(-T (1 - n) / 3600)`` and its
remaining half, on average, runs ``reclaim_slowdown`` slower: ``p x T / 2 x slowdown``.
That is nothing for a short request and a lot for a long one (``reclaim_s`` in the
breakdown, present only then).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from herd.domain import NodeView
from herd.scoring.fleet_context import ScoreContext, model_bytes
from herd.scoring.query import RouteQuery
from herd.scoring.weights import ScoringWeights

OWNER_FLOOR = 0.1  # an owner using everything still leaves this share (a 10x stretch)


@dataclass(frozen=True, slots=True)
class Estimate:
    queue_s: float
    load_s: float
    prefill_s: float
    generate_s: float
    reclaim_s: float = 0.0  # capacity learning: the owner may take the device back

    @property
    def total_s(self) -> float:
        return self.queue_s + self.load_s + self.prefill_s + self.generate_s + self.reclaim_s

    def breakdown(self) -> dict[str, float]:
        parts = {
            "queue_s": self.queue_s,
            "load_s": self.load_s,
            "prefill_s": self.prefill_s,
            "generate_s": self.generate_s,
        }
        if self.reclaim_s:
            parts["reclaim_s"] = self.reclaim_s
        return parts


def answer_tokens(query: RouteQuery, ctx: ScoreContext, w: ScoringWeights) -> float:
    """Tokens the answer is expected to have."""
    if not query.generates:
        return 0.0
    mean = ctx.completion_tokens
    if query.num_predict is not None:
        return float(query.num_predict) if mean is None else min(float(query.num_predict), mean)
    return mean if mean is not None else w.default_completion_tokens


def estimate(
    node: NodeView, query: RouteQuery, ctx: ScoreContext, now: float, w: ScoringWeights
) -> Estimate:
    hb = node.heartbeat
    key = query.key
    learned = ctx.learned.get(hb.node_id)
    rates = ctx.perf.nodes.get(hb.node_id)
    size = float(model_bytes(node, ctx) or w.default_model_bytes)

    if learned is not None and learned.prompt_tps:
        prompt_tps = learned.prompt_tps
    else:
        per_byte = rates.prompt_bytes_per_s if rates and rates.prompt_bytes_per_s > 0 else 0.0
        prompt_tps = (per_byte or w.default_prompt_bytes_per_s) / size
    if learned is not None and learned.gen_tps:
        gen_tps = learned.gen_tps
    else:
        per_byte = rates.gen_bytes_per_s if rates and rates.gen_bytes_per_s > 0 else 0.0
        gen_tps = (per_byte or w.default_gen_bytes_per_s) / size

    busy = node.in_flight_by_model.get(key, 0)
    stretch = 1.0 + w.contention * max(0, node.in_flight - busy)
    if hb.availability is not None:  # herd gets what the owner leaves (herd.capacity)
        stretch *= (1.0 / min(1.0, max(OWNER_FLOOR, hb.availability))) ** w.owner_contention
    prefill_s = query.prompt_tokens / prompt_tps * stretch
    generate_s = answer_tokens(query, ctx, w) / gen_tps * stretch

    if key in hb.loaded_by_key:
        load_s = 0.0
    else:
        if learned is not None and learned.load_s is not None:
            load_s = learned.load_s
        else:
            rate = rates.load_bytes_per_s if rates and rates.load_bytes_per_s > 0 else 0.0
            load_s = size / (rate or w.default_load_bytes_per_s)
        if busy > 0:
            load_s *= 0.5

    slots = max(1, hb.num_parallel)
    waiting = busy + 1 - slots
    if waiting > 0:
        if learned is not None and learned.service_s:
            service_s = learned.service_s * stretch
        else:
            service_s = prefill_s + generate_s
        queue_s = waiting / slots * service_s
    else:
        queue_s = 0.0
    reclaim_s = 0.0
    upcoming = hb.availability_next
    if upcoming is not None and upcoming < 1.0 and w.reclaim_slowdown > 0:
        took = queue_s + load_s + prefill_s + generate_s
        caught = 1.0 - math.exp(-took * (1.0 - max(0.0, upcoming)) / 3600.0)
        reclaim_s = caught * took * 0.5 * w.reclaim_slowdown
    return Estimate(queue_s, load_s, prefill_s, generate_s, reclaim_s)
