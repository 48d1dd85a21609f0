"""An agent framework pointed at herd, changing nothing but the base URL: LangChain's
ChatOpenAI and ChatOllama (invoke and stream), and OllamaEmbeddings on MiniLM."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_ollama import ChatOllama, OllamaEmbeddings
from langchain_openai import ChatOpenAI

pytestmark = pytest.mark.integration

PROMPT = [SystemMessage("You are terse."), HumanMessage("Name one colour.")]


@pytest.mark.parametrize("model", ["tiny:1b", "gemma3:270m"])
def test_chat_openai_invoke_and_stream(endpoint: str, model: str) -> None:
    llm = ChatOpenAI(
        base_url=f"{endpoint}/v1",
        api_key="not-needed",  # type: ignore[arg-type]
        model=model,
        max_tokens=8,
        max_retries=0,
        include_response_headers=True,
        extra_body={"metadata": {"tags": ["langchain-test"]}},
    )
    reply = llm.invoke(PROMPT)
    assert isinstance(reply, AIMessage) and reply.content
    assert reply.response_metadata["headers"]["x-herd-model"] == model
    assert reply.usage_metadata and reply.usage_metadata["output_tokens"] > 0
    chunks = list(llm.stream(PROMPT))
    assert len(chunks) > 1
    assert "".join(str(c.content) for c in chunks).strip()


@pytest.mark.parametrize("model", ["tiny:1b", "gemma3:270m"])
def test_chat_ollama_invoke_and_stream(endpoint: str, model: str) -> None:
    llm = ChatOllama(base_url=endpoint, model=model, num_predict=8)
    reply = llm.invoke(PROMPT)
    assert isinstance(reply, AIMessage) and reply.content
    assert reply.response_metadata["model"] == model
    assert reply.usage_metadata and reply.usage_metadata["output_tokens"] > 0
    chunks = list(llm.stream(PROMPT))
    assert len(chunks) > 1
    assert "".join(str(c.content) for c in chunks).strip()


def test_ollama_embeddings_on_minilm(endpoint: str) -> None:
    embedder: Any = OllamaEmbeddings(base_url=endpoint, model="all-minilm:l6-v2")
    vectors = embedder.embed_documents(["a llama", "an alpaca"])
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert len(embedder.embed_query("a llama")) == 384
