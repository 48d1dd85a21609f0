"""Ollama model-management bodies: ``/api/show``, ``/api/pull``, ``/api/delete``.

Ollama accepts the model under ``model`` or (older clients) ``name``. herd adds
``node`` to pull and delete: the node to act on (also the ``X-Herd-Node`` header);
without it a pull goes to the best node and a delete to every node holding the model.
"""

from __future__ import annotations

from pydantic import model_validator

from herd.wire.common import JSONInput, WireModel, bare, validate


class _Named(WireModel):
    model: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _has_model(self) -> _Named:
        if not (self.model or self.name or "").strip():
            raise bare("model is required")
        return self

    @property
    def target(self) -> str:
        return (self.model or self.name or "").strip()


class ShowRequest(_Named):
    verbose: bool | None = None


class PullRequest(_Named):
    insecure: bool | None = None
    stream: bool | None = None
    node: str | None = None

    @property
    def streaming(self) -> bool:
        return self.stream is not False


class DeleteRequest(_Named):
    node: str | None = None


def parse_show_request(raw: JSONInput) -> ShowRequest:
    return validate(ShowRequest, raw)


def parse_pull_request(raw: JSONInput) -> PullRequest:
    return validate(PullRequest, raw)


def parse_delete_request(raw: JSONInput) -> DeleteRequest:
    return validate(DeleteRequest, raw)
