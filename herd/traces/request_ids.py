"""Request ids: a client's ``X-Request-Id`` becomes the trace id, within bounds.

A client (or a proxy in front of herd) that sends ``X-Request-Id`` can find its request
in the traces under that id. An id is taken when it is 1-128 characters of
``[A-Za-z0-9._:@+=/-]`` (uuids, ULIDs, ``req_...``, hex, base64 all pass); anything else
(a space, a quote, a control character, a longer value) is not used and the request
gets an id of herd's own, as if none had been sent.

The trace store keeps one trace per id (that is what makes shipping traces
at-least-once safe), so a client that reuses an id (a retry with the same header, a
client that sends a constant) would lose the later traces. :class:`RequestIds`
remembers the ids it handed out (bounded, least recently used first out) and gives a
repeat the trace id ``<id>~<n>`` (``~`` is never in a taken id, so it cannot
collide with one a client sends): the response still echoes the client's value in
``X-Request-Id``, and ``X-Herd-Request-Id`` says the trace id to look for.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass

MAX_REQUEST_ID_CHARS = 128
_VALID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


def valid_request_id(value: str) -> bool:
    """Whether a client's request id may become a trace id."""
    return _VALID.fullmatch(value) is not None


def new_request_id() -> str:
    """herd's own id: 32 hex digits, like a uuid4's hex."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class AssignedId:
    echo: str  # what the response's X-Request-Id says (the client's value when valid)
    trace_id: str  # the trace's id (X-Herd-Request-Id)


class RequestIds:
    """Turns a request's ``X-Request-Id`` header (or its absence) into ids."""

    def __init__(self, remember: int = 65536) -> None:
        self._remember = max(1, remember)
        self._seen: OrderedDict[str, int] = OrderedDict()

    def assign(self, header: str | None) -> AssignedId:
        value = header.strip() if header else ""
        if not value or not valid_request_id(value):
            fresh = new_request_id()
            return AssignedId(fresh, fresh)
        count = self._seen.pop(value, 0) + 1
        self._seen[value] = count
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        if count == 1:
            return AssignedId(value, value)
        suffix = f"~{count}"
        return AssignedId(value, value[: MAX_REQUEST_ID_CHARS - len(suffix)] + suffix)
