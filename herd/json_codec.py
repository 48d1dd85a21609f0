"""Compact JSON for the token path: orjson when it can, the standard library when not.

``dumps`` gives compact UTF-8 bytes without ASCII escaping; they never contain a raw
newline, so they are safe for NDJSON lines and SSE ``data:`` fields. orjson refuses a few
values the standard library takes (integers beyond 64 bits, lone surrogates, non-string
keys): those go through one module-level stdlib encoder (lone surrogates become ``?``).
``loads`` reads bytes or str; orjson first, the standard library for what it refuses
(``NaN`` literals), so both accept the same documents.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_fast_dumps = orjson.dumps
_fast_loads = orjson.loads
_Refused = orjson.JSONEncodeError
_Unreadable = orjson.JSONDecodeError


def dumps(obj: Any) -> bytes:
    """``obj`` as compact UTF-8 JSON bytes."""
    try:
        return _fast_dumps(obj)
    except _Refused:
        return _encode(obj).encode("utf-8", "replace")


def loads(data: bytes | str) -> Any:
    """A JSON document; ``ValueError`` when it is not one."""
    try:
        return _fast_loads(data)
    except _Unreadable:
        return json.loads(data)
