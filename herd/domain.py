"""Domain models shared by the core, the actors and the ingress.

All are frozen dataclasses with slots: cheap to build, hashable where it matters,
and picklable across Ray actor boundaries (no Starlette or aiohttp objects inside).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from herd.model_names import canonical_model  # the name rule, here for its many importers

RequestKind = Literal["chat", "generate", "embed", "embeddings", "image", "transcribe", "speech"]
Dialect = Literal["openai", "ollama", "python", "anthropic"]
NodeStatus = Literal["online", "degraded", "offline"]
MemoryPressure = Literal["normal", "warn", "critical"]
BackendKind = Literal["ollama", "llamacpp", "openai", "none"]


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
    category: str = "llm"  # "llm", "embedding", "image", "asr" (speech-to-text) or "tts"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model resident in memory (``/api/ps`` entry)."""

    name: str
    size: int = 0
    size_vram: int = 0
    context_length: int = 0
    expires_at: str = ""


@dataclass(frozen=True, slots=True)
class CapacityReport:
    """What the capacity learner (:mod:`herd.capacity`) tells beyond the scoring fields:
    the learned week and the owner's signals now (``None``: the device does not say)."""

    week: bytes = b""  # 168 slots, Monday 00h .. Sunday 23h: availability 0-100, 255 unknown
    slot: int = 0  # the slot of "now" in the device's local time
    workload: str = ""  # the owner's workload now: idle, light, moderate or heavy
    owner_cpu: float = 0.0  # share of the CPU the device uses outside herd's requests
    meeting: bool = False  # camera or microphone in use (or the owner's meeting flag)
    on_battery: bool | None = None
    battery_percent: float | None = None
    throttled: bool | None = None  # thermal throttling
    user_idle_s: float | None = None  # seconds since the user last touched an input


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
    disk_free: int | None = None  # bytes pulls may still fill where its models live; None: unknown
    remote: bool = False  # a device without Ray (herd add-node): its actor runs on another box
    # Adaptive capacity learning (herd.capacity, FLEET_NODE_ENABLE_CAPACITY_LEARNING);
    # defaults mean "not learning": never paused, fully available, no memory ceiling.
    paused: bool = False  # hard pause (owner in a meeting, battery low): take no requests
    pause_reason: str = ""  # why, as the elimination reason ("owner in a meeting")
    availability: float | None = None  # 0..1 spare capacity now
    availability_next: float | None = None  # 0..1 forecast for the next hour slot
    memory_ceiling: int = 0  # bytes the router may fill with models (0 = no ceiling)
    capacity: CapacityReport | None = None  # the learned week and owner signals
    # Canonical name -> entry, built once per heartbeat so scoring is O(1) per lookup.
    models_by_key: Mapping[str, ModelOnDisk] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    loaded_by_key: Mapping[str, LoadedModel] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "models_by_key", {canonical_model(m.name): m for m in self.models})
        object.__setattr__(self, "loaded_by_key", {canonical_model(m.name): m for m in self.loaded})

    def has_model(self, model: str) -> bool:
        key = canonical_model(model)
        return key in self.models_by_key or key in self.loaded_by_key

    def is_loaded(self, model: str) -> bool:
        return canonical_model(model) in self.loaded_by_key


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
class ModelPerf:
    """What the router learned about one model on one node (``None`` = not learned yet).

    Built by :class:`herd.scoring.perf.PerfBook`; times in seconds, rates in tokens/s.
    """

    samples: int = 0  # successful requests observed
    p75_s: float | None = None  # p75 end-to-end latency over the recent window
    service_s: float | None = None  # mean prompt-eval + generation time of one request
    load_s: float | None = None  # median cold-load time (Ollama's load_duration)
    prompt_tps: float | None = None  # prompt_eval_count / prompt_eval_duration (median)
    gen_tps: float | None = None  # eval_count / eval_duration (median)
    completion_tokens: float | None = None  # mean eval_count
    resident_bytes: int = 0  # size in memory when last seen loaded (0 = never seen)
    unloaded_at: float | None = None  # when a heartbeat last showed it unloaded ("warm")


