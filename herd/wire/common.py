"""Shared pieces of the wire models: JSON intake, error rendering, herd-only fields.

Every parse function funnels through :func:`validate`, which turns *any* problem with
the input (no body, malformed JSON, wrong types, values our validators reject) into
:class:`herd.errors.BadRequest` with one readable line. Validators raise
:class:`pydantic_core.PydanticCustomError`: type ``herd_bare`` for messages that must
reach the client verbatim (Ollama's own wording), ``herd_field`` for messages that get
the field location prepended.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from herd.errors import BadRequest
from herd.wire.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_FALLBACK_MODELS,
    Limits,
    check_tags,
    limits_of,
    model_name_problem,
)

JSONInput = bytes | bytearray | memoryview | str | Mapping[str, Any] | None
"""What a parse function accepts: the raw body, or an already-decoded JSON object."""

M = TypeVar("M", bound=BaseModel)

_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "any"})


def bare(message: str) -> PydanticCustomError:
    """A validation error whose message reaches the client unchanged."""
    return PydanticCustomError("herd_bare", "{message}", {"message": message})


def field_error(message: str) -> PydanticCustomError:
    """A validation error shown as ``<field location>: <message>``."""
    return PydanticCustomError("herd_field", "{message}", {"message": message})


class WireModel(BaseModel):
    """Base of every request model: unknown fields are kept (real clients send many)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)


