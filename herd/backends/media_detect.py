"""Which media engines this device has: :func:`detect_media_engines` (never raises).

Cheap: importability is checked with ``find_spec`` and binaries with ``shutil.which``;
no torch import and no model load (that happens on an engine's first use). Each engine
module is imported only when its name is wanted (``FLEET_NODE_ENGINES``).
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable
from typing import Literal

from herd.backends.media import (
    AsrEngine,
    E,
    EmbeddingEngine,
    ImageEngine,
    MediaEngines,
    TtsEngine,
    wanted_engines,
)
from herd.settings import Settings

log = logging.getLogger(__name__)


def detect_media_engines(settings: Settings) -> MediaEngines:
    """Find the media engines installed on this device; never raises.

    Cheap: it checks importability with find_spec and binaries with shutil.which, and
    lists model files; no torch import, no model load (that happens on first use).
    """
    found = MediaEngines()
    for name in wanted_engines(settings.node.engines):
        if name == "sentence-transformers":
            _add(found.embedding, name, _detect_st, settings)
        elif name == "faster-whisper":
            _add(found.asr, name, _detect_whisper, settings)
        elif name == "diffusers":
            _add(found.image, name, _detect_diffusers, settings)
        elif name == "qwen3-asr":
            _add(found.asr, name, _detect_mac_asr, settings)
        elif name == "piper":
            _add(found.tts, name, _detect_piper, settings)
        elif name == "espeak-ng":
            _add(found.tts, name, _detect_espeak, settings)
        else:
            _add(found.image, name, _detect_mac_image(name), settings)
    return found


def _add(into: list[E], name: str, detect: Callable[[Settings], E | None], s: Settings) -> None:
    try:
        engine = detect(s)
    except Exception as exc:  # a broken install must not stop the node
        log.warning("media engine %s not usable: %s", name, exc)
        return
    if engine is None:
        return
    if not engine.models():
        log.info("media engine %s is installed but has no models", name)
        return
    into.append(engine)


def _detect_st(settings: Settings) -> EmbeddingEngine | None:
    from herd.backends.st_embed import detect_st_engine

    return detect_st_engine(settings)


def _detect_whisper(settings: Settings) -> AsrEngine | None:
    from herd.backends.whisper_asr import detect_whisper_engine

    return detect_whisper_engine(settings)


def _detect_diffusers(settings: Settings) -> ImageEngine | None:
    from herd.backends.diffusers_image import detect_diffusers_engine

    return detect_diffusers_engine(settings)


def _detect_piper(settings: Settings) -> TtsEngine | None:
    from herd.backends.tts_piper import detect_piper_engine

    return detect_piper_engine(settings)


def _detect_espeak(settings: Settings) -> TtsEngine | None:
    from herd.backends.tts_espeak import detect_espeak_engine

    return detect_espeak_engine(settings)


def _detect_mac_asr(settings: Settings) -> AsrEngine | None:
    from herd.backends.mac_engines import detect_mac_asr

    return detect_mac_asr(settings, platform=sys.platform, which=shutil.which)


def _detect_mac_image(
    tool: Literal["mflux", "diffusionkit"],
) -> Callable[[Settings], ImageEngine | None]:
    def detect(settings: Settings) -> ImageEngine | None:
        from herd.backends.mac_engines import detect_mac_image

        return detect_mac_image(tool, settings, platform=sys.platform, which=shutil.which)

    return detect
