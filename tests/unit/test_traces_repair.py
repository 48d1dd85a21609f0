"""Trace values the database would refuse are repaired before the write, on SQLite and
the real PostgreSQL: over-long and NUL-carrying model names, tags, errors and client
addresses, lone surrogates, integers beyond ``integer``, NaN, values JSON has no type for.
The lengths come from the tables (``rules_of``), never from numbers repeated here."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from herd.traces.records import TraceRecord, normalize_tags
from herd.traces.repair import clean_text, describe, key_columns, max_chars, refusal, rules_of
from herd.traces.store import TraceStore
from herd.traces.tables import TRACE_TABLES, LatencyObservation, RequestTrace, TraceTag
from herd.traces.text import TAG_MAX_CHARS
from herd.traces.writer import TraceWriter

MODEL_CHARS = max_chars(RequestTrace, "requested_model")
CLIENT_CHARS = max_chars(RequestTrace, "client")
ID_CHARS = max_chars(RequestTrace, "request_id")
TAG_CHARS = max_chars(TraceTag, "tag")
INT_HIGH = next(r.high for r in rules_of(RequestTrace) if r.name == "prompt_tokens")


def rec(name: str, **kw: Any) -> TraceRecord:
    base: dict[str, Any] = {
        "request_id": name,
        "time": 1_700_000_000.0,
        "requested_model": "tiny:1b",
        "served_model": "tiny:1b",
        "node_id": "alpha",
        "latency_s": 1.0,
        "ttft_s": 0.5,
        "completion_tokens": 10,
        "tags": ("app",),
        "client": "127.0.0.1",
    }
    base.update(kw)
    return TraceRecord(**base)


def bad_records() -> list[TraceRecord]:
    """One record per way a value can be refused (each stored, repaired)."""
    assert MODEL_CHARS is not None and CLIENT_CHARS is not None
    return [
        rec("long-model", requested_model="m" * (MODEL_CHARS + 44), served_model=None),
        rec("nul-model", requested_model="llama\x00:8b", served_model="llama\x00:8b"),
        rec("surrogate-model", requested_model="qwen\ud800:1b"),
        rec("long-tags", tags=("t" * 100, "x\x00y", "ok", "z\udc00")),
        rec("nul-error", status="error", http_status=502, error="boom\x00" + "e" * 20_000),
        rec("long-client", client="c" * (CLIENT_CHARS + 1) + "\x00"),
        rec("nul-client", client="10.0.0.1\x00:5555"),
        rec("i" * 200, tags=("long-id",)),
        rec("big-ints", prompt_tokens=2**40, completion_tokens=2**70, retries=-(2**40)),
        rec("nan", latency_s=float("nan"), score=float("inf"), breakdown={"q": float("nan")}),
        rec(
            "json",
            candidates=({"node_id": "a\x00", "total": 1.0, "breakdown": {}},),
            eliminated={"b\ud800": "why\x00"},
        ),
        rec("types", breakdown={"obj": object()}, finish_reason=b"stop\x00"),  # type: ignore[arg-type]
        rec("emoji-ok", requested_model="mödel-😀:1b", tags=("ünï", "😀")),
    ]


def stored_rows(store: TraceStore) -> dict[str, RequestTrace]:
    with store.session() as session:
        return {r.request_id: r for r in session.scalars(select(RequestTrace))}


def assert_fits(store: TraceStore) -> None:
    """Every stored text value fits its column; JSON is strict JSON."""
    for table in (RequestTrace, TraceTag, LatencyObservation):
        rules = rules_of(table)
        with store.session() as session:
            for row in session.scalars(select(table)):
                for rule in rules:
                    value = getattr(row, rule.name)
                    if rule.kind == "text" and value is not None:
                        assert isinstance(value, str)
                        assert "\x00" not in value
                        value.encode("utf-8")  # no lone surrogate
                        assert rule.max_chars is None or len(value) <= rule.max_chars
                    if rule.kind == "json":
                        json.dumps(value, allow_nan=False)
                    if rule.kind == "float" and value is not None:
                        assert math.isfinite(value)


def test_bad_values_are_repaired_and_stored_with_the_good_around_them(
    trace_store: TraceStore, tmp_path: Path
) -> None:
    bad = bad_records()
    good = [rec(f"good-{i}") for i in range(5)]
    writer = TraceWriter(trace_store, tmp_path / "spool", max_delay=0.01)
    writer.submit([*good[:2], *bad, *good[2:]])
    assert writer.flush(timeout=60)
    stats = writer.stats()
    assert stats["quarantined"] == 0 and stats["failures"] == 0
    assert stats["repaired"] == len(bad) - 1  # all but emoji-ok, which needs nothing
    assert stats["committed"] == stats["end"]  # the journal is drained
    assert writer.close()

    rows = stored_rows(trace_store)
    long_id = next(i for i in rows if i.startswith("iii"))
    assert len(rows) == len(bad) + len(good)
    assert {f"good-{i}" for i in range(5)} <= set(rows)
    assert_fits(trace_store)
    assert rows["long-model"].requested_model == "m" * (MODEL_CHARS - 1) + "…"
    assert rows["nul-model"].requested_model == rows["nul-model"].served_model == "llama:8b"
    assert rows["surrogate-model"].requested_model == "qwen\ufffd:1b"
    assert rows["long-tags"].tags == ["t" * TAG_CHARS, "xy", "ok", "z\ufffd"]
    assert rows["nul-error"].error == "boom" + "e" * 20_000  # error has no length
    assert rows["long-client"].client == "c" * (CLIENT_CHARS - 1) + "…"
    assert rows["nul-client"].client == "10.0.0.1:5555"
    assert len(long_id) == ID_CHARS and long_id.startswith("i" * 100)
    assert rows["big-ints"].prompt_tokens == rows["big-ints"].completion_tokens == INT_HIGH
    assert rows["big-ints"].retries == -INT_HIGH - 1
    assert rows["nan"].latency_s is None and rows["nan"].score is None
    assert rows["nan"].breakdown == {"q": None}
    assert rows["json"].candidates[0]["node_id"] == "a"
    assert rows["json"].eliminated == {"b\ufffd": "why"}
    assert rows["types"].breakdown["obj"].startswith("<object object")
    assert rows["types"].finish_reason == "stop"
    assert rows["emoji-ok"].requested_model == "mödel-😀:1b"
    with trace_store.session() as session:
        tags = {(t.request_id, t.tag) for t in session.scalars(select(TraceTag))}
        observed = {o.request_id for o in session.scalars(select(LatencyObservation))}
    assert ("long-tags", "xy") in tags and ("long-tags", "t" * TAG_CHARS) in tags
    assert (long_id, "long-id") in tags and long_id in observed  # the key repaired alike
    assert ("emoji-ok", "😀") in tags


def test_ids_cut_to_the_same_prefix_stay_two_rows(trace_store: TraceStore) -> None:
    assert ID_CHARS is not None
    a, b = "x" * ID_CHARS + "a", "x" * ID_CHARS + "b"
    trace_store.write_batch([rec(a), rec(b)])
    trace_store.write_batch([rec(a)])  # a replay of a repaired id is still idempotent
    ids = set(stored_rows(trace_store))
    assert len(ids) == 2 and all(len(i) == ID_CHARS for i in ids)


def test_a_latin1_database_gets_what_it_cannot_encode_escaped(
    pg_server: Any, tmp_path: Path
) -> None:
    # "Other characters the database refuses": a PostgreSQL database in LATIN1 refuses
    # CJK (UntranslatableCharacter) and so the whole batch; the writer goes record by
    # record and the store takes the lone record ASCII-only.
    store = TraceStore(pg_server.create_database("LATIN1"))
    writer = TraceWriter(store, tmp_path / "spool", max_delay=0.01)
    writer.submit(
        [rec("before"), rec("cjk", requested_model="模型:7b", tags=("ü", "模")), rec("after")]
    )
    assert writer.flush(timeout=60)
    assert writer.stats()["quarantined"] == 0
    assert writer.close()
    rows = stored_rows(store)
    assert set(rows) == {"before", "cjk", "after"}
    assert rows["cjk"].requested_model == "\\u6a21\\u578b:7b"
    assert rows["cjk"].tags == ["\\xfc", "\\u6a21"]
    assert store.repaired >= 1
    store.close()


def test_rules_come_from_the_tables() -> None:
    columns = {c.name: c for c in RequestTrace.__table__.columns}  # type: ignore[attr-defined]
    for rule in rules_of(RequestTrace):
        assert rule.max_chars == getattr(columns[rule.name].type, "length", None)
        assert rule.nullable == columns[rule.name].nullable
    assert TAG_CHARS == TAG_MAX_CHARS
    assert key_columns(*TRACE_TABLES) == {"request_id"}
    by_name = {r.name: r for r in rules_of(RequestTrace)}
    assert by_name["attempts"].fallback() == 1 and by_name["breakdown"].fallback() == {}
    assert by_name["served_model"].fallback() is None


def test_clean_text() -> None:
    assert clean_text("a\x00b") == "ab"
    assert clean_text("\ud83d\ude00 \ud800") == "😀 \ufffd"  # a pair joined, a lone one replaced
    assert clean_text("abcdef", 4) == "abc…"
    assert clean_text("ü", strict=True) == "\\xfc"
    cut = clean_text("модель", 8, strict=True)
    assert cut.isascii() and len(cut) == 8 and cut.endswith("...")
    assert clean_text("ok") == "ok"


def test_normalize_tags_cleans_too() -> None:
    assert normalize_tags(["a\x00", " b\ud800 ", "a", "x" * 100]) == (
        "a",
        "b\ufffd",
        "x" * TAG_CHARS,
    )


def test_every_record_can_be_journaled() -> None:
    odd = rec("odd", requested_model="q\ud800", breakdown={"o": object()}, error="e\x00")  # type: ignore[dict-item]
    line = odd.to_json()
    line.encode("utf-8")
    back = TraceRecord.from_json(line)
    assert back.requested_model == "q\ud800" and back.error == "e\x00"
    assert back.breakdown["o"].startswith("<object")
    assert TraceRecord.from_json(rec("fine", requested_model="ü").to_json()).requested_model == "ü"


def test_refusal_tells_the_data_from_the_database() -> None:
    too_long = sa_exc.DataError(
        "INSERT ...", {"requested_model": "secret"}, ValueError("value too long")
    )
    assert refusal(too_long) == "ValueError: value too long"
    assert (
        refusal(sa_exc.IntegrityError("s", {}, Exception("NOT NULL constraint failed"))) is not None
    )
    assert (
        refusal(UnicodeEncodeError("utf-8", "a\ud800", 1, 2, "surrogates not allowed")) is not None
    )
    assert refusal(sa_exc.OperationalError("s", {}, ConnectionRefusedError("refused"))) is None
    assert refusal(sa_exc.ProgrammingError("s", {}, Exception("relation does not exist"))) is None
    assert refusal(RuntimeError("db down")) is None and refusal(OSError("disk")) is None
    assert refusal(ValueError("bad")) == "ValueError: bad"


def test_describe_holds_no_value() -> None:
    err = sa_exc.DataError(
        "INSERT INTO request_traces ...", {"client": "hunter2"},
        Exception('invalid input syntax for type integer: "hunter2"\nDETAIL: hunter2'),
    )  # fmt: skip
    text = describe(err)
    assert "hunter2" not in text and text.startswith("Exception: invalid input syntax")
    surrogate = describe(UnicodeEncodeError("utf-8", "x\ud800", 1, 2, "surrogates not allowed"))
    surrogate.encode("ascii")
    assert "\\ud800" not in surrogate
