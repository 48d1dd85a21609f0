"""How big a model is, for VRAM fallback and context upgrades choosing the stand-in of
the same group (:func:`herd.taxonomy.group_of`) whose size is nearest.

Parameters from ``parameter_size`` ("70.6B", "137M"), else from the tag
("llama3.3:70b", "qwen3:1.7b", "smollm2:135m", "mixtral:8x7b").
"""

from __future__ import annotations

import math
import re

_UNITS = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_PARAMS = re.compile(r"(?:(\d+)x)?(\d+(?:\.\d+)?)([kmbt])(?![a-z])")


def parameter_count(name: str, parameter_size: str = "") -> float | None:
    """Parameters (not bytes) from ``parameter_size``, else from the tag; ``None`` if neither."""
    for text in (parameter_size, name.strip().lower().rsplit(":", 1)[-1] if ":" in name else ""):
        match = _PARAMS.search(text.strip().lower())
        if match:
            experts = int(match.group(1)) if match.group(1) else 1
            return experts * float(match.group(2)) * _UNITS[match.group(3)]
    return None


def size_distance(a: float | None, b: float | None) -> float:
    """How far apart two sizes are on a log scale (``inf`` when either is unknown)."""
    if not a or not b or a <= 0 or b <= 0:
        return math.inf
    return abs(math.log(a / b))
