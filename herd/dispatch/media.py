"""Image-generation, speech-to-text and text-to-speech jobs through the fleet.

They take the same routing decision as LLM requests (the same scorer, since they
compete for the same memory), through :meth:`~herd.dispatch.dispatcher.Dispatcher.complete`:
retried on the next-best node when a node fails before answering, model fallbacks
honoured. The node runs them on its media engines (``herd.node.media``); the result is
its answer's one chunk.

An OpenAI image request with ``n > 1`` becomes ``n`` jobs routed independently (so they
can spread over several nodes), each with its own request id and seed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from herd.dispatch.dispatcher import Dispatcher
from herd.domain import Decision, InferenceRequest


@dataclass(frozen=True, slots=True)
class MediaResult:
    decision: Decision
    retries: int
    result: dict[str, Any]


class MediaDispatch:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def run(self, req: InferenceRequest) -> MediaResult:
        """One image or transcription job: decide, run on the node, retry before output."""
        decision, retries, result = await self.dispatcher.complete(req)
        return MediaResult(decision, retries, result)

    async def run_all(self, reqs: Sequence[InferenceRequest]) -> list[MediaResult]:
        """Several jobs at once (OpenAI ``n``); the first failure fails the request and
        cancels the others."""
        if len(reqs) == 1:
            return [await self.run(reqs[0])]
        tasks = [asyncio.ensure_future(self.run(req)) for req in reqs]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