@dataclass(frozen=True, slots=True)
class NodePerf:
    """Per-node rates learned across its models (0 = unknown): they turn a model's size
    into an estimate for models this node has not served yet."""

    load_bytes_per_s: float = 0.0  # model bytes loaded per second
    gen_bytes_per_s: float = 0.0  # gen tokens/s x model bytes (decode is bandwidth-bound)
    prompt_bytes_per_s: float = 0.0  # prompt tokens/s x model bytes


@dataclass(frozen=True, slots=True)
class FleetModelPerf:
    """One model across the fleet."""

    best_p75_s: float | None = None  # the lowest p75 latency of any node
    completion_tokens: float | None = None  # mean eval_count over every node
    resident_bytes: int = 0  # smallest size in memory seen on any node (0 = never seen)


@dataclass(frozen=True, slots=True)
class PerfStats:
    """Frozen learned performance, cheap to pickle to ingress replicas (see PerfBook)."""

    # canonical model -> node id -> what was learned there (one lookup per decision)
    models: Mapping[str, Mapping[str, ModelPerf]] = field(default_factory=dict)
    nodes: Mapping[str, NodePerf] = field(default_factory=dict)
    fleet: Mapping[str, FleetModelPerf] = field(default_factory=dict)  # canonical model
    version: int = 0

    def model(self, node_id: str, key: str) -> ModelPerf | None:
        by_node = self.models.get(key)
        return by_node.get(node_id) if by_node is not None else None


EMPTY_PERF = PerfStats()


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """When a (node, model) pair is cooled down (``FLEET_FAILURE_*``, see
    :mod:`herd.scoring.failures`)."""

    threshold: int = 3  # consecutive counted failures that trip the pair (0 = memory off)
    cooldown_s: float = 10.0  # the first cooldown; each failed probe doubles it ...
    cooldown_max_s: float = 300.0  # ... up to this
    error_rate: float = 0.5  # a decaying error rate that trips the pair too (0 = off) ...
    half_life_s: float = 60.0  # ... with this half-life, once 2 x threshold requests weigh in


@dataclass(frozen=True, slots=True)
class PairHealth:
    """The failure memory of one model on one node (times on the router's clock)."""

    failures: int = 0  # counted failures since the pair was last readmitted or forgotten
    consecutive: int = 0  # counted failures since the last success
    failed: float = 0.0  # decayed count of counted failures ...
    seen: float = 0.0  # ... and of counted outcomes: the error rate is failed / seen
    at: float = 0.0  # when ``failed`` and ``seen`` were last decayed
    trips: int = 0  # cooldowns since the last success (each doubles the next one)
    until: float | None = None  # tripped: cooling down until then, then half-open
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class FailureStats:
    """Frozen failure memory, with the policy it follows: canonical model -> node id ->
    :class:`PairHealth`, only for pairs that failed recently (see herd.scoring.failures)."""

    models: Mapping[str, Mapping[str, PairHealth]] = field(default_factory=dict)
    policy: FailurePolicy = FailurePolicy()

    def pair(self, node_id: str, key: str) -> PairHealth | None:
        by_node = self.models.get(key)
        return by_node.get(node_id) if by_node is not None else None


EMPTY_FAILURES = FailureStats()


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """Frozen fleet state at one instant; scoring reads only this and ``now``."""

    nodes: tuple[NodeView, ...]
    taken_at: float
    perf: PerfStats = EMPTY_PERF
    failures: FailureStats = EMPTY_FAILURES  # the failure memory: cooled-down pairs


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
    # From the final chunk's Ollama metrics (seconds), for the router's PerfBook.
    load_s: float | None = None  # load_duration
    prompt_eval_s: float | None = None  # prompt_eval_duration
    eval_s: float | None = None  # eval_duration
    moved: bool = False  # handed back before any output (rebalancer, drain): not a failure
    # The node or its backend failed (an error, a timeout): the failure memory counts it.
    # Never a client's disconnect or bad input, nor a move (herd.scoring.failures).
    node_fault: bool = False
