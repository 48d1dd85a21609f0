"""Every herd error survives pickling (what Ray does between actors) intact."""

from __future__ import annotations

import inspect
import pickle

import pytest

from herd import errors
from herd.errors import BackendError, HerdError

ALL_ERRORS: list[type[HerdError]] = sorted(
    (
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, HerdError) and cls.__module__ == errors.__name__
    ),
    key=lambda cls: cls.__name__,
)
BACKEND_ERRORS = [cls for cls in ALL_ERRORS if issubclass(cls, BackendError)]
IDS = [cls.__name__ for cls in ALL_ERRORS]


def _roundtrip(exc: HerdError) -> HerdError:
    clone = pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(clone) is type(exc)
    return clone


def test_the_hierarchy_is_discovered() -> None:
    names = set(IDS)
    assert {"HerdError", "BadRequest", "ModelNotFound", "NoCapacity", "ConfigError"} <= names
    assert {"BackendError", "BackendTimeout", "NodeUnavailable"} <= {
        cls.__name__ for cls in BACKEND_ERRORS
    }


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=IDS)
@pytest.mark.parametrize("retry_after", [None, 0.0, 2.5])
def test_roundtrip_keeps_message_and_retry_after(
    cls: type[HerdError], retry_after: float | None
) -> None:
    exc = cls("model 'llama3:8b' is busy on every node", retry_after=retry_after)
    clone = _roundtrip(exc)

    assert clone.message == exc.message
    assert str(clone) == str(exc)
    assert clone.args == exc.args
    assert clone.retry_after == retry_after


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=IDS)
def test_roundtrip_keeps_status_and_code(cls: type[HerdError]) -> None:
    clone = _roundtrip(cls("x"))
    assert clone.status == cls.status
    assert clone.code == cls.code
    assert 400 <= clone.status <= 599
    assert isinstance(clone, HerdError)
    assert isinstance(clone, Exception)


@pytest.mark.parametrize("cls", BACKEND_ERRORS, ids=[c.__name__ for c in BACKEND_ERRORS])
@pytest.mark.parametrize(
    ("retryable", "backend_status", "retry_after"),
    [(True, None, None), (False, 500, 1.0), (True, 503, 30.0), (False, None, 0.0)],
)
def test_backend_errors_keep_their_fields(
    cls: type[BackendError],
    retryable: bool,
    backend_status: int | None,
    retry_after: float | None,
) -> None:
    exc = cls(
        "ollama on mac-studio answered 500",
        retry_after=retry_after,
        retryable=retryable,
        backend_status=backend_status,
    )
    clone = _roundtrip(exc)

    assert isinstance(clone, BackendError)
    assert clone.message == exc.message
    assert clone.retry_after == retry_after
    assert clone.retryable is retryable
    assert clone.backend_status == backend_status
    assert clone.status == cls.status


def test_backend_error_defaults() -> None:
    clone = _roundtrip(BackendError("refused"))
    assert isinstance(clone, BackendError)
    assert clone.retryable is True
    assert clone.backend_status is None
    assert clone.retry_after is None


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("BadRequest", 400),
        ("ModelNotFound", 404),
        ("PayloadTooLarge", 413),
        ("Unprocessable", 422),
        ("RateLimited", 429),
        ("HerdError", 500),
        ("ConfigError", 500),
        ("BackendError", 502),
        ("NoCapacity", 503),
        ("NodeUnavailable", 503),
        ("FleetUnavailable", 503),
        ("BackendTimeout", 503),
    ],
)
def test_status_codes(name: str, status: int) -> None:
    assert getattr(errors, name).status == status


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in ALL_ERRORS]
    assert len(codes) == len(set(codes))


def test_subclass_defined_elsewhere_also_roundtrips() -> None:
    clone = _roundtrip(_LocalError("local", retry_after=1.0))
    assert isinstance(clone, _LocalError)
    assert clone.retry_after == 1.0


class _LocalError(errors.NoCapacity):
    status = 503
    code = "local_test"
