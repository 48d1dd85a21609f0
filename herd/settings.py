"""One settings object, parsed once at the edge (CLI / actor start) and passed down.

Variables follow the seed: ``FLEET_*`` for the router, ``FLEET_NODE_*`` for a node.
Nothing reads the environment at import time; call :func:`load_settings`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from herd.errors import ConfigError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _default_data_dir() -> Path:
    return Path.home() / ".fleet-manager"


class NodeSettings(BaseSettings):
    """Per-device settings (``FLEET_NODE_*``)."""

    model_config = SettingsConfigDict(env_prefix="FLEET_NODE_", extra="forbid")

    name: str | None = Field(default=None, description="Node id; defaults to the hostname")
    ollama_host: str = Field(default="http://localhost:11434", description="Local Ollama URL")
    llamacpp: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Start the packaged llama.cpp server when no Ollama answers (auto)",
    )
    llamacpp_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    data_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="TCP port of this node's HTTP data plane (0 picks a free one); open it "
        "to the Ray head in the firewall",
    )
    llamacpp_model_path: Path | None = None
    num_parallel: int = Field(default=1, ge=1, le=64, description="OLLAMA_NUM_PARALLEL")
    memory_bytes: int | None = Field(
        default=None,
        gt=0,
        description="Memory herd may fill with models on this device, instead of what the OS "
        "reports (reserve room for other work; emulated devices report their profile's)",
    )
    request_timeout: float = Field(default=600.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    probe_timeout: float = Field(default=2.0, gt=0)
    engines: str = Field(
        default="auto",
        description=(
            "Media engines to detect: auto, off, or a comma list of sentence-transformers, "
            "faster-whisper, diffusers, mflux, diffusionkit, qwen3-asr"
        ),
    )
    embed_models_dir: Path | None = Field(
        default=None, description="Directory of sentence-transformers model directories"
    )
    whisper_models_dir: Path | None = Field(
        default=None, description="Directory of faster-whisper (CTranslate2) model directories"
    )
    diffusers_models_dir: Path | None = Field(
        default=None, description="Directory of diffusers from_pretrained pipeline directories"
    )
    diffusers_tiny: bool = Field(
        default=True, description="Expose tiny-sd:random (random weights, for tests)"
    )
    image_timeout: float = Field(default=600.0, gt=0, description="One image job (seconds)")
    asr_timeout: float = Field(default=600.0, gt=0, description="One transcription (seconds)")

    @field_validator("ollama_host")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator(
        "llamacpp_model_path", "embed_models_dir", "whisper_models_dir", "diffusers_models_dir"
    )
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("engines")
    @classmethod
    def _known_engines(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "off", "none", ""):
            return value
        known = (
            "sentence-transformers",
            "faster-whisper",
            "diffusers",
            "mflux",
            "diffusionkit",
            "qwen3-asr",
        )
        names = [p.strip() for p in value.split(",") if p.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown engine(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return ",".join(names)


class Settings(BaseSettings):
    """Router and fleet settings (``FLEET_*``); ``node`` holds ``FLEET_NODE_*``."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="forbid")

    port: int = Field(default=11435, ge=1, le=65535)
    host: str = "0.0.0.0"
    heartbeat_interval: float = Field(default=5.0, gt=0)
    heartbeat_timeout: float = Field(default=15.0, gt=0)
    heartbeat_offline: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    log_level: LogLevel = "DEBUG"
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    ray_address: str = "auto"
    ray_connect_timeout: float = Field(default=15.0, gt=0)
    holding_queue_timeout: float = Field(default=30.0, ge=0)
    first_chunk_timeout: float = Field(default=300.0, gt=0)
    chunk_timeout: float = Field(default=120.0, gt=0)
    actor_call_timeout: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    keep_alive: float | str = Field(default=-1, description="keep_alive added to routed requests")
    score_thermal_hot: float = 50.0
    score_queue_penalty: float = 30.0
    score_queue_step: float = 10.0
    # The rest of the seed's signals (herd/scoring/signals.py documents each one's range).
    score_thermal_warm: float = Field(default=25.0, description="recently unloaded model")
    score_thermal_disk: float = Field(default=5.0, description="model on disk only")
    score_warm_window: float = Field(default=600.0, ge=0, description="seconds 'warm' lasts")
    score_memory_fit: float = 20.0
    score_latency_penalty: float = 25.0
    score_role_affinity: float = 15.0
    score_availability: float = 10.0
    score_context_fit: float = 15.0
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
    serve_proxy: Literal["haproxy", "default"] = "haproxy"
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
    node: NodeSettings = Field(default_factory=NodeSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("data_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

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
    """Parse the environment once; invalid values raise :class:`ConfigError` (one line)."""
    node_over = overrides.pop("node", None)
    try:
        if isinstance(node_over, NodeSettings):
            node = node_over
        elif isinstance(node_over, dict):
            node = NodeSettings(**node_over)
        else:
            node = NodeSettings()
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, "FLEET_NODE_")) from None
    try:
        settings = Settings(node=node, **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, "FLEET_")) from None
    if settings.heartbeat_offline < settings.heartbeat_timeout:
        raise ConfigError("FLEET_HEARTBEAT_OFFLINE must be >= FLEET_HEARTBEAT_TIMEOUT")
    return settings


def _one_line(exc: ValidationError, prefix: str) -> str:
    parts = []
    for err in exc.errors():
        loc = "_".join(str(p) for p in err["loc"]).upper()
        shown = "a secret" if "TOKEN" in loc else repr(err.get("input"))
        parts.append(f"{prefix}{loc}: {err['msg']} (got {shown})")
    return "invalid settings: " + "; ".join(parts)
