"""What routing needs to know about one request, independent of its dialect."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from herd.domain import InferenceRequest, canonical_model


def positive_int(value: Any) -> int | None:
    """An Ollama option that only means something when positive (num_ctx, num_predict)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return int(value)
    return None


@dataclass(frozen=True, slots=True)
class RouteQuery:
    """The features of one request that policies, signals and eliminators read.

    ``num_predict`` / ``num_ctx`` are ``None`` when the request did not set a positive
    value (Ollama reads ``num_predict: -1`` as "until done"). ``seq`` is an explicit
    round-robin counter; without it round-robin hashes ``request_id``.
    """

    model: str
    kind: str = "chat"
    prompt_tokens: int = 0
    num_predict: int | None = None
    num_ctx: int | None = None
    request_id: str = ""
    seq: int | None = None
    key: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", canonical_model(self.model))

    @property
    def needed_tokens(self) -> int:
        """Context the request fills: the prompt plus the answer it asks for."""
        return self.prompt_tokens + (self.num_predict or 0)

    @property
    def generates(self) -> bool:
        """Does the request produce tokens (chat, generate)? Embeddings and media do not."""
        return self.kind in ("chat", "generate")

    @property
    def counter(self) -> int:
        """Round-robin position: ``seq`` when given, else a stable hash of the request id."""
        if self.seq is not None:
            return self.seq
        return zlib.crc32(self.request_id.encode())

    def for_model(self, model: str) -> RouteQuery:
        """The same request for another model (a fallback)."""
        return self if model == self.model else replace(self, model=model)

    @classmethod
    def from_request(cls, req: InferenceRequest, model: str | None = None) -> RouteQuery:
        """Read the features from an internal request (``options`` of the Ollama body)."""
        options = req.body.get("options")
        opts: Mapping[str, Any] = options if isinstance(options, Mapping) else {}
        return cls(
            model=model or req.model,
            kind=req.kind,
            prompt_tokens=max(0, req.estimated_tokens),
            num_predict=positive_int(opts.get("num_predict")),
            num_ctx=positive_int(opts.get("num_ctx")),
            request_id=req.request_id,
        )
