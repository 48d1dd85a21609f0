"""Bounded label values: every label of herd's metrics takes a bounded set of values.

Prometheus keeps one time series per distinct label set, so a label fed by what clients
send (a model name typed into a request) could grow without end. :class:`LabelCap`
admits a value only when ``admit`` says it belongs (a model some node has, a node of the
fleet) and only up to ``limit`` distinct values, first come first kept; anything else
is :data:`OTHER`. A missing value (no node: rejected before routing) is :data:`NONE`.
Admitted values stay admitted, so a series never changes its name once it exists.
"""

from __future__ import annotations

from collections.abc import Callable

OTHER = "other"
NONE = "none"
MAX_VALUE_CHARS = 200

MAX_MODEL_LABELS = 64  # distinct model names (requested, served, loaded) across families
MAX_NODE_LABELS = 256  # distinct node ids
MAX_SMALL_LABELS = 16  # dialects, kinds, context-protection actions


def _anything(_: str) -> bool:
    return True


class LabelCap:
    """The values one label may take (see the module's docstring)."""

    __slots__ = ("_admit", "_values", "limit", "refused")

    def __init__(self, limit: int, admit: Callable[[str], bool] = _anything) -> None:
        self.limit = limit
        self._admit = admit
        self._values: set[str] = set()
        self.refused = 0  # values mapped to OTHER (a dashboard can watch it)

    def __call__(self, value: str | None) -> str:
        if not value:
            return NONE
        if value in self._values:
            return value
        if (
            len(self._values) >= self.limit
            or len(value) > MAX_VALUE_CHARS
            or value in (OTHER, NONE)
            or not self._admit(value)
        ):
            self.refused += 1
            return OTHER
        self._values.add(value)
        return value

    def __len__(self) -> int:
        return len(self._values)
