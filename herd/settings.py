"""One settings object, parsed once at the edge (CLI / actor start) and passed down.

Variables follow the seed: ``FLEET_*`` for the router, ``FLEET_NODE_*`` for a node.
Nothing reads the environment at import time; call :func:`load_settings`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from herd.errors import ConfigError
from herd.model_names import ModelAliases

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
    disk_bytes: int | None = Field(
        default=None,
        gt=0,
        description="Disk herd may fill with models on this device, instead of the free space "
        "where the models live (emulated devices report their profile's)",
    )
    pull_stall_timeout: float = Field(
        default=600.0,
        gt=0,
        description="A pull with no progress line for this long is stopped (seconds; a pull "
        "has no total limit)",
    )
    pull_reserve_bytes: int = Field(
        default=2 * 1024**3,
        ge=0,
        description="Disk a pull must leave free on the device; also the least free disk a "
        "pull of a model of unknown size needs",
    )
    connect_timeout: float = Field(default=5.0, gt=0)
    probe_timeout: float = Field(default=2.0, gt=0)
    engines: str = Field(
        default="auto",
        description=(
            "Media engines to detect: auto, off, or a comma list of sentence-transformers, "
            "faster-whisper, diffusers, mflux, diffusionkit, qwen3-asr, piper, espeak-ng"
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
    tts_timeout: float = Field(
        default=120.0, gt=0, description="One text-to-speech synthesis, encoding included (seconds)"
    )
    piper_voices_dir: Path | None = Field(
        default=None, description="Directory of Piper voices (<voice>.onnx with <voice>.onnx.json)"
    )

    @field_validator("ollama_host")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator(
        "llamacpp_model_path",
        "embed_models_dir",
        "whisper_models_dir",
        "diffusers_models_dir",
        "piper_voices_dir",
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
            "piper",
            "espeak-ng",
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
    trace_retention_days: int = Field(
        default=30,
        ge=0,
        description="Days of request traces and latency observations kept; older ones are "
        "deleted by the router hourly, in small batches, and the SQLite file shrinks "
        "(0: keep forever; benchmark runs are always kept)",
    )
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
        "name -> key); when set, every /v1/* and /api/* route but / and /api/version needs "
        "one (Authorization: Bearer or x-api-key); the key's name is traced as tag key:NAME",
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
        description="Host header names allowed besides IP addresses, localhost, *.localhost "
        "and this machine's names; comma list, *.suffix wildcards, * allows any",
    )
    pull_registries: str = Field(
        default="registry.ollama.ai",
        description="Registries pulls may fetch from (comma list; a bare model name is "
        "registry.ollama.ai's)",
    )
    # --- bounds: each refused with 400/413 in the client's dialect before any node -----
    dashboard_max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Body limit of the dashboard's API and callbacks"
    )
    max_model_name_chars: int = Field(default=200, ge=8, le=1000)
    max_tags: int = Field(default=16, ge=0, le=256, description="Tags per request")
    max_tag_chars: int = Field(default=64, ge=1, le=1000)
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

    @field_validator("data_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("admin_token", "metrics_token")
    @classmethod
    def _long_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
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


def parse_api_keys(text: str) -> list[tuple[str, str]]:
    """``name:key,name2:key2`` or a JSON object ``{"name": "key"}`` -> (name, key) pairs.
    Names are short words (they become trace tags); keys are at least 16 characters."""
    text = text.strip()
    pairs: list[tuple[str, str]]
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError("is not a valid JSON object of name -> key") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError("must map each name to a key string")
        pairs = [(str(k).strip(), v.strip()) for k, v in data.items()]
    else:
        pairs = []
        for part in text.split(","):
            name, sep, key = part.strip().partition(":")
            if not sep:
                raise ValueError("each entry must be name:key")
            pairs.append((name.strip(), key.strip()))
    seen: set[str] = set()
    for name, key in pairs:
        if not _KEY_NAME.fullmatch(name):
            raise ValueError(f"key name {name!r} must be 1-32 letters, digits, '-', '_' or '.'")
        if len(key) < 16:
            raise ValueError(f"the key named {name!r} must be at least 16 characters")
        if key in seen:
            raise ValueError(f"the key named {name!r} is used twice")
        seen.add(key)
    return pairs


_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


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
        shown = "a secret" if "TOKEN" in loc or "KEYS" in loc else repr(err.get("input"))
        parts.append(f"{prefix}{loc}: {err['msg']} (got {shown})")
    return "invalid settings: " + "; ".join(parts)
