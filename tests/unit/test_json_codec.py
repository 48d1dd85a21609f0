"""The token path's JSON (herd/json_codec.py): compact UTF-8, one line, and the values
the fast encoder refuses still encoded."""

from __future__ import annotations

import json

import pytest

from herd.json_codec import dumps, loads


@pytest.mark.parametrize(
    "value",
    [
        {"model": "tiny:1b", "message": {"role": "assistant", "content": "héllo ✓\n"}},
        {"done": True, "eval_count": 12, "total_duration": 123456789, "x": 0.25},
        [1, "two", None, False, {"nested": [3.5]}],
    ],
)
def test_round_trip_compact_and_one_line(value: object) -> None:
    data = dumps(value)
    assert isinstance(data, bytes) and b"\n" not in data and b": " not in data
    assert loads(data) == value == json.loads(data)
    assert "✓".encode() in data or "✓" not in json.dumps(value, ensure_ascii=False)


def test_values_the_fast_encoder_refuses() -> None:
    assert loads(dumps({"n": 2**70})) == {"n": 2**70}  # beyond 64 bits
    assert dumps({"s": "a\ud800b"}) == b'{"s":"a?b"}'  # a lone surrogate
    assert loads(dumps({1: "x"})) == {"1": "x"}  # a non-string key


def test_loads_takes_str_and_the_literals_python_writes() -> None:
    assert loads('{"a": 1}') == {"a": 1}
    assert loads(b'{"v": NaN}')["v"] != loads(b'{"v": NaN}')["v"]  # NaN, as json does
    with pytest.raises(ValueError):
        loads(b"{not json")
