"""Everything a routing decision reads from settings, frozen: the policy, signal weights,
and the priors the expected-latency policy uses until it has learned better."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    # Which policy ranks candidates (herd.scoring.policies): score | expected_latency |
    # round_robin | least_busy.
    policy: str = "expected_latency"  # the default since bench/fleet.py showed it wins
    # The seed's signals (points).
    thermal_hot: float = 50.0  # model loaded
    thermal_warm: float = 25.0  # unloaded within warm_window_s (decays linearly to 0)
    thermal_disk: float = 5.0  # on disk only
    warm_window_s: float = 600.0
    memory_fit: float = 20.0
    queue_penalty: float = 30.0  # cap of the queue-depth penalty
    queue_step: float = 10.0  # per request that would wait
    latency_penalty: float = 25.0
    role_affinity: float = 15.0
    availability: float = 10.0
    context_fit: float = 15.0
    # Role affinity: a model this small (bytes) or smaller is "small", this large "large".
    small_model_bytes: float = 2 * GIB
    large_model_bytes: float = 40 * GIB
    # Expected-latency priors, used until the PerfBook has learned the real values.
    default_load_bytes_per_s: float = 1.0e9
    default_gen_bytes_per_s: float = 1.5e11  # ~30 tokens/s for a 5 GB model
    default_prompt_bytes_per_s: float = 2.5e12  # ~500 tokens/s for a 5 GB model
    default_model_bytes: float = 4 * GIB  # a model whose size no node reported
    default_completion_tokens: float = 256.0
    # Each request of another model running on the node stretches our service time by
    # this fraction (shared GPU / memory bandwidth). 0 = models do not slow each other.
    contention: float = 0.0
    # Capacity learning (herd.capacity): a node at availability a runs our request
    # stretched by (1 / a) ^ owner_contention (herd gets what the owner leaves; 0: off) ...
    owner_contention: float = 1.0
    # ... and an owner likely back within the hour (availability_next) may reclaim it
    # mid-request: the rest then runs this much slower (1.0: twice as long).
    reclaim_slowdown: float = 1.0