def _check_model(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise bare("model is required")
    problem = model_name_problem(value, limits_of(info))
    if problem is not None:
        raise bare(problem)
    return value


ModelName = Annotated[str, AfterValidator(_check_model)]
"""A model name: present, not too long, only the characters Ollama's names use."""


def _check_int64(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise field_error("must be a 64-bit integer")
    return value


Int64 = Annotated[int, AfterValidator(_check_int64)]
"""An integer Ollama (Go, int64) can read; anything wider is a 400, never forwarded."""


def _check_int64_list(value: list[int]) -> list[int]:
    if value and not (min(value) >= INT64_MIN and max(value) <= INT64_MAX):
        raise field_error("every item must be a 64-bit integer")
    return value


Int64List = Annotated[list[int], AfterValidator(_check_int64_list)]
"""A list of :data:`Int64` checked in one pass (token contexts can be long)."""

_INT_OPTIONS = frozenset(
    {
        "num_ctx",
        "num_predict",
        "top_k",
        "seed",
        "repeat_last_n",
        "num_keep",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
        "mirostat",
        "draft_num_predict",
    }
)
_FLOAT_OPTIONS = frozenset(
    {
        "temperature",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "mirostat_tau",
        "mirostat_eta",
    }
)
_BOOL_OPTIONS = frozenset({"use_mmap", "use_mlock", "numa"})


_FLOAT32_MAX = 3.4028234663852886e38


def check_num_predict(value: float, limits: Limits, name: str = "num_predict") -> None:
    """Ollama's ``num_predict`` range: -2 (fill the context), -1 (no limit), 0 up to
    ``FLEET_MAX_PREDICT``."""
    if value < -2:
        raise bare(f"{name} must be -1 (no limit), -2 (fill the context) or at least 0")
    if value > limits.predict:
        raise bare(f"{name} must be at most {limits.predict} (FLEET_MAX_PREDICT)")


def _check_number(key: str, item: Any, limits: Limits) -> None:
    """A numeric option: 64-bit for integers (Ollama converts float64 to int64), finite
    and float32-sized for the rest, and the ranges of num_predict and num_ctx."""
    if isinstance(item, bool) or not isinstance(item, int | float):
        if key in _INT_OPTIONS or key in _FLOAT_OPTIONS:
            kind = "integer" if key in _INT_OPTIONS else "number"
            raise bare(f'option "{key}" must be of type {kind}')
        return
    if isinstance(item, float) and not math.isfinite(item):
        raise bare(f'option "{key}" must be a finite number')
    if key in _INT_OPTIONS or isinstance(item, int):
        if not INT64_MIN <= item <= INT64_MAX:
            raise bare(f'option "{key}" must be a 64-bit integer')
    elif key in _FLOAT_OPTIONS and abs(item) > _FLOAT32_MAX:
        raise bare(f'option "{key}" is out of range')
    if key == "num_predict":
        check_num_predict(item, limits)
    elif key == "num_ctx" and not 1 <= item <= limits.ctx:
        raise bare(f"num_ctx must be between 1 and {limits.ctx} (FLEET_MAX_CTX)")


def _check_options(value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
    """Type-check the known Ollama options (Ollama answers 500 for these; we say 400) and
    bound every number in them (see :func:`_check_number`)."""
    if not value:
        return value
    limits = limits_of(info)
    for key, item in value.items():
        if item is None:
            continue
        if key in _BOOL_OPTIONS:
            if not isinstance(item, bool):
                raise bare(f'option "{key}" must be of type boolean')
        elif key in _INT_OPTIONS or key in _FLOAT_OPTIONS or isinstance(item, int | float):
            _check_number(key, item, limits)
        elif key == "stop" and (
            not isinstance(item, list) or not all(isinstance(s, str) for s in item)
        ):
            raise bare('option "stop" must be of type array of strings')
    return value


Options = Annotated[dict[str, Any] | None, AfterValidator(_check_options)]


_MAX_KEEP_ALIVE_S = INT64_MAX // 1_000_000_000  # Go's time.Duration: int64 nanoseconds


def _check_keep_alive(value: str | int | float | None) -> str | int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if not (math.isfinite(value) and abs(value) <= _MAX_KEEP_ALIVE_S):
        raise bare(f"keep_alive must be a number of seconds within ±{_MAX_KEEP_ALIVE_S}")
    return value


KeepAlive = Annotated[str | int | float | None, AfterValidator(_check_keep_alive)]

_THINK_LEVELS = frozenset({"low", "medium", "high", "max"})


def _check_think(value: bool | str | None) -> bool | str | None:
    if isinstance(value, str) and value not in _THINK_LEVELS:
        raise bare('think must be true, false, "low", "medium", "high" or "max"')
    return value


Think = Annotated[bool | str | None, AfterValidator(_check_think)]


class HerdFields(WireModel):
    """Routing fields both dialects accept; they never reach a backend."""

    metadata: dict[str, Any] | None = None
    fallback_models: list[str] | None = None

    @field_validator("metadata")
    @classmethod
    def _tags_are_strings(
        cls, value: dict[str, Any] | None, info: ValidationInfo
    ) -> dict[str, Any] | None:
        if value is None or value.get("tags") is None:
            return value
        tags = value["tags"]
        if isinstance(tags, str):
            tags = tags.split(",")
        elif not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise field_error("tags must be a list of strings")
        try:
            check_tags(tags, limits_of(info))
        except BadRequest as exc:
            raise bare(exc.message) from None
        return value

    @field_validator("fallback_models")
    @classmethod
    def _fallback_names(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if not value:
            return value
        if len(value) > MAX_FALLBACK_MODELS:
            raise bare(f"too many fallback_models: at most {MAX_FALLBACK_MODELS}")
        limits = limits_of(info)
        for name in value:
            problem = model_name_problem(name, limits) if name.strip() else None
            if problem is not None:
                raise bare(f"fallback_models: {problem}")
        return value

    @property
    def body_tags(self) -> list[str]:
        """The raw ``metadata.tags`` of the body (a comma-separated string is split)."""
        if not self.metadata:
            return []
        tags = self.metadata.get("tags")
        if tags is None:
            return []
        if isinstance(tags, str):
            return tags.split(",")
        return list(tags)


def check_base64(data: str) -> bool:
    """True when ``data`` is standard base64 (line breaks tolerated, like Go's decoder)."""
    if "\n" in data or "\r" in data:
        data = data.replace("\r", "").replace("\n", "")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _render_loc(loc: tuple[int | str, ...]) -> str:
    """``('messages', 0, 'content', 'list[...]', 1, 'image_url', 'image_url')`` ->
    ``messages[0].content[1].image_url`` (union member tags dropped, repeats folded)."""
    out = ""
    last: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            last = part
            continue
        if part in _TYPE_TAGS or "[" in part or "-" in part or part[:1].isupper() or part == last:
            continue
        out = f"{out}.{part}" if out else part
        last = part
    return out


def _pick(errors: list[ErrorDetails]) -> ErrorDetails:
    """The most useful error: a bad ``model`` first, then ours, then the deepest (the
    union branch the client meant)."""
    for err in errors:
        if err["loc"] == ("model",):
            return err
    for err in errors:
        if err["type"] in ("herd_bare", "herd_field", "json_invalid"):
            return err
    return max(errors, key=lambda e: len(e["loc"]))


def render_error(exc: ValidationError) -> str:
    """One line for the client, from a pydantic ValidationError."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid request body"
    err = _pick(errors)
    kind = err["type"]
    if kind == "herd_bare":
        return str(err["msg"])
    if kind == "json_invalid":
        detail = err.get("ctx", {}).get("error", "")
        return f"invalid JSON: {detail}" if detail else "invalid JSON"
    loc = _render_loc(err["loc"])
    if kind == "missing":
        return "model is required" if loc == "model" else f"{loc} is required"
    if kind in ("model_type", "dict_type") and not loc:
        return "request body must be a JSON object"
    return f"{loc}: {err['msg']}" if loc else str(err["msg"])


def validate(model: type[M], raw: JSONInput, limits: Limits | None = None) -> M:
    """Parse ``raw`` (bytes, str or a decoded mapping) into ``model`` or raise BadRequest.
    ``limits`` (default: the settings' defaults) reach every validator as the context."""
    if raw is None:
        raise BadRequest("missing request body")
    try:
        if not isinstance(raw, bytes | bytearray | memoryview | str):
            return model.model_validate(raw, context=limits)
        if isinstance(raw, memoryview):
            raw = raw.tobytes()
        if not raw.strip():
            raise BadRequest("missing request body")
        return model.model_validate_json(raw, context=limits)
    except ValidationError as exc:
        raise BadRequest(render_error(exc)) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadRequest(f"invalid request body: {exc}") from None
