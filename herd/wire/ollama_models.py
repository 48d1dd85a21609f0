"""Ollama model-management bodies: ``/api/show``, ``/api/pull``, ``/api/delete``.

Ollama accepts the model under ``model`` or (older clients) ``name``. herd adds
``node`` to pull and delete: the node to act on (also the ``X-Herd-Node`` header);
without it a pull goes to the best node and a delete to every node holding the model.
"""

from __future__ import annotations

from pydantic import ValidationInfo, model_validator

from herd.wire.common import JSONInput, WireModel, bare, validate
from herd.wire.limits import Limits, limits_of, model_name_problem


class _Named(WireModel):
    model: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _has_model(self, info: ValidationInfo) -> _Named:
        if not self.target:
            raise bare("model is required")
        given = self.model if (self.model or "").strip() else self.name
        problem = model_name_problem(given or "", limits_of(info))
        if problem is not None:
            raise bare(problem)
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


def parse_show_request(raw: JSONInput, limits: Limits | None = None) -> ShowRequest:
    return validate(ShowRequest, raw, limits)


def parse_pull_request(raw: JSONInput, limits: Limits | None = None) -> PullRequest:
    return validate(PullRequest, raw, limits)


def parse_delete_request(raw: JSONInput, limits: Limits | None = None) -> DeleteRequest:
    return validate(DeleteRequest, raw, limits)
