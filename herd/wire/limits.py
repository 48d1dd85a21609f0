"""The request bounds the parsers enforce, built once from :class:`~herd.settings.Settings`.

Every ``parse_*`` function takes a :class:`Limits` (default: the settings' defaults) and
hands it to pydantic as the validation context, so each validator reads the bound it
needs (:func:`limits_of`). What is checked where:

* model names (every route that takes one, fallbacks too): at most
  ``FLEET_MAX_MODEL_NAME_CHARS``, and only the characters Ollama's name parser allows
  (ASCII letters, digits, ``_ - .``, ``:`` for tags and registry ports, ``/`` between
  parts, ``@`` before a digest) plus ``+``; the first character a letter, digit or ``_``;
* tags (``metadata.tags`` and ``X-Herd-Tags``, after trimming and de-duplication):
  ``FLEET_MAX_TAGS`` of them, each at most ``FLEET_MAX_TAG_CHARS`` printable characters;
* ``max_tokens`` / ``max_completion_tokens`` / ``options.num_predict``: at most
  ``FLEET_MAX_PREDICT``; ``options.num_ctx``: 1 to ``FLEET_MAX_CTX``; every integer
  option within 64 bits (:mod:`herd.wire.common`);
* embedding inputs per request: ``FLEET_MAX_EMBED_INPUTS``;
* rerank documents per request: ``FLEET_MAX_RERANK_DOCUMENTS``, the query and each document
  at most ``FLEET_MAX_RERANK_CHARS`` characters;
* images: ``n`` up to ``FLEET_MAX_IMAGES``, width x height up to ``FLEET_MAX_IMAGE_PIXELS``,
  ``steps`` up to ``FLEET_MAX_IMAGE_STEPS``;
* audio: ``FLEET_MAX_AUDIO_SECONDS``, measured by decoding (:mod:`herd.wire.audio`);
* speech (``/v1/audio/speech``): ``input`` and ``instructions`` at most
  ``FLEET_MAX_SPEECH_CHARS`` characters each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationInfo

from herd.errors import BadRequest
from herd.model_names import name_problem
from herd.settings import Settings

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

MAX_FALLBACK_MODELS = 16
"""``fallback_models`` per request: each one may cost the router a full decision."""


@dataclass(frozen=True, slots=True)
class Limits:
    """One frozen copy of the request bounds (``FLEET_MAX_*``)."""

    model_name_chars: int
    tags: int
    tag_chars: int
    predict: int
    ctx: int
    embed_inputs: int
    rerank_documents: int
    rerank_chars: int
    images: int
    image_pixels: int
    image_steps: int
    audio_seconds: float
    speech_chars: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            model_name_chars=settings.max_model_name_chars,
            tags=settings.max_tags,
            tag_chars=settings.max_tag_chars,
            predict=settings.max_predict,
            ctx=settings.max_ctx,
            embed_inputs=settings.max_embed_inputs,
            rerank_documents=settings.max_rerank_documents,
            rerank_chars=settings.max_rerank_chars,
            images=settings.max_images,
            image_pixels=settings.max_image_pixels,
            image_steps=settings.max_image_steps,
            audio_seconds=settings.max_audio_seconds,
            speech_chars=settings.max_speech_chars,
        )


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


DEFAULT_LIMITS = Limits(
    model_name_chars=_default("max_model_name_chars"),
    tags=_default("max_tags"),
    tag_chars=_default("max_tag_chars"),
    predict=_default("max_predict"),
    ctx=_default("max_ctx"),
    embed_inputs=_default("max_embed_inputs"),
    rerank_documents=_default("max_rerank_documents"),
    rerank_chars=_default("max_rerank_chars"),
    images=_default("max_images"),
    image_pixels=_default("max_image_pixels"),
    image_steps=_default("max_image_steps"),
    audio_seconds=_default("max_audio_seconds"),
    speech_chars=_default("max_speech_chars"),
)
"""The settings' defaults, for callers that pass no limits (tests, the Python client)."""


def limits_of(info: ValidationInfo) -> Limits:
    """The limits a parse function handed to pydantic (the defaults when none)."""
    found = info.context
    return found if isinstance(found, Limits) else DEFAULT_LIMITS


def model_name_problem(name: str, limits: Limits) -> str | None:
    """Why ``name`` is not an acceptable model name, or None when it is (the rule is
    :func:`herd.model_names.name_problem`, which the settings' aliases pass too)."""
    return name_problem(name, limits.model_name_chars)


def check_model_name(name: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """``name`` unchanged, or :class:`BadRequest` (for names outside a body: paths)."""
    problem = model_name_problem(name, limits)
    if problem is not None:
        raise BadRequest(problem)
    return name


def tag_problem(tag: str, limits: Limits) -> str | None:
    """Why one (trimmed) tag is refused, or None."""
    if len(tag) > limits.tag_chars:
        return f"a tag is longer than {limits.tag_chars} characters"
    if not tag.isprintable():
        return "tags must be printable text (no control or separator characters)"
    return None


def check_tags(tags: Iterable[str], limits: Limits = DEFAULT_LIMITS) -> tuple[str, ...]:
    """Tags trimmed, lower-cased, blanks dropped, de-duplicated in order, then bounded:
    at most ``limits.tags`` of them, each acceptable to :func:`tag_problem`; otherwise
    :class:`BadRequest`."""
    seen: dict[str, None] = {}
    for raw in tags:
        tag = raw.strip().lower()
        if not tag or tag in seen:
            continue
        problem = tag_problem(tag, limits)
        if problem is not None:
            raise BadRequest(problem)
        seen[tag] = None
        if len(seen) > limits.tags:
            raise BadRequest(f"too many tags: at most {limits.tags} per request")
    return tuple(seen)
