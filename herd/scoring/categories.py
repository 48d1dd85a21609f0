"""What kind of model a name is, and how big: the rule VRAM fallback and context
upgrades use to find a stand-in of "the same category".

Category rule, first match wins:

1. the node's own classification when it is not a plain LLM (``ModelOnDisk.category``:
   ``embedding``, ``image``, ``asr``);
2. ``embedding`` when the family is a BERT (``bert``, ``nomic-bert``, ...) or the name
   says ``embed`` / ``minilm``;
3. ``coder`` when the name says ``code`` (``qwen2.5-coder``, ``codellama``,
   ``starcoder2``, ``codestral``, ``deepseek-coder``, ``codegemma``);
4. ``vision`` when the name says ``llava``, ``vision``, ``-vl`` or ``moondream``;
5. else ``chat``.

Size: parameters from ``parameter_size`` ("70.6B", "137M"), else from the tag
("llama3.3:70b", "qwen3:1.7b", "smollm2:135m", "mixtral:8x7b").
"""

from __future__ import annotations

import math
import re

from herd.domain import ModelOnDisk

_UNITS = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_PARAMS = re.compile(r"(?:(\d+)x)?(\d+(?:\.\d+)?)([kmbt])(?![a-z])")
_VISION = ("llava", "vision", "-vl", "moondream")


def model_category(name: str, family: str = "", category: str = "llm") -> str:
    if category and category != "llm":
        return category
    base = name.strip().lower().rsplit("/", 1)[-1]
    fam = family.strip().lower()
    if fam.endswith("bert") or "embed" in base or "minilm" in base:
        return "embedding"
    if "code" in base.split(":", 1)[0]:
        return "coder"
    if any(tag in base for tag in _VISION):
        return "vision"
    return "chat"


def category_of(name: str, disk: ModelOnDisk | None) -> str:
    if disk is None:
        return model_category(name)
    return model_category(name, disk.family, disk.category)


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
