"""Model aliases on the shared fleet (``FLEET_MODEL_ALIASES`` in tests/conftest.py:
``gpt-4o-mini`` -> smollm2:135m on the real llama.cpp node, ``claude-haiku-4-5`` ->
the emulators' tiny:1b), judged by the official openai and anthropic clients: the fleet
model serves, the answer names it, ``/v1/models`` lists the alias, and the trace in the
database keeps requested (the alias) vs served (the fleet model)."""

from __future__ import annotations

import anthropic
import openai
import pytest

from .trace_support import wait_trace

pytestmark = pytest.mark.integration

SMOL = "smollm2:135m"
TINY = "tiny:1b"


def test_openai_alias_is_served_by_the_real_node_and_traced(endpoint: str) -> None:
    with openai.OpenAI(base_url=f"{endpoint}/v1", api_key="x", max_retries=0) as oai:
        raw = oai.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hello!"}],
            max_tokens=16,
            temperature=0,
        )
        completion = raw.parse()
        assert raw.headers["x-herd-node"] == "smol"
        assert raw.headers["x-herd-model"] == SMOL
        assert raw.headers["x-herd-fallback"] == "false"
        assert completion.model == SMOL and completion.choices[0].message.content
        ids = [m.id for m in oai.models.list()]
        assert "gpt-4o-mini" in ids and SMOL in ids
        assert oai.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    trace = wait_trace(endpoint, raw.headers["x-herd-request-id"])
    assert (trace["requested_model"], trace["served_model"]) == ("gpt-4o-mini", SMOL)
    assert trace["status"] == "ok" and trace["node_id"] == "smol"
    assert trace["dialect"] == "openai" and trace["fallback_used"] is False


def test_anthropic_alias_streams_from_the_emulators_and_is_traced(endpoint: str) -> None:
    with anthropic.Anthropic(base_url=endpoint, api_key="x", max_retries=0) as ac:
        with ac.messages.with_streaming_response.create(
            model="claude-haiku-4-5",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        ) as response:
            request_id = response.headers["x-herd-request-id"]
            assert response.headers["x-herd-model"] == TINY
            events = list(response.iter_lines())
        assert "event: message_stop" in events
        message = ac.messages.create(
            model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.model == TINY and message.content
    trace = wait_trace(endpoint, request_id)
    assert (trace["requested_model"], trace["served_model"]) == ("claude-haiku-4-5", TINY)
    assert trace["status"] == "ok" and trace["dialect"] == "anthropic" and trace["stream"]
