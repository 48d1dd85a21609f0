"""Media engines on this machine: cold import + load, then per-call time.

Each engine runs in a fresh child process (so its first call pays the real cold import
of torch / ctranslate2 and the model load), then repeats its call:

* embeddings: sentence-transformers MiniLM (``all-minilm:l6-v2``), 1 sentence;
* speech-to-text: faster-whisper tiny.en (``whisper:tiny.en``), ~3 s of espeak-ng speech;
* images: diffusers ``tiny-sd:random``, 64x64, default 2 steps;
* text to speech: Piper ``piper:en_US-joe-medium`` and ``espeak-ng``, one ~3 s sentence,
  as wav and as mp3 (the encoding's cost); ``rtf`` is the real-time factor, call time
  over audio length (below 1: faster than real time).

Prints a table, then one line of JSON (``{"bench": "media_engines", ...}``) last.

    python bench/media_engines.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENTENCE = "The router sends each request to the best machine in the fleet."
SPOKEN = "Please send the weather report to the kitchen before noon."


TTS = {"piper": "piper:en_US-joe-medium", "espeak-ng": "espeak-ng"}
TTS_ROWS = ("piper:wav", "piper:mp3", "espeak-ng:wav", "espeak-ng:mp3")


async def _measure(row: str, repeat: int, wav: str) -> dict[str, object]:
    from herd.backends.media_detect import detect_media_engines
    from herd.settings import load_settings

    engine_kind, _, fmt = row.partition(":")
    started = time.perf_counter()
    engines = detect_media_engines(load_settings(node={"engines": engine_kind}))
    detect_s = time.perf_counter() - started
    audio_s: list[float] = []
    if engine_kind in TTS:
        speaker = engines.tts_for(TTS[engine_kind])
        assert speaker is not None, f"{engine_kind}: run make setup / make system-deps"

        async def call() -> float:
            r = await speaker.synthesize(
                TTS[engine_kind], SPOKEN, voice="alloy", speed=1.0, response_format=fmt
            )
            audio_s.append(r.duration_s)
            return r.load_s
    elif engine_kind == "sentence-transformers":
        embedder = engines.embedding_for("all-minilm:l6-v2")
        assert embedder is not None

        async def call() -> float:
            return (await embedder.embed("all-minilm:l6-v2", [SENTENCE])).load_s
    elif engine_kind == "faster-whisper":
        whisper = engines.asr_for("whisper:tiny.en")
        assert whisper is not None
        audio = await asyncio.to_thread(Path(wav).read_bytes)

        async def call() -> float:
            r = await whisper.transcribe(
                "whisper:tiny.en", audio, filename="a.wav", language="en", prompt=None
            )
            return r.load_s
    else:
        painter = engines.image_for("tiny-sd:random")
        assert painter is not None

        async def call() -> float:
            r = await painter.generate(
                "tiny-sd:random", "a lighthouse", width=64, height=64, steps=None, seed=1,
                negative_prompt=None,
            )  # fmt: skip
            return r.load_s

    t0 = time.perf_counter()
    load_s = await call()
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t)
    await engines.close()
    rtf = round(statistics.median(times) / statistics.median(audio_s), 3) if audio_s else None
    return {
        "engine": row,
        "audio_s": round(statistics.median(audio_s), 2) if audio_s else None,
        "rtf_p50": rtf,
        "detect_ms": round(detect_s * 1000, 1),
        "import_and_load_s": round(load_s, 2),
        "first_call_s": round(first_s, 2),
        "call_p50_ms": round(statistics.median(times) * 1000, 1),
        "call_min_ms": round(min(times) * 1000, 1),
        "call_max_ms": round(max(times) * 1000, 1),
    }


def _child(engine_kind: str, repeat: int, wav: str) -> None:
    print(json.dumps(asyncio.run(_measure(engine_kind, repeat, wav))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--wav", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.repeat, args.wav)
        return
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("espeak-ng is not installed: apt-get install -y espeak-ng")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = str(Path(tmp) / "speech.wav")
        subprocess.run([espeak, "-w", wav, SPOKEN], check=True)
        for kind in ("sentence-transformers", "faster-whisper", "diffusers", *TTS_ROWS):
            out = subprocess.run(
                [sys.executable, __file__, "--child", kind, "--repeat", str(args.repeat),
                 "--wav", wav],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    head = f"{'engine':24} {'import+load s':>13} {'1st call s':>10} {'p50 ms':>8} {'min ms':>8}"
    print(f"{head} {'rtf':>6}")
    for r in rows:
        rtf = "" if r["rtf_p50"] is None else r["rtf_p50"]
        print(
            f"{r['engine']:24} {r['import_and_load_s']:>13} {r['first_call_s']:>10} "
            f"{r['call_p50_ms']:>8} {r['call_min_ms']:>8} {rtf:>6}"
        )
    print(json.dumps({"bench": "media_engines", "repeat": args.repeat, "engines": rows}))


if __name__ == "__main__":
    main()
