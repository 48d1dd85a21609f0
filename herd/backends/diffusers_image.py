"""Image generation with Hugging Face diffusers pipelines, in the node process.

Models:

- ``tiny-sd:random``: a real :class:`diffusers.StableDiffusionPipeline` (UNet, VAE, CLIP
  text encoder, CLIP BPE tokenizer, DDIM scheduler) built from tiny configs with weights
  initialised from a fixed seed. No download; its pictures are coloured noise, but every
  stage of a Stable Diffusion run happens, and a seed gives the same PNG in any process.
  Meant for tests and for checking a node end to end; ``FLEET_NODE_DIFFUSERS_TINY=false``
  hides it. Sizes: multiples of 8 from 64 to 512; default 2 steps.
- one model per ``from_pretrained`` directory (it has ``model_index.json``) under
  ``FLEET_NODE_DIFFUSERS_MODELS_DIR``, named after the directory (lower-cased), loaded
  with ``local_files_only`` onto CUDA in float16 when a GPU is present, else the CPU.
"""

from __future__ import annotations

import inspect
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herd.backends.media_engine_base import ImageJob, LocalImageEngine, Picture
from herd.backends.media_util import dir_size, has_module, hf_offline, model_dirs, modified_at
from herd.domain import ModelOnDisk

if TYPE_CHECKING:
    from herd.settings import Settings

TINY_SD_NAME = "tiny-sd:random"
TINY_SD_STEPS = 2
TINY_SD_MAX_SIDE = 512
_WEIGHT_SEED = 0  # fixed: the random weights are the same in every process


@dataclass(frozen=True, slots=True)
class DiffusersModel:
    name: str
    path: Path | None  # None: the tiny random pipeline
    size: int = 0
    modified_at: str = ""
    max_side: int = 2048
    default_steps: int | None = None  # None: the pipeline's own default
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)


def find_diffusers_models(models_dir: Path | None, *, tiny: bool) -> list[DiffusersModel]:
    found: list[DiffusersModel] = []
    if tiny:
        found.append(
            DiffusersModel(
                name=TINY_SD_NAME,
                path=None,
                max_side=TINY_SD_MAX_SIDE,
                default_steps=TINY_SD_STEPS,
            )
        )
    found.extend(
        DiffusersModel(
            name=sub.name.lower(), path=sub, size=dir_size(sub), modified_at=modified_at(sub)
        )
        for sub in model_dirs(models_dir, lambda sub: (sub / "model_index.json").is_file())
    )
    return found


def detect_diffusers_engine(settings: Settings) -> DiffusersImageEngine | None:
    if not all(has_module(m) for m in ("diffusers", "transformers", "torch")):
        return None
    models = find_diffusers_models(
        settings.node.diffusers_models_dir, tiny=settings.node.diffusers_tiny
    )
    if not models:
        return None
    return DiffusersImageEngine(models, timeout=settings.node.image_timeout)


# --------------------------------------------------------------------------- building


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2 / CLIP)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def tiny_clip_tokenizer() -> Any:
    """A CLIP BPE tokenizer over bytes only: 256 byte symbols, their end-of-word forms and
    the two specials (514 tokens, no merges). Real CLIP tokenisation rules, tiny vocab."""
    from transformers import CLIPTokenizer

    symbols = _byte_alphabet()
    vocab_list = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_sd() -> Any:
    """A StableDiffusionPipeline from tiny configs, weights seeded with ``_WEIGHT_SEED``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_WEIGHT_SEED)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                projection_dim=32,
                bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
                eos_token_id=eos,
                pad_token_id=eos,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        # Four VAE blocks: latents are 1/8 of the image, as in every Stable Diffusion.
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(32, 32, 32, 32),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            norm_num_groups=32,
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pretrained(path: Path) -> Any:
    """A diffusers pipeline from a local ``from_pretrained`` directory (no download)."""
    hf_offline()
    import torch
    from diffusers import DiffusionPipeline

    on_gpu = torch.cuda.is_available()
    pipe: Any = DiffusionPipeline.from_pretrained(
        str(path), local_files_only=True, torch_dtype=torch.float16 if on_gpu else torch.float32
    )
    pipe = pipe.to("cuda" if on_gpu else "cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load(entry: DiffusersModel) -> Any:
    hf_offline()
    return build_tiny_sd() if entry.path is None else load_pretrained(entry.path)


def _default_steps(pipe: Any, entry: DiffusersModel) -> int:
    if entry.default_steps is not None:
        return entry.default_steps
    param = inspect.signature(pipe.__call__).parameters.get("num_inference_steps")
    default = param.default if param is not None else None
    return default if isinstance(default, int) and default > 0 else 30


def _accepts(pipe: Any, name: str) -> bool:
    return name in inspect.signature(pipe.__call__).parameters


def _png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# --------------------------------------------------------------------------- engine


class DiffusersImageEngine(LocalImageEngine[DiffusersModel]):
    """An :class:`~herd.backends.media.ImageEngine` over diffusers pipelines."""

    kind = "diffusers"

    def model_on_disk(self, entry: DiffusersModel, name: str) -> ModelOnDisk:
        return ModelOnDisk(
            name=name,
            size=entry.size,
            family="diffusers",
            quantization_level="F32" if entry.path is None else "",
            modified_at=entry.modified_at,
            category="image",
        )

    def max_side(self, entry: DiffusersModel) -> int:
        return entry.max_side

    async def render(self, entry: DiffusersModel, job: ImageJob) -> Picture:
        def work() -> Picture:
            import torch

            pipe, load_s = self._store.get(entry.name, lambda: _load(entry), size=entry.size)
            n_steps = job.steps if job.steps is not None else _default_steps(pipe, entry)
            kwargs: dict[str, Any] = {
                "prompt": job.prompt,
                "height": job.height,
                "width": job.width,
                "num_inference_steps": n_steps,
                "generator": torch.Generator("cpu").manual_seed(job.seed),
            }
            if job.negative_prompt and _accepts(pipe, "negative_prompt"):
                kwargs["negative_prompt"] = job.negative_prompt
            with entry.lock:  # a pipeline's scheduler keeps per-run state
                image = pipe(**kwargs).images[0]
            return Picture(_png(image), job.width, job.height, n_steps, load_s)

        return await self.run(work, what=f"image generation with {entry.name}")
