"""Configuration of one emulated Ollama device (pydantic, ``extra="forbid"``).

A :class:`SimProfile` describes the hardware (memory budget, speeds), the
Ollama server settings (``OLLAMA_NUM_PARALLEL``, ``OLLAMA_MAX_QUEUE``,
``OLLAMA_MAX_LOADED_MODELS``, ``OLLAMA_KEEP_ALIVE``), the models on disk, the
models loaded at start, the registry catalogue that ``/api/pull`` can fetch
from, and faults active from the start.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from herd.domain import canonical_model

Capability = Literal["completion", "tools", "thinking", "embedding", "vision", "insert"]
FaultKind = Literal["fail_before", "fail_mid_stream", "hang", "slow", "down"]
Endpoint = Literal["chat", "generate", "embed", "embeddings"]

GIB = 1024**3
MIB = 1024**2

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go accepts both micro signs
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Parse a Go ``time.ParseDuration`` string ("5m", "1h30m", "-1m", "0") into seconds.

    Raises ``ValueError`` with Go's message (``time: invalid duration "x"``).
    """
    s = text.strip()
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            if re.fullmatch(r"\d+\.?\d*|\.\d+", s[pos:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return sign * total


def keep_alive_seconds(value: str | float | int) -> float | None:
    """Ollama ``keep_alive`` semantics: seconds to stay loaded once idle; ``None`` = forever.

    Numbers are seconds, strings are Go durations, anything negative means forever.
    A bare integer string (as allowed by ``OLLAMA_KEEP_ALIVE``) is seconds.
    """
    if isinstance(value, bool):
        raise ValueError("keep_alive must be a number or a duration string")
    if isinstance(value, int | float):
        seconds = float(value)
    elif re.fullmatch(r"\s*-?\d+\s*", value):
        seconds = float(int(value))
    else:
        seconds = parse_go_duration(value)
    return None if seconds < 0 else seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimModel(_Strict):
    """One model file on the device's disk (or in the registry catalogue)."""

    name: str = Field(min_length=1)
    size: int = Field(gt=0, description="bytes on disk; also the bytes it takes in memory")
    family: str = "llama"
    parameter_size: str = ""
    quantization_level: str = "Q4_K_M"
    context_length: int = Field(default=131072, ge=4, description="trained context")
    capabilities: tuple[Capability, ...] = ("completion",)
    embedding_length: int = Field(default=0, ge=0, description="0 = 768 for embedding models")
    kv_bytes_per_token: int = Field(default=0, ge=0, description="KV cache per context token")
    tokens_per_s: float | None = Field(default=None, ge=0, description="overrides the node's")
    prompt_tokens_per_s: float | None = Field(default=None, ge=0)
    digest: str = ""
    modified_at: str = ""

    @property
    def key(self) -> str:
        return canonical_model(self.name)

    @property
    def dims(self) -> int:
        return self.embedding_length or 768

    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities


class FaultSpec(_Strict):
    """An injected fault; see :mod:`herd.sim.faults` for the semantics of each kind."""

    kind: FaultKind
    model: str | None = Field(default=None, description="only requests for this model")
    endpoint: Endpoint | None = Field(default=None, description="only this endpoint")
    count: int | None = Field(default=None, ge=1, description="only the next K requests")
    after_chunks: int = Field(default=0, ge=0, description="fail_mid_stream / hang: chunks first")
    status: int = Field(default=500, ge=400, le=599, description="fail_before / down: HTTP status")
    message: str | None = None
    factor: float = Field(default=1.0, gt=0, description="slow: delay multiplier")

    @model_validator(mode="after")
    def _check(self) -> FaultSpec:
        if self.kind == "fail_mid_stream" and self.after_chunks < 1:
            raise ValueError("fail_mid_stream needs after_chunks >= 1")
        if self.kind == "slow" and self.factor == 1.0:
            raise ValueError("slow needs a factor other than 1.0")
        if self.kind == "down" and (self.model is not None or self.endpoint is not None):
            raise ValueError("down takes the whole server down: no model or endpoint")
        return self


class SimProfile(_Strict):
    """One emulated device and its Ollama server settings."""

    name: str = Field(default="sim-node", min_length=1, description="node name")
    description: str = ""
    version: str = "0.12.6"
    memory_bytes: int = Field(default=16 * GIB, gt=0, description="budget for loaded models")
    disk_bytes: int = Field(
        default=512 * GIB,
        gt=0,
        description="disk for models: the models on it use it up, a pull that does not fit "
        "fails as Ollama's does (no space left on device)",
    )
    gpu_offload: float = Field(default=1.0, ge=0, le=1, description="share reported as size_vram")
    tokens_per_s: float = Field(default=50.0, ge=0, description="generation; 0 = no delays at all")
    prompt_tokens_per_s: float = Field(default=500.0, ge=0, description="0 = instant prompt eval")
    load_bytes_per_s: float = Field(default=2e9, ge=0, description="0 = instant loads")
    pull_bytes_per_s: float = Field(default=0.0, ge=0, description="0 = instant pulls")
    instant: bool = Field(default=False, description="never sleep (benchmark baseline)")
    num_parallel: int = Field(default=1, ge=1, description="OLLAMA_NUM_PARALLEL")
    max_queue: int = Field(default=512, ge=1, description="OLLAMA_MAX_QUEUE")
    max_loaded_models: int = Field(default=3, ge=0, description="0 = automatic (3)")
    keep_alive: str | float = Field(default="5m", description="OLLAMA_KEEP_ALIVE")
    default_num_ctx: int = Field(default=4096, ge=4, description="OLLAMA_CONTEXT_LENGTH")
    response_tokens: int = Field(default=24, ge=1, description="length of an answer")
    response_tokens_max: int | None = Field(default=None, ge=1, description="random up to this")
    stream_chunk_tokens: int = Field(
        default=1,
        ge=1,
        description="tokens per streamed chunk after the first (1 = one per chunk, as Ollama); "
        "more only saves CPU in simulations, the timing of every token stays the same",
    )
    models: list[SimModel] = Field(default_factory=list)
    preload: list[str] = Field(default_factory=list, description="loaded (forever) at start")
    registry: list[SimModel] = Field(default_factory=list, description="pullable catalogue")
    faults: list[FaultSpec] = Field(default_factory=list)

    @field_validator("keep_alive")
    @classmethod
    def _valid_keep_alive(cls, value: str | float) -> str | float:
        keep_alive_seconds(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> SimProfile:
        keys = [m.key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate model names in models")
        missing = [p for p in self.preload if canonical_model(p) not in keys]
        if missing:
            raise ValueError(f"preload names models not on disk: {', '.join(missing)}")
        if self.response_tokens_max is not None and self.response_tokens_max < self.response_tokens:
            raise ValueError("response_tokens_max must be >= response_tokens")
        return self

    @property
    def no_delays(self) -> bool:
        """``instant`` or ``tokens_per_s == 0``: answer without a single sleep."""
        return self.instant or self.tokens_per_s == 0

    @property
    def keep_alive_s(self) -> float | None:
        return keep_alive_seconds(self.keep_alive)

    @property
    def loaded_limit(self) -> int:
        return self.max_loaded_models or 3
