"""One settings object, parsed once at the edge (CLI / actor start) and passed down.

Variables follow the seed: ``FLEET_*`` for the router, ``FLEET_NODE_*`` for a node.
Nothing reads the environment at import time; call :func:`load_settings`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
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
    router_url: str | None = Field(
        default=None, description="Ray head address to join (skips discovery)"
    )
    enable_capacity_learning: bool = False
    llamacpp: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Start the packaged llama.cpp server when no Ollama answers (auto)",
    )
    llamacpp_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    llamacpp_model_path: Path | None = None
    num_parallel: int = Field(default=1, ge=1, le=64, description="OLLAMA_NUM_PARALLEL")
    request_timeout: float = Field(default=600.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    probe_timeout: float = Field(default=2.0, gt=0)

    @field_validator("ollama_host")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("llamacpp_model_path")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


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
    serve_proxy: Literal["haproxy", "default"] = "haproxy"
    data_plane: Literal["ray", "http"] = Field(
        default="ray",
        description=(
            "How the ingress reaches a node for tokens: 'ray' (actor streaming generator) "
            "or 'http' (each NodeActor serves NDJSON over aiohttp on its Ray node IP; "
            "saves ~2 ms per request)"
        ),
    )
    node: NodeSettings = Field(default_factory=NodeSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

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
        parts.append(f"{prefix}{loc}: {err['msg']} (got {err.get('input')!r})")
    return "invalid settings: " + "; ".join(parts)
