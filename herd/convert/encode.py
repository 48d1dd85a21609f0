"""Compact JSON encoding for the token path.

One module-level encoder (``json.dumps`` with keyword arguments builds a new encoder on
every call, about twice the cost). Output is UTF-8 without ASCII escaping; it never
contains a raw newline, so it is safe for NDJSON lines and SSE ``data:`` fields.
"""

from __future__ import annotations

import json
from typing import Any

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def dumps(obj: Any) -> bytes:
    """``obj`` as compact UTF-8 JSON bytes (lone surrogates become ``?``)."""
    return _encode(obj).encode("utf-8", "replace")


def dumps_str(obj: Any) -> str:
    """``obj`` as a compact JSON string."""
    return _encode(obj)
