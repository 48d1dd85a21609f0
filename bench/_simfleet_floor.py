"""The service-time floor of a ``bench/fleet.py`` workload (simulated seconds).

A request's floor is its service time on the fastest device that holds its model, with
the model already loaded, nothing queued and nothing else running: prompt evaluation
(its tokens at that device's prompt rate) plus ``num_predict`` tokens at its generation
rate. No routing policy can beat it, so ``p95 / floor p95`` says how far routing is from
the limit (1.0 would be perfect), where the table's other columns say how far it is from
the other policies. The emulator's chat template adds a few tokens per prompt that this
count leaves out, so the floor is a slight under-estimate.
"""

from __future__ import annotations

from _load import percentile
from _simfleet_profiles import DEVICES
from _simfleet_workloads import SimRequest, Workload

from herd.sim.textgen import count_tokens


def request_floor(req: SimRequest) -> float:
    """Seconds ``req`` takes alone on the best device that holds its model."""
    prompt = count_tokens(req.prompt)
    best = float("inf")
    for device in DEVICES:
        if req.model not in device.models:
            continue
        rate = device.tokens_per_s(req.model)
        best = min(best, prompt / (rate * device.prefill) + req.num_predict / rate)
    return best


def workload_floor(workload: Workload) -> dict[str, float]:
    """p50 and p95 of the per-request floors."""
    floors = [request_floor(r) for r in workload.requests]
    return {"p50_s": percentile(floors, 50), "p95_s": percentile(floors, 95)}
