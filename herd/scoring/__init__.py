"""The routing pipeline as pure functions over frozen fleet snapshots.

eliminate -> score -> rank -> select (:mod:`.pipeline`, the seed's policy), the other
policies (:mod:`.policies`), learned performance (:mod:`.perf`), context protection
(:mod:`.context`) and the VRAM-aware fallback (:mod:`.vram_fallback`).
"""

from herd.scoring.pipeline import Ranking, rank
from herd.scoring.policies import POLICIES, POLICY_NAMES, Policy, policy_named
from herd.scoring.query import RouteQuery
from herd.scoring.weights import ScoringWeights

__all__ = [
    "POLICIES",
    "POLICY_NAMES",
    "Policy",
    "Ranking",
    "RouteQuery",
    "ScoringWeights",
    "policy_named",
    "rank",
]
