"""The rules of one request's attempts: which failures go elsewhere, and time limits.

Pure book-keeping, shared by every caller of the attempt loop (the dispatcher, and so
the ingress, the Python client and ``bench/fleet.py``):

* a node that hands the request back before any output (rebalancer, drain:
  :class:`~herd.errors.Rebalanced`) is a **move**: avoided for the next decision only,
  no retry counted, at most ``MAX_MOVES`` times;
* a retryable failure before the first chunk is a **retry**: that node is excluded for
  the rest of the request, at most ``FLEET_MAX_RETRIES`` times;
* anything else ends the request with its error.

Time limits bound silence, never a whole answer: the first chunk
(``FLEET_FIRST_CHUNK_TIMEOUT``; for images and transcriptions, whose one chunk is the
whole job, their job limit), then the gaps between chunks (``FLEET_CHUNK_TIMEOUT``).
A long answer that keeps streaming takes what it takes, streamed or not. The node
enforces each limit itself and names it in its error; the dispatcher's own bound is
the node's plus ``MARGIN_S`` for the hop.
"""

from __future__ import annotations

from typing import Literal

from herd.convert.ollama_response import STREAMED_KINDS
from herd.errors import (
    BackendError,
    BackendTimeout,
    HerdError,
    ModelNotFound,
    NodeUnavailable,
    Rebalanced,
)
from herd.settings import Settings

MAX_MOVES = 3  # times one request may be handed back by nodes
MARGIN_S = 5.0  # added to a node-side limit for the hop to the node itself

Again = Literal["move", "retry"] | None


def retryable(err: HerdError) -> bool:
    """Whether ``err`` before the first chunk may be retried on another node."""
    if isinstance(err, BackendError):
        return err.retryable
    return isinstance(err, ModelNotFound | NodeUnavailable)


class Attempts:
    """Where one request has been and may still go."""

    __slots__ = ("_avoid", "_excluded", "attempt", "max_retries", "moves")

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries
        self.attempt = 0  # retries so far
        self.moves = 0
        self._excluded: set[str] = set()  # failed nodes: for the rest of the request
        self._avoid: str | None = None  # the node that just handed the request back

    def exclude(self) -> frozenset[str]:
        """The nodes the next decision must not pick."""
        if self._avoid is None:
            return frozenset(self._excluded)
        return frozenset((*self._excluded, self._avoid))

    def failed(self, err: HerdError, node_id: str) -> Again:
        """Book a failed attempt on ``node_id``; what to do next."""
        self._avoid = None
        if isinstance(err, Rebalanced) and self.moves < MAX_MOVES:
            self.moves += 1
            self._avoid = node_id
            return "move"
        if retryable(err) and self.attempt < self.max_retries:
            self.attempt += 1
            self._excluded.add(node_id)
            return "retry"
        return None


def as_herd_error(exc: BaseException, node_id: str) -> HerdError:
    """The herd error for what a node port raised (ports map their own transports)."""
    if isinstance(exc, HerdError):
        return exc
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"node did not answer in time ({node_id})")
    text = str(exc).strip()
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return NodeUnavailable(f"node failed ({node_id}): {what[:200]}")


def _media_limit(settings: Settings, kind: str) -> float | None:
    node = settings.node
    return {
        "image": node.image_timeout,
        "transcribe": node.asr_timeout,
        "speech": node.tts_timeout,
    }.get(kind)


def first_chunk_error(settings: Settings, kind: str, exc: BaseException, node_id: str) -> HerdError:
    """The herd error for a failed open: a timeout names the limit that fired."""
    if not isinstance(exc, TimeoutError):
        return as_herd_error(exc, node_id)
    name = {
        "image": "FLEET_NODE_IMAGE_TIMEOUT",
        "transcribe": "FLEET_NODE_ASR_TIMEOUT",
        "speech": "FLEET_NODE_TTS_TIMEOUT",
    }.get(kind, "FLEET_FIRST_CHUNK_TIMEOUT")
    limit = first_chunk_limit(settings, kind)
    return BackendTimeout(f"node {node_id} sent no first chunk within {limit:g}s ({name})")


def first_chunk_limit(settings: Settings, kind: str) -> float:
    """How long the dispatcher waits for a node's first batch of ``kind`` (embeddings:
    their result is their first chunk)."""
    if kind in STREAMED_KINDS:
        return settings.first_chunk_timeout + MARGIN_S
    media = _media_limit(settings, kind)
    if media is not None:  # the one chunk is the whole job
        return max(media, settings.first_chunk_timeout) + MARGIN_S
    return settings.first_chunk_timeout + MARGIN_S
