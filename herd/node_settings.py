"""Per-device settings (``FLEET_NODE_*``): what one node runs and where its models live.

Parsed by :func:`herd.settings.load_settings` into ``Settings.node``; nothing reads the
environment at import time. ``ENGINE_NAMES`` is the one list of media engine names (the
``FLEET_NODE_ENGINES`` vocabulary, detected in ``herd/backends/media_detect.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EngineName = Literal[
    "sentence-transformers",
    "faster-whisper",
    "diffusers",
    "mflux",
    "diffusionkit",
    "qwen3-asr",
    "piper",
    "espeak-ng",
]
ENGINE_NAMES: tuple[EngineName, ...] = get_args(EngineName)


class NodeSettings(BaseSettings):
    """Per-device settings (``FLEET_NODE_*``)."""

    model_config = SettingsConfigDict(env_prefix="FLEET_NODE_", extra="forbid")

    name: str | None = Field(default=None, description="Node id; defaults to the hostname")
    ollama_host: str = Field(default="http://localhost:11434", description="Local Ollama URL")
    remote: bool = Field(
        default=False,
        description="The Ollama is on another machine that runs no Ray (`herd add-node`): this "
        "machine's CPU, memory, disk and owner signals are not reported for it",
    )
    llamacpp: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Start the packaged llama.cpp server when no Ollama answers (auto)",
    )
    llamacpp_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="TCP port of the packaged llama.cpp server (0 picks a free one)",
    )
    data_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="TCP port of this node's HTTP data plane (0 picks a free one); open it "
        "to the Ray head in the firewall",
    )
    llamacpp_model_path: Path | None = Field(
        default=None,
        description="The GGUF the packaged llama.cpp server serves, named after its file "
        "(unset: smollm2:135m's; the packaged gemma-3-270m-q4_k_m.gguf is served as "
        "gemma3:270m)",
    )
    num_parallel: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Requests the node runs at once per model: its Ollama's OLLAMA_NUM_PARALLEL",
    )
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
    connect_timeout: float = Field(
        default=5.0, gt=0, description="TCP connect to the local backend (seconds)"
    )
    probe_timeout: float = Field(
        default=2.0,
        gt=0,
        description="One health probe of the local backend, each heartbeat (seconds)",
    )
    engines: str = Field(
        default="auto",
        description="Media engines to detect: auto, off, or a comma list of "
        + ", ".join(ENGINE_NAMES),
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
    enable_capacity_learning: bool = Field(
        default=False,
        description="Learn the owner's week (168 hourly slots in <data dir>/capacity/<node>.json) "
        "and report availability, a memory ceiling and hard pauses: camera or microphone in "
        "use, or the file <data dir>/capacity/<node>.meeting (the owner's own switch); "
        "battery at 20 % or less",
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
        names = [p.strip() for p in value.split(",") if p.strip()]
        unknown = [n for n in names if n not in ENGINE_NAMES]
        if unknown:
            known = ", ".join(ENGINE_NAMES)
            raise ValueError(f"unknown engine(s) {', '.join(unknown)}; known: {known}")
        return ",".join(names)
