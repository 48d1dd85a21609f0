"""One settings object, parsed once at the edge (CLI / actor start) and passed down.

Variables follow the seed: ``FLEET_*`` for the router (here), ``FLEET_NODE_*`` for a node
(``herd/node_settings.py``, held in ``Settings.node``). Nothing reads the environment at
import time; call :func:`load_settings`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import herd.env_file as env_file
from herd.api_keys import parse_api_keys
from herd.errors import ConfigError
from herd.model_names import ModelAliases
from herd.node_settings import NodeSettings

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _default_data_dir() -> Path:
    return Path.home() / ".fleet-manager"


class Settings(BaseSettings):
    """Router and fleet settings (``FLEET_*``); ``node`` holds ``FLEET_NODE_*``."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="forbid")

    port: int = Field(default=11435, ge=1, le=65535, description="HTTP endpoint port")
    host: str = Field(
        default="0.0.0.0", description="HTTP endpoint address (127.0.0.1: this machine only)"
    )
    heartbeat_interval: float = Field(
        default=5.0, gt=0, description="Seconds between node heartbeats (and upkeep passes)"
    )
    heartbeat_timeout: float = Field(
        default=15.0, gt=0, description="A node silent this long is marked degraded (seconds)"
    )
    heartbeat_offline: float = Field(
        default=30.0,
        gt=0,
        description="A node silent this long is marked offline (seconds; at once when Ray "
        "reports its node dead)",
    )
    max_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries on another node when one fails before the first chunk",
    )
    log_level: LogLevel = Field(
        default="DEBUG", description="Level of the JSONL logs (<data dir>/logs/herd.jsonl)"
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Logs, traces, the SQLite database, the admin token and the env file "
        "(<data dir>/env, read before the environment)",
    )
    database_url: str | None = Field(
        default=None,
        description="Database of traces and benchmarks, any SQLAlchemy URL (PostgreSQL "
        "tested); unset: SQLite at <data dir>/herd.db. Migrated at start",
    )
    trace_retention_days: int = Field(
        default=30,
        ge=0,
        description="Days of request traces and latency observations kept; older ones are "
        "deleted by the router hourly, in small batches, and the SQLite file shrinks "
        "(0: keep forever; benchmark runs are always kept)",
    )
    ray_address: str = Field(default="auto", description="Ray cluster to join")
    ray_connect_timeout: float = Field(
        default=15.0, gt=0, description="Joining the Ray cluster at start (seconds)"
    )
    holding_queue_timeout: float = Field(
        default=30.0, ge=0, description="How long a request waits for a free node before 503"
    )
    first_chunk_timeout: float = Field(
        default=300.0,
        gt=0,
        description="A backend silent this long before its first chunk (a model load "
        "included; an embedding's whole job) is cut: 503 naming the limit, retried elsewhere "
        "(seconds; no answer has a total limit)",
    )
    chunk_timeout: float = Field(
        default=120.0, gt=0, description="A stream silent this long between two chunks is cut"
    )
    actor_call_timeout: float = Field(
        default=10.0,
        gt=0,
        description="One control-plane call: a heartbeat, a node's show or delete, a router "
        "read (seconds)",
    )
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Request body limit (413), counted while the body is read",
    )
    keep_alive: float | str = Field(
        default=-1,
        description="keep_alive added to routed requests that set none (seconds, or a "
        "duration such as 5m; -1: keep loaded)",
    )
    score_thermal_hot: float = Field(default=50.0, description="Points: the model is loaded")
    score_queue_penalty: float = Field(
        default=30.0, description="Most points a busy node loses for its queue (none starves)"
    )
    score_queue_step: float = Field(
        default=10.0,
        description="Points lost per request beyond the node's free slots (half "
        "for another model's requests)",
    )
    # The rest of the seed's signals (herd/scoring/signals.py documents each one's range).
    score_thermal_warm: float = Field(
        default=25.0, description="Points: the model was unloaded recently (warm)"
    )
    score_thermal_disk: float = Field(
        default=5.0, description="Points: the model is on the node's disk only"
    )
    score_warm_window: float = Field(
        default=600.0, ge=0, description="Seconds an unloaded model still counts as warm"
    )
    score_memory_fit: float = Field(
        default=20.0,
        description="Points for free memory left after loading the model (all "
        "of them at half the memory free)",
    )
    score_latency_penalty: float = Field(
        default=25.0,
        description="Most points lost for past p75 latency against the fleet's "
        "best node for the model (all of them at twice the best)",
    )
    score_role_affinity: float = Field(
        default=15.0,
        description="Points when the model's size matches the node's memory "
        "among the fleet's (large models on big machines)",
    )
    score_availability: float = Field(
        default=10.0,
        description="Most points lost by a node the capacity learner expects "
        "to be unavailable (a laptop whose owner comes back)",
    )
    score_context_fit: float = Field(
        default=15.0, description="Points when the request fits the context window it will run with"
    )
    routing_policy: Literal["score", "expected_latency", "round_robin", "least_busy"] = Field(
        default="expected_latency",
        description="expected_latency (default: won bench/fleet.py): minimum expected "
        "completion time (queue + load + prefill + generation); score: the seed's signals; "
        "round_robin / least_busy: baselines",
    )
    context_protection: Literal["strip", "warn", "passthrough"] = Field(
        default="strip",
        description="num_ctx that would reload a loaded model: strip it, warn, or pass it",
    )
    auto_pull: bool = Field(
        default=False,
        description="Pull a model nobody has onto the best node instead of answering 404 "
        "(runtime toggle)",
    )
    vram_fallback: bool = Field(
        default=False,
        description="Serve an already-loaded model of the same category instead of "
        "cold-loading the requested one (a request can also opt in)",
    )
    zombie_timeout: float = Field(
        default=900.0,
        gt=0,
        description="In-flight entries with no end after this long are reclaimed (reaper)",
    )
    rebalance: bool = Field(
        default=True, description="Move requests waiting on a busy node to one that freed up"
    )
    prewarm_threshold: int = Field(
        default=4, ge=0, description="Queued requests for a model that trigger a pre-warm (0: off)"
    )
    prewarm_cooldown: float = Field(
        default=60.0, ge=0, description="Seconds before the same node and model are warmed again"
    )
    failure_threshold: int = Field(
        default=3,
        ge=0,
        description="Consecutive failures (backend errors, first-chunk timeouts; not client "
        "disconnects or bad input) that cool a node down for a model (0: no failure memory)",
    )
    failure_cooldown: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a node is cooled down for a model after it tripped; then one "
        "probe request goes through: success readmits it, failure doubles the cooldown",
    )
    failure_cooldown_max: float = Field(
        default=300.0, gt=0, description="Longest cooldown, however often the probes fail"
    )
    failure_rate: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="A decaying error rate that also cools the pair down, judged once twice "
        "FLEET_FAILURE_THRESHOLD recent requests weigh in (0: only consecutive failures)",
    )
    failure_half_life: float = Field(
        default=60.0, gt=0, description="Half-life in seconds of the decaying error rate"
    )
    serve_proxy: Literal["haproxy", "default"] = Field(
        default="haproxy",
        description="Ray Serve's ingress proxy: haproxy, or default (Serve's own, which "
        "sees a client that hangs up at once)",
    )
    data_plane: Literal["ray", "http"] = Field(
        default="http",
        description=(
            "How the ingress reaches a node for tokens: 'http' (each NodeActor serves NDJSON "
            "over aiohttp on its Ray node IP, authenticated with the data token; ~2 ms less "
            "per request) or 'ray' (actor streaming generator)"
        ),
    )
    data_token: SecretStr | None = Field(
        default=None,
        description="Shared secret of the HTTP data plane; unset: one random token per Ray "
        "cluster, kept in Ray's GCS KV (set it the same on every device or nowhere)",
    )
    # --- security (README "Security") -------------------------------------------------
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for every mutation (pull, delete, settings, unloads) and "
        "for reading traces from another machine; unset: the first head deploy generates "
        "one into <data dir>/admin-token (mode 0600); `herd admin-token` shows it",
    )
    api_keys: SecretStr | None = Field(
        default=None,
        description="Inference keys, `name:key` pairs separated by commas (or a JSON object "
        "name -> key); when set, every /v1/*, /api/* and /fleet/* route but / and "
        "/api/version needs one (Authorization: Bearer or x-api-key); the key's name is "
        "traced as tag key:NAME",
    )
    mdns: bool = Field(
        default=True,
        description="Advertise the head on its LAN over mDNS (_herd._tcp: its address, ports "
        "and versions, never the token) so `herd join` without an address finds it",
    )
    metrics: bool = Field(
        default=True,
        description="Serve GET /metrics (Prometheus text format, the whole fleet's numbers "
        "from any replica); off: /metrics is a 404 and the router records nothing",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="A bearer token (16+ characters) that may read /metrics and nothing else, "
        "for Prometheus' scrape config; the admin token may too, and anyone when the "
        "endpoint listens on loopback only",
    )
    origins: str = Field(
        default="",
        description="Browser origins allowed besides Ollama's defaults (localhost, 127.0.0.1, "
        "0.0.0.0, app://, file://, tauri://, vscode-webview://) and the endpoint's own; "
        "comma list, * wildcards (OLLAMA_ORIGINS' form)",
    )
    allowed_hosts: str = Field(
        default="",
        description="Host header names allowed besides IP addresses, localhost, *.localhost, "
        "*.local, *.internal and this machine's names; comma list, *.suffix wildcards, * "
        "allows any",
    )
    pull_registries: str = Field(
        default="registry.ollama.ai",
        description="Registries pulls (and auto-pulls) may fetch from, comma list of hosts "
        "(host:port for a port); a model name is read as Ollama reads it, "
        "[host/][namespace/]model[:tag]: llama3:8b is registry.ollama.ai's, hf.co/u/r:Q4_K_M "
        "hf.co's; others get 403",
    )
    # --- bounds: each refused with 400/413 in the client's dialect before any node -----
    dashboard_max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Body limit of the dashboard's API and callbacks"
    )
    max_model_name_chars: int = Field(
        default=200,
        ge=8,
        le=1000,
        description="Longest model name; names take only Ollama's characters (ASCII letters, "
        "digits, _ . : / - @ +), else 400",
    )
    max_tags: int = Field(default=16, ge=0, le=256, description="Tags per request")
    max_tag_chars: int = Field(
        default=64, ge=1, le=1000, description="Characters per tag (printable), else 400"
    )
    max_predict: int = Field(
        default=131072,
        ge=1,
        description="Largest max_tokens / num_predict a request may ask for (-1 and -2 keep "
        "Ollama's meaning)",
    )
    max_ctx: int = Field(default=1048576, ge=512, description="Largest num_ctx")
    max_embed_inputs: int = Field(default=2048, ge=1, description="Inputs per embedding request")
    max_rerank_documents: int = Field(
        default=1000, ge=1, description="Documents per rerank request (/v1/rerank)"
    )
    max_rerank_chars: int = Field(
        default=32768, ge=1, description="Characters of a rerank query and of each document"
    )
    max_images: int = Field(default=4, ge=1, le=100, description="Images per request (n)")
    max_image_pixels: int = Field(
        default=2048 * 2048, ge=64 * 64, description="width x height of one image"
    )
    max_image_steps: int = Field(default=100, ge=1, description="Diffusion steps per image")
    max_audio_seconds: float = Field(
        default=3600.0, gt=0, description="Audio per transcription, measured by decoding it"
    )
    max_speech_chars: int = Field(
        default=4096,
        ge=1,
        description="Characters of text per speech request (input, and instructions): "
        "OpenAI's limit is 4096",
    )
    events_min_interval: float = Field(
        default=1.0, gt=0, description="Floor of /dashboard/events?interval= (seconds)"
    )
    max_event_streams: int = Field(
        default=16, ge=1, description="Concurrent /dashboard/events streams per replica"
    )
    model_aliases: str = Field(
        default="",
        description="Model names clients insist on mapped to fleet models: a JSON object "
        '{"gpt-4o-mini": "smollm2:135m"} or the path of a JSON/YAML file holding one; '
        "resolved before routing in every dialect, listed in /v1/models when the target is "
        "served, traced as requested vs served",
    )
    node: NodeSettings = Field(default_factory=NodeSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("data_token", "admin_token", "metrics_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("api_keys")
    @classmethod
    def _parse_api_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            parse_api_keys(value.get_secret_value())  # raises ValueError with the reason
        return value

    def api_key_table(self) -> dict[str, str]:
        """key -> name of ``FLEET_API_KEYS`` (empty: inference needs no key)."""
        if self.api_keys is None or not self.api_keys.get_secret_value().strip():
            return {}
        return {key: name for name, key in parse_api_keys(self.api_keys.get_secret_value())}

    @field_validator("model_aliases")
    @classmethod
    def _check_aliases(cls, value: str, info: ValidationInfo) -> str:
        # Kept as the table's JSON, so a replica elsewhere needs no alias file.
        chars = info.data.get("max_model_name_chars")
        table = ModelAliases.parse(value, chars) if chars is not None else None
        return table.to_text() if table else ""

    def model_alias_table(self) -> ModelAliases:
        """``FLEET_MODEL_ALIASES`` as a lookup table (empty: no aliases)."""
        return ModelAliases.parse(self.model_aliases, self.max_model_name_chars)

    @field_validator("data_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        # FLEET_DATA_DIR=~/herd must not create a directory literally named "~".
        return value.expanduser()

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _numeric_keep_alive(cls, value: object) -> object:
        # Ollama reads a JSON string keep_alive as a Go duration ("5m"), so a bare
        # "-1" or "300" from the environment must be sent as a number of seconds.
        if isinstance(value, str):
            try:
                seconds = float(value)
            except ValueError:
                return value.strip()
            if not math.isfinite(seconds):
                raise ValueError("must be a duration such as 5m or a number of seconds")
            return seconds
        return value

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


def load_settings(**overrides: object) -> Settings:
    """Parse the env file and the environment once (``herd.env_file``: the file is
    ``<data dir>/env``, the environment wins over it, ``overrides`` over both); unknown
    ``FLEET_*`` names are logged with the closest setting; invalid values raise
    :class:`ConfigError` (one line)."""
    node_over = overrides.pop("node", None)
    env = env_file.from_environment(Settings)
    data_dir = overrides.get("data_dir") or env.get("data_dir") or _default_data_dir()
    path = env_file.env_path(Path(str(data_dir)).expanduser())
    env_file.warn_unknown(path, known_variables())
    try:
        if isinstance(node_over, NodeSettings):
            node = node_over
        else:
            in_file = env_file.from_file(
                NodeSettings, path, set_here=env_file.from_environment(NodeSettings)
            )
            given = node_over if isinstance(node_over, dict) else {}
            node = NodeSettings(**{**in_file, **given})
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, "FLEET_NODE_")) from None
    try:
        in_file = env_file.from_file(Settings, path, skip=("data_dir", "node"), set_here=env)
        settings = Settings(node=node, **{**in_file, **overrides})
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, "FLEET_")) from None
    if settings.heartbeat_offline < settings.heartbeat_timeout:
        raise ConfigError("FLEET_HEARTBEAT_OFFLINE must be >= FLEET_HEARTBEAT_TIMEOUT")
    return settings


def known_variables() -> set[str]:
    """Every settings variable name (``FLEET_*`` and ``FLEET_NODE_*``)."""
    return env_file.env_names(Settings, skip=("node",)) | env_file.env_names(NodeSettings)


def _one_line(exc: ValidationError, prefix: str) -> str:
    parts = []
    for err in exc.errors():
        loc = "_".join(str(p) for p in err["loc"]).upper()
        shown = "a secret" if "TOKEN" in loc or "KEYS" in loc else repr(err.get("input"))
        parts.append(f"{prefix}{loc}: {err['msg']} (got {shown})")
    return "invalid settings: " + "; ".join(parts)
