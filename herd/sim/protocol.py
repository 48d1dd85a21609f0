"""Ollama wire details: errors, timestamps, request validation, option types.

Everything here follows ``/work/shared/reference/ollama-api.md`` (and Ollama's Go
sources it summarises): Go-style JSON type errors (400), option type errors (500),
``keep_alive`` parsing, omitempty metrics.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from herd.sim.profile import keep_alive_seconds, parse_go_duration

BUSY_MESSAGE: Final = "server busy, please try again.  maximum pending requests exceeded"
FOREVER_S: Final = (2**63 - 1) / 1e9  # Go's max time.Duration, in seconds (~292 years)


class OllamaError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(name: str) -> OllamaError:
    return OllamaError(404, f"model '{name}' not found")


_second: list[Any] = [-1, ""]


def created_at() -> str:
    """RFC 3339 in UTC with a ``Z`` and sub-second digits (the seconds part is cached)."""
    now = time.time()
    sec = int(now)
    if sec != _second[0]:
        _second[0], _second[1] = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_second[1]}.{int((now - sec) * 1e6):06d}Z"


def local_time(epoch: float) -> str:
    """Local time with an offset, as in ``modified_at`` / ``expires_at``."""
    base = datetime.fromtimestamp(0, UTC).astimezone()
    return (base + timedelta(seconds=epoch)).isoformat()


def metrics(**values: int) -> dict[str, int]:
    """Ollama's omitempty: a zero metric is left out."""
    return {k: v for k, v in values.items() if v}


# --- request bodies -----------------------------------------------------------------

_GO_KIND = {
    str: "string",
    bool: "bool",
    list: "array",
    dict: "object",
    int: "number",
    float: "number",
}
_FIELD_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "model": ("string", (str,)),
    "name": ("string", (str,)),
    "prompt": ("string", (str,)),
    "suffix": ("string", (str,)),
    "system": ("string", (str,)),
    "template": ("string", (str,)),
    "stream": ("bool", (bool,)),
    "raw": ("bool", (bool,)),
    "truncate": ("bool", (bool,)),
    "shift": ("bool", (bool,)),
    "logprobs": ("bool", (bool,)),
    "verbose": ("bool", (bool,)),
    "insecure": ("bool", (bool,)),
    "top_logprobs": ("int", (int,)),
    "dimensions": ("int", (int,)),
    "messages": ("[]api.Message", (list,)),
    "tools": ("api.Tools", (list,)),
    "images": ("[]api.ImageData", (list,)),
    "context": ("[]int", (list,)),
    "options": ("map[string]interface {}", (dict,)),
}


def _go_kind(value: Any) -> str:
    return _GO_KIND.get(type(value), "value")


def check_fields(body: Mapping[str, Any], struct: str) -> None:
    """Reject wrongly typed known fields like Go's ``encoding/json`` does (400)."""
    for key, value in body.items():
        spec = _FIELD_TYPES.get(key)
        if spec is None or value is None:
            continue
        go_type, types = spec
        ok = isinstance(value, types) and not (types == (int,) and isinstance(value, bool))
        if types == (int,) and isinstance(value, float) and value.is_integer():
            ok = True
        if not ok:
            raise OllamaError(
                400,
                f"json: cannot unmarshal {_go_kind(value)} into Go struct field "
                f"{struct}.{key} of type {go_type}",
            )


_NAME_RE = re.compile(
    r"^(?:[A-Za-z0-9][\w.\-]*(?::\d+)?/)?(?:[\w][\w.\-]*/)?[\w][\w.\-]*(?::[\w][\w.\-]{0,127})?$"
)


def require_model(body: Mapping[str, Any], *, allow_name: bool = False) -> str:
    """The ``model`` field as sent (``name`` too for management endpoints)."""
    name = body.get("model")
    if not name and allow_name:
        name = body.get("name")
    if not name:
        raise OllamaError(400, "model is required")
    assert isinstance(name, str)
    if not _NAME_RE.match(name):
        raise OllamaError(400, "invalid model name")
    return name


def stream_flag(body: Mapping[str, Any]) -> bool:
    """``stream`` is tri-state: absent or null means true."""
    return body.get("stream") is not False


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET
KeepAliveArg = float | Literal[_Unset.UNSET] | None
"""A request's ``keep_alive``: seconds, ``None`` = forever, ``UNSET`` = not given."""


def request_keep_alive(body: Mapping[str, Any]) -> KeepAliveArg:
    """Seconds, ``None`` for forever, or ``UNSET`` when the request leaves it alone."""
    value = body.get("keep_alive")
    if value is None:
        return UNSET
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise OllamaError(400, "invalid duration")
    try:
        if isinstance(value, str):
            seconds = parse_go_duration(value)
            return None if seconds < 0 else seconds
        return keep_alive_seconds(value)
    except ValueError as exc:
        raise OllamaError(400, str(exc)) from None


THINK_LEVELS = ("high", "medium", "low", "max")


def think_value(body: Mapping[str, Any]) -> bool | str | None:
    value = body.get("think")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value in THINK_LEVELS:
        return value
    raise OllamaError(
        400, f'invalid think value: {value!r} (must be "high", "medium", "low", true, or false)'
    )


# --- options ------------------------------------------------------------------------

_INTS = (
    "num_ctx num_predict top_k seed repeat_last_n num_keep num_batch num_gpu main_gpu "
    "num_thread draft_num_predict"
)
_FLOATS = "temperature top_p min_p typical_p repeat_penalty presence_penalty frequency_penalty"
INT_OPTIONS = frozenset(_INTS.split())
FLOAT_OPTIONS = frozenset(_FLOATS.split())
BOOL_OPTIONS = frozenset({"use_mmap", "numa"})
LOAD_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")


def validate_options(raw: Any) -> dict[str, Any]:
    """Type-check ``options`` like Ollama's ``Options.FromMap`` (500 on a wrong type)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise OllamaError(400, f"json: cannot unmarshal {_go_kind(raw)} into options")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        is_num = isinstance(value, int | float) and not isinstance(value, bool)
        if key in INT_OPTIONS:
            if not is_num:
                raise OllamaError(500, f'option "{key}" must be of type integer')
            out[key] = int(value)
        elif key in FLOAT_OPTIONS:
            if not is_num:
                raise OllamaError(500, f'option "{key}" must be of type float32')
            out[key] = float(value)
        elif key in BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise OllamaError(500, f'option "{key}" must be of type boolean')
            out[key] = value
        elif key == "stop":
            if not isinstance(value, list):
                raise OllamaError(500, f'option "{key}" must be of type array')
            if not all(isinstance(s, str) for s in value):
                raise OllamaError(500, f'option "{key}" must be of an array of strings')
            out[key] = list(value)
        # unknown keys: logged and ignored by Ollama
    return out


def resolve_num_ctx(options: Mapping[str, Any], default: int, trained: int) -> int:
    """``num_ctx`` after Ollama's rules: minimum 4, capped at the trained context."""
    wanted = options.get("num_ctx", default)
    return max(4, min(int(wanted), trained))


def load_key(options: Mapping[str, Any], num_ctx: int) -> tuple[Any, ...]:
    """The load-time options a runner was started with (a change means a reload)."""
    num_gpu = options.get("num_gpu", -1)
    rest = tuple(options.get(k) for k in LOAD_OPTIONS[1:] if k != "num_gpu")
    return (num_ctx, None if num_gpu == -1 else num_gpu, *rest)
