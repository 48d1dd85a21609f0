"""The routing pipeline: eliminate -> score -> rank -> select, as pure functions."""

from herd.scoring.pipeline import Ranking, ScoringWeights, rank

__all__ = ["Ranking", "ScoringWeights", "rank"]
