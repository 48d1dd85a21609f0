"""The simulated fleet of ``bench/fleet.py``: six emulated devices and three model sizes.

Speeds are "real-world" numbers (tokens/s per model and device, model load bandwidth);
:func:`fleet_profiles` multiplies every rate by ``time_scale`` so a run takes
``1 / time_scale`` of the wall time the same fleet would take for real. Generation speed
per model follows memory bandwidth: ``tokens/s ~ effective bandwidth / model size``,
capped for tiny models; prompt evaluation runs ``prefill`` times faster than generation.
The emulators stream ``CHUNK_TOKENS`` tokens per chunk after the first one: every token
is still due at its own time (TTFT and latency are unchanged), at a fraction of the CPU.

========== ======= ======== ================= ======================= ============
node       memory  parallel on disk           loaded at start         notes
========== ======= ======== ================= ======================= ============
studio     192 GiB 4        small medium large large                  big, steady
gaming-pc  24 GiB  2        small medium large medium                 fastest GPU
mac-mini   32 GiB  2        small medium large small                  large is slow
macbook    36 GiB  2        small medium large (none)                 large crawls
mini-pc    12 GiB  1        small medium      small                   small GPU
laptop     16 GiB  1        small medium      (none)                  CPU only
========== ======= ======== ================= ======================= ============
"""

from __future__ import annotations

from dataclasses import dataclass

from herd.sim.profile import GIB, SimModel, SimProfile

SMALL = "llama3.2:1b"
MEDIUM = "qwen3:8b"
LARGE = "qwen3:32b"
MODEL_SIZES: dict[str, int] = {
    SMALL: 1_321_098_329,
    MEDIUM: 5_225_388_164,
    LARGE: 20_201_253_588,
}
MAX_TOKENS = 512  # longest answer a workload asks for (``num_predict`` caps each one)
CHUNK_TOKENS = 8  # tokens per streamed chunk after the first: same timing, 1/8 of the CPU


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device at real-world speed."""

    name: str
    memory_gib: int
    num_parallel: int
    bandwidth_gb_s: float  # effective memory bandwidth for generation
    max_tokens_s: float  # cap for tiny models (compute bound)
    prefill: float  # prompt tokens/s as a multiple of generation tokens/s
    load_gb_s: float  # disk -> memory
    models: tuple[str, ...]
    preload: tuple[str, ...] = ()
    max_loaded_models: int = 3

    def tokens_per_s(self, model: str) -> float:
        return min(self.max_tokens_s, self.bandwidth_gb_s * 1e9 / MODEL_SIZES[model])


DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec("studio", 192, 4, 500, 160, 10, 4.0, (SMALL, MEDIUM, LARGE), (LARGE,)),
    DeviceSpec("gaming-pc", 24, 2, 700, 220, 25, 3.0, (SMALL, MEDIUM, LARGE), (MEDIUM,)),
    DeviceSpec("mac-mini", 32, 2, 200, 120, 8, 1.5, (SMALL, MEDIUM, LARGE), (SMALL,)),
    DeviceSpec("macbook", 36, 2, 110, 90, 8, 2.0, (SMALL, MEDIUM, LARGE)),
    DeviceSpec("mini-pc", 12, 1, 250, 150, 15, 2.0, (SMALL, MEDIUM), (SMALL,)),
    DeviceSpec("laptop", 16, 1, 40, 30, 4, 0.8, (SMALL, MEDIUM), max_loaded_models=2),
)
DEATH_NODE = "studio"  # the node that dies in the node-death workload


def _model(name: str, tokens_s: float, prompt_s: float) -> SimModel:
    return SimModel(
        name=name,
        size=MODEL_SIZES[name],
        family=name.split(":")[0],
        parameter_size=name.split(":")[1].upper(),
        context_length=32768,
        capabilities=("completion", "tools"),  # no thinking: answers are num_predict long
        tokens_per_s=tokens_s,
        prompt_tokens_per_s=prompt_s,
    )


def device_profile(
    spec: DeviceSpec, time_scale: float, chunk_tokens: int = CHUNK_TOKENS
) -> SimProfile:
    """The emulator profile of ``spec`` with every rate multiplied by ``time_scale``."""
    models = []
    for name in spec.models:
        tokens = spec.tokens_per_s(name) * time_scale
        models.append(_model(name, tokens, tokens * spec.prefill))
    return SimProfile(
        name=spec.name,
        description=f"bench/fleet.py device ({spec.memory_gib} GiB), time x{time_scale:g}",
        memory_bytes=spec.memory_gib * GIB,
        tokens_per_s=spec.max_tokens_s * time_scale,
        prompt_tokens_per_s=spec.max_tokens_s * spec.prefill * time_scale,
        load_bytes_per_s=spec.load_gb_s * 1e9 * time_scale,
        num_parallel=spec.num_parallel,
        max_loaded_models=spec.max_loaded_models,
        keep_alive="5m",  # herd sends keep_alive -1 on routed requests anyway
        response_tokens=MAX_TOKENS,
        stream_chunk_tokens=chunk_tokens,
        models=models,
        preload=list(spec.preload),
    )


def fleet_profiles(time_scale: float, chunk_tokens: int = CHUNK_TOKENS) -> list[SimProfile]:
    return [device_profile(spec, time_scale, chunk_tokens) for spec in DEVICES]


def describe_fleet() -> list[str]:
    """One line per device with its real-world speeds (for the bench's header)."""
    lines = []
    for d in DEVICES:
        speeds = ", ".join(f"{m} {d.tokens_per_s(m):.0f} tok/s" for m in d.models)
        preload = ",".join(d.preload) or "-"
        lines.append(
            f"{d.name:<10} {d.memory_gib:>3} GiB  parallel {d.num_parallel}  "
            f"load {d.load_gb_s:>3g} GB/s  loaded {preload:<12} {speeds}"
        )
    return lines
