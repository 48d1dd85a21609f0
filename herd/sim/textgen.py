"""Deterministic "model output": tokens, answers, thinking, JSON, tool calls, vectors.

Everything is seeded by ``(model, prompt, options.seed)``: the same request gives
the same answer on every node (``temperature`` and friends are accepted and
ignored), a different ``seed`` gives a different answer.

A *token* is a word or a punctuation mark (``\\w+|[^\\w\\s]``); streamed pieces
carry their leading space, so joining the pieces gives the text.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from herd.sim.structured import (
    WORDS,
    json_mode_value,
    pick_tool,
    schema_value,
    tool_arguments,
    tool_call_id,
)

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_PIECE_RE = re.compile(r"\s*(?:\w+|\S)")
VOCAB_SIZE = 128256
THINK_TOKENS: dict[str, int] = {"low": 8, "medium": 16, "true": 16, "high": 32, "max": 48}


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def token_ids(tokens: Sequence[str]) -> list[int]:
    """Stable fake vocabulary ids (used for ``context``)."""
    return [zlib.crc32(t.strip().encode()) % VOCAB_SIZE for t in tokens]


def rng_for(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def split_pieces(text: str) -> list[str]:
    """Stream pieces of an exact text (JSON output): joining them gives ``text`` back."""
    return _PIECE_RE.findall(text)


def prose(rng: random.Random, n: int) -> list[str]:
    """``n`` pieces of sentence-like text, ending with a full stop when n > 1."""
    if n <= 1:
        return [rng.choice(WORDS).capitalize()]
    pieces: list[str] = []
    left = rng.randint(5, 11)
    capital = True
    while len(pieces) < n - 1:
        word = rng.choice(WORDS)
        if capital:
            word, capital = word.capitalize(), False
        pieces.append(word if not pieces else " " + word)
        left -= 1
        if left == 0 and len(pieces) < n - 4:
            pieces.append(".")
            left, capital = rng.randint(5, 11), True
    pieces.append(".")
    return pieces


def thinking_pieces(rng: random.Random, level: str) -> list[str]:
    n = THINK_TOKENS.get(level, 16)
    head = ["Okay", ",", " let", " me", " think", " about", " this", "."]
    if n <= len(head):
        return head[:n]
    rest = prose(rng, n - len(head))
    rest[0] = " " + rest[0]
    return head + rest


@dataclass(frozen=True, slots=True)
class Completion:
    """Everything a request will produce, decided before the first token is sent."""

    thinking: tuple[str, ...]
    content: tuple[str, ...]
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_tokens: int = 0
    done_reason: str = "stop"

    @property
    def eval_count(self) -> int:
        return len(self.thinking) + len(self.content) + self.tool_tokens

    @property
    def text(self) -> str:
        return "".join(self.content)

    @property
    def thinking_text(self) -> str:
        return "".join(self.thinking)


def plan_completion(
    *,
    model: str,
    prompt: str,
    seed: object,
    n_tokens: tuple[int, int],
    fmt: str | Mapping[str, Any] | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    last_user: str | None = None,
    think: str | None = None,
    num_predict: int | None = None,
    stop: Sequence[str] = (),
) -> Completion:
    """Decide the answer. ``think`` is a level ("true", "low"...) or None for no thinking."""
    rng = rng_for(model, prompt, seed)
    n = rng.randint(*n_tokens) if n_tokens[1] > n_tokens[0] else n_tokens[0]
    thinking = thinking_pieces(rng, think) if think else []
    calls: list[dict[str, Any]] = []
    fn = pick_tool(tools, last_user) if tools and last_user is not None else None
    if fn is not None and last_user is not None:
        args = tool_arguments(fn, last_user, rng)
        call = {"index": 0, "name": fn["name"], "arguments": args}
        calls.append({"id": tool_call_id(rng), "function": call})
    if calls:
        content: list[str] = []
    elif fmt == "json":
        content = split_pieces(json.dumps(json_mode_value(rng, prose(rng, 6)[:-1])))
    elif isinstance(fmt, Mapping):
        content = split_pieces(json.dumps(schema_value(fmt, rng)))
    else:
        content = prose(rng, n)
    tool_tokens = sum(count_tokens(json.dumps(c["function"])) for c in calls)
    if stop:
        content = cut_at_stop(content, stop)
    reason = "stop"
    if num_predict is not None and num_predict > 0:
        budget = num_predict
        if len(thinking) + len(content) + tool_tokens > budget:
            reason = "length"
            thinking = thinking[:budget]
            budget -= len(thinking)
            if calls and tool_tokens > budget:
                calls, tool_tokens = [], 0
            content = content[: max(0, budget - tool_tokens)]
    return Completion(tuple(thinking), tuple(content), tuple(calls), tool_tokens, reason)


def cut_at_stop(pieces: list[str], stops: Sequence[str]) -> list[str]:
    """Pieces up to (not including) the first occurrence of any stop sequence."""
    text = "".join(pieces)
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    if not hits:
        return pieces
    end = min(hits)
    out: list[str] = []
    pos = 0
    for piece in pieces:
        if pos + len(piece) > end:
            if end > pos:
                out.append(piece[: end - pos])
            break
        out.append(piece)
        pos += len(piece)
    return out


def _normalise(vec: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vec))
    return [x / norm for x in vec] if norm > 0 else vec


def embed_vector(model: str, text: str, dims: int, truncate_to: int | None = None) -> list[float]:
    """A deterministic L2-normalised vector: dense noise seeded by the text plus hashed
    word features, so texts sharing words have a higher cosine similarity."""
    rng = rng_for("embed", model, text)
    vec = [rng.gauss(0.0, 0.3) for _ in range(dims)]
    for word in tokenize(text.lower()):
        for k in range(4):
            h = zlib.crc32(f"{model}\x00{word}\x00{k}".encode())
            vec[h % dims] += 1.0 if (h >> 20) & 1 else -1.0
    if truncate_to is not None and 0 < truncate_to < dims:
        vec = vec[:truncate_to]
    return _normalise(vec)


def legacy_embedding(model: str, text: str, dims: int) -> list[float]:
    """``/api/embeddings``: same direction as :func:`embed_vector`, but not normalised."""
    scale = 8.0 + rng_for("norm", model, text).random() * 16.0
    return [x * scale for x in embed_vector(model, text, dims)]
