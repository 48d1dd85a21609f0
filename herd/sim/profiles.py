"""Built-in device profiles and loading a profile from a JSON/YAML file.

Built-ins (see :func:`builtin_profile_names`):

* ``mac-studio``: 192 GiB unified memory, 4 parallel slots, a 70B model preloaded
  (12 tokens/s on the 70B, 25 on the 32B, 60 on the rest).
* ``gaming-pc``: 24 GiB of VRAM, the fastest generation, mid-size models.
* ``mac-mini``: 32 GiB, 2 slots, small and mid-size models.
* ``laptop``: 16 GiB, CPU only (``size_vram`` 0), slow, a short queue (8).
* ``instant``: a tiny chat model and a tiny embedding model, both preloaded, no
  delays at all, 64 slots: the baseline of the router overhead benchmark.

Every built-in can pull any model of :data:`CATALOGUE`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from herd.errors import ConfigError
from herd.sim.profile import GIB, SimModel, SimProfile


def _m(
    name: str, size: int, family: str, params: str, quant: str, ctx: int, *caps: str, **extra: Any
) -> SimModel:
    return SimModel.model_validate(
        {
            "name": name,
            "size": size,
            "family": family,
            "parameter_size": params,
            "quantization_level": quant,
            "context_length": ctx,
            "capabilities": caps or ("completion",),
            **extra,
        }
    )


_T = ("completion", "tools")
_TT = ("completion", "tools", "thinking")

CATALOGUE: dict[str, SimModel] = {
    m.key: m
    for m in (
        _m("llama3.3:70b", 42_520_413_916, "llama", "70.6B", "Q4_K_M", 131072, *_T),
        _m("qwen3:32b", 20_201_253_588, "qwen3", "32.8B", "Q4_K_M", 40960, *_TT),
        _m("qwen3:8b", 5_225_388_164, "qwen3", "8.2B", "Q4_K_M", 40960, *_TT),
        _m("qwen3:1.7b", 1_359_293_444, "qwen3", "2.0B", "Q4_K_M", 40960, *_TT),
        _m("llama3.2:3b", 2_019_393_189, "llama", "3.2B", "Q4_K_M", 131072, *_T),
        _m("llama3.2:1b", 1_321_098_329, "llama", "1.2B", "Q8_0", 131072, *_T),
        _m("gemma3:4b", 3_338_801_804, "gemma3", "4.3B", "Q4_K_M", 131072, "completion", "vision"),
        _m(
            "gemma3:12b", 8_149_190_253, "gemma3", "12.2B", "Q4_K_M", 131072, "completion", "vision"
        ),
        _m("mistral:7b", 4_113_301_824, "llama", "7.2B", "Q4_0", 32768, *_T),
        _m(
            "qwen2.5-coder:7b",
            4_683_087_332,
            "qwen2",
            "7.6B",
            "Q4_K_M",
            32768,
            "completion",
            "tools",
            "insert",
        ),
        _m(
            "deepseek-r1:14b",
            8_988_112_040,
            "qwen2",
            "14.8B",
            "Q4_K_M",
            131072,
            "completion",
            "thinking",
        ),
        _m("phi4:14b", 9_053_116_391, "phi3", "14.7B", "Q4_K_M", 16384),
        _m(
            "nomic-embed-text:latest",
            274_302_450,
            "nomic-bert",
            "137M",
            "F16",
            2048,
            "embedding",
            embedding_length=768,
        ),
        _m(
            "mxbai-embed-large:latest",
            669_615_493,
            "bert",
            "334M",
            "F16",
            512,
            "embedding",
            embedding_length=1024,
        ),
        _m(
            "all-minilm:latest",
            45_960_996,
            "bert",
            "23M",
            "F16",
            512,
            "embedding",
            embedding_length=384,
        ),
        _m("smollm2:135m", 270_898_672, "llama", "134.52M", "F16", 8192, *_T),
    )
}


def _pick(*names: str) -> list[SimModel]:
    return [CATALOGUE[n if ":" in n else f"{n}:latest"] for n in names]


def _speed(model: SimModel, tokens_per_s: float, prompt_tokens_per_s: float) -> SimModel:
    """The same model, slower on this node (large models generate fewer tokens/s)."""
    return model.model_copy(
        update={"tokens_per_s": tokens_per_s, "prompt_tokens_per_s": prompt_tokens_per_s}
    )


def _registry() -> list[SimModel]:
    return list(CATALOGUE.values())


def mac_studio() -> SimProfile:
    return SimProfile(
        name="mac-studio",
        description="Mac Studio M2 Ultra, 192 GiB unified memory",
        memory_bytes=192 * GIB,
        tokens_per_s=60.0,
        prompt_tokens_per_s=900.0,
        load_bytes_per_s=4e9,
        pull_bytes_per_s=1e9,
        num_parallel=4,
        max_loaded_models=4,
        models=[
            _speed(CATALOGUE["llama3.3:70b"], 12.0, 150.0),
            _speed(CATALOGUE["qwen3:32b"], 25.0, 300.0),
            *_pick("qwen3:8b", "llama3.2:3b", "gemma3:12b", "nomic-embed-text"),
        ],
        preload=["llama3.3:70b"],
        registry=_registry(),
    )


def gaming_pc() -> SimProfile:
    return SimProfile(
        name="gaming-pc",
        description="Desktop with an RTX 4090 (24 GiB VRAM)",
        memory_bytes=24 * GIB,
        tokens_per_s=120.0,
        prompt_tokens_per_s=3000.0,
        load_bytes_per_s=2.5e9,
        pull_bytes_per_s=500e6,
        num_parallel=2,
        models=_pick("qwen3:8b", "llama3.2:3b", "gemma3:12b", "mistral:7b", "nomic-embed-text"),
        registry=_registry(),
    )


def mac_mini() -> SimProfile:
    return SimProfile(
        name="mac-mini",
        description="Mac mini M4 Pro, 32 GiB unified memory",
        memory_bytes=32 * GIB,
        tokens_per_s=35.0,
        prompt_tokens_per_s=400.0,
        load_bytes_per_s=1.5e9,
        pull_bytes_per_s=500e6,
        num_parallel=2,
        models=_pick("llama3.2:3b", "qwen3:8b", "gemma3:4b", "nomic-embed-text"),
        preload=["llama3.2:3b"],
        registry=_registry(),
    )


def laptop() -> SimProfile:
    return SimProfile(
        name="laptop",
        description="Laptop, 16 GiB RAM, CPU inference",
        memory_bytes=16 * GIB,
        gpu_offload=0.0,
        tokens_per_s=12.0,
        prompt_tokens_per_s=80.0,
        load_bytes_per_s=8e8,
        pull_bytes_per_s=200e6,
        num_parallel=1,
        max_queue=8,
        max_loaded_models=2,
        models=_pick("llama3.2:3b", "llama3.2:1b", "qwen3:1.7b", "nomic-embed-text"),
        registry=_registry(),
    )


def instant() -> SimProfile:
    return SimProfile(
        name="instant",
        description="No delays at all: the router overhead benchmark baseline",
        memory_bytes=8 * GIB,
        tokens_per_s=0.0,
        prompt_tokens_per_s=0.0,
        load_bytes_per_s=0.0,
        instant=True,
        num_parallel=64,
        max_queue=4096,
        keep_alive=-1,
        models=_pick("smollm2:135m", "all-minilm"),
        preload=["smollm2:135m", "all-minilm"],
        registry=_registry(),
    )


BUILTIN_PROFILES: dict[str, Callable[[], SimProfile]] = {
    "mac-studio": mac_studio,
    "gaming-pc": gaming_pc,
    "mac-mini": mac_mini,
    "laptop": laptop,
    "instant": instant,
}


def builtin_profile_names() -> list[str]:
    return sorted(BUILTIN_PROFILES)


def builtin_profile(name: str) -> SimProfile:
    """A fresh copy of a built-in profile; ``ConfigError`` for an unknown name."""
    try:
        return BUILTIN_PROFILES[name]()
    except KeyError:
        known = ", ".join(builtin_profile_names())
        raise ConfigError(f"unknown sim profile {name!r} (built-ins: {known})") from None


def profile_from_dict(data: dict[str, Any]) -> SimProfile:
    """Validate a profile dict; an ``extends: NAME`` key starts from that built-in."""
    data = dict(data)
    base = data.pop("extends", None)
    if base is not None:
        merged = builtin_profile(str(base)).model_dump()
        merged.update(data)
        data = merged
    try:
        return SimProfile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "profile"
        raise ConfigError(f"invalid sim profile: {where}: {first['msg']}") from None


def load_profile(name_or_path: str | Path) -> SimProfile:
    """A built-in profile by name, or a profile read from a ``.json``/``.yaml`` file."""
    text_name = str(name_or_path)
    if text_name in BUILTIN_PROFILES:
        return builtin_profile(text_name)
    path = Path(name_or_path)
    if not path.is_file():
        known = ", ".join(builtin_profile_names())
        raise ConfigError(f"sim profile {text_name!r} is neither a built-in ({known}) nor a file")
    raw = path.read_text(encoding="utf-8")
    try:
        data = json.loads(raw) if path.suffix.lower() == ".json" else yaml.safe_load(raw)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot parse sim profile {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"sim profile {path} must be a mapping")
    return profile_from_dict(data)
