"""Domain models shared by the core, the actors and the ingress.

All are frozen dataclasses with slots: cheap to build, hashable where it matters,
and picklable across Ray actor boundaries (no Starlette or aiohttp objects inside).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

RequestKind = Literal["chat", "generate", "embed", "embeddings"]
Dialect = Literal["openai", "ollama", "python"]
NodeStatus = Literal["online", "degraded", "offline"]
MemoryPressure = Literal["normal", "warn", "critical"]
BackendKind = Literal["ollama", "llamacpp", "openai", "none"]


def canonical_model(name: str) -> str:
    """Ollama's matching rule: case-insensitive, a missing tag means ``latest``."""
    name = name.strip().lower()
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """One client request, in the internal (Ollama-native) form.

    ``body`` is the Ollama API body for ``kind`` (``/api/chat``, ``/api/generate``,
    ``/api/embed``); the node overwrites ``model`` and ``stream`` per attempt.
    """

    request_id: str
    kind: RequestKind
    model: str
    body: Mapping[str, Any]
    stream: bool = True
    dialect: Dialect = "ollama"
    fallback_models: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    client: str | None = None
    estimated_tokens: int = 0
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ModelOnDisk:
    """A model a node can serve (``/api/tags`` entry)."""

    name: str
    size: int = 0
    family: str = ""
    parameter_size: str = ""
    quantization_level: str = ""
    modified_at: str = ""
    digest: str = ""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model resident in memory (``/api/ps`` entry)."""

    name: str
    size: int = 0
    size_vram: int = 0
    context_length: int = 0
    expires_at: str = ""


@dataclass(frozen=True, slots=True)
class NodeHeartbeat:
    """What a NodeActor reports every ``FLEET_HEARTBEAT_INTERVAL`` seconds."""

    node_id: str
    hostname: str
    ray_node_id: str | None = None
    backend: BackendKind = "none"
    backend_url: str = ""
    backend_ok: bool = False
    backend_version: str = ""
    herd_version: str = ""
    cpu_percent: float = 0.0
    cpu_count: int = 1
    memory_total: int = 0
    memory_available: int = 0
    memory_pressure: MemoryPressure = "normal"
    models: tuple[ModelOnDisk, ...] = ()
    loaded: tuple[LoadedModel, ...] = ()
    num_parallel: int = 1
    draining: bool = False
    sent_at: float = 0.0
    data_url: str = ""  # the node's HTTP data plane (FLEET_DATA_PLANE=http), else ""

    def has_model(self, model: str) -> bool:
        key = canonical_model(model)
        return any(canonical_model(m.name) == key for m in self.models) or self.is_loaded(model)

    def is_loaded(self, model: str) -> bool:
        key = canonical_model(model)
        return any(canonical_model(m.name) == key for m in self.loaded)


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as the scoring pipeline sees it: last heartbeat plus router book-keeping."""

    heartbeat: NodeHeartbeat
    status: NodeStatus
    in_flight: int = 0
    in_flight_by_model: Mapping[str, int] = field(default_factory=dict)
    last_seen: float = 0.0

    @property
    def node_id(self) -> str:
        return self.heartbeat.node_id


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """Frozen fleet state at one instant; scoring reads only this and ``now``."""

    nodes: tuple[NodeView, ...]
    taken_at: float


@dataclass(frozen=True, slots=True)
class CandidateScore:
    node_id: str
    total: float
    breakdown: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one attempt of a request goes, and why."""

    request_id: str
    node_id: str
    model: str
    requested_model: str
    score: float
    breakdown: Mapping[str, float]
    candidates: tuple[CandidateScore, ...] = ()
    eliminated: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 0
    fallback: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one attempt; sent back to the router (never awaited on the hot path)."""

    request_id: str
    node_id: str | None
    model: str
    ok: bool
    first_chunk_s: float | None = None
    total_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    started: bool = False
