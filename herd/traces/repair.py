"""Rows the database accepts: every value repaired to its column before the write.

The rules come from the SQLModel tables (``herd.traces.tables``), never from numbers
repeated here: :func:`rules_of` reads each column's type, length, nullability, default and
uniqueness. :func:`clean_row` then makes every value of a row fit its column:

* **text**: NUL removed (PostgreSQL refuses it), lone surrogates replaced with U+FFFD
  (a valid pair is joined; no database encodes a lone one), truncated to the column's
  length with a trailing ``…``. A value of a single-column unique key (``request_id``)
  that had to change keeps a hash of the original, so two ids cut to the same prefix stay
  two rows. Not a string: ``bytes`` decoded as UTF-8 (replacing), anything else ``str()``.
* **int**: clamped to the column type's range (PostgreSQL ``integer`` is 32 bits).
* **float**: NaN and infinities become NULL (or the column's default when it is NOT NULL:
  SQLite stores NaN as NULL).
* **JSON**: strings cleaned like text (no length), NaN / infinities -> ``null``, keys made
  strings, tuples lists, anything else ``str()``; nesting deeper than 32 levels is
  flattened to its text. The engines serialize JSON with :func:`json_column` (orjson,
  compact, non-ASCII as UTF-8; older rows written with the standard library read alike).
* **NULL** in a NOT NULL column: the column's default.

``strict=True`` is the second try for a row the database still refused: text becomes
ASCII too (non-ASCII as ``\\u`` escapes), for a database whose encoding is not UTF-8.

:func:`refusal` tells a record the database refuses (``DataError``, ``IntegrityError``, a
value that cannot be bound) from a database that is away or broken (everything else);
:func:`describe` says why in one line that holds no value of the row (no parameters, no
SQL, nothing after PostgreSQL's ``: "``), safe to log.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy import exc as sa_exc
from sqlmodel import SQLModel

from herd.traces.text import clean_text, text_ok

Kind = Literal["text", "int", "float", "bool", "json"]

_INT_BITS = ((BigInteger, 64), (SmallInteger, 16), (Integer, 32))
_ZERO: dict[str, Any] = {"text": "", "int": 0, "float": 0.0, "bool": False}
_MAX_DEPTH = 32
_HASH_CHARS = 16
_STRICT = json.JSONEncoder(allow_nan=False)  # one encoder: json.dumps(**kw) builds one a call
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """What one column accepts (read from the table, see :func:`rules_of`)."""

    name: str
    kind: Kind
    nullable: bool
    max_chars: int | None = None  # text
    low: int = 0  # int range
    high: int = 0
    unique: bool = False  # a key: a repaired value keeps a hash of the original
    default: Any = None

    def fallback(self) -> Any:
        """The value a NOT NULL column gets for a missing or unusable one."""
        if self.nullable:
            return None
        default = self.default() if callable(self.default) else self.default
        return _ZERO.get(self.kind, {}) if default is None else default


def key_columns(*tables: type[SQLModel]) -> frozenset[str]:
    """Names of the columns that alone are a unique key in one of ``tables``."""
    return frozenset(
        next(iter(c.columns)).name
        for table in tables
        for c in table.__table__.constraints  # type: ignore[attr-defined]
        if isinstance(c, UniqueConstraint) and len(c.columns) == 1
    )


def rules_of(table: type[SQLModel], keys: frozenset[str] | None = None) -> tuple[ColumnRule, ...]:
    """The rules of every column of ``table`` but its autoincrement primary key.

    ``keys``: the column names whose repaired values keep a hash of the original (by
    default this table's single-column unique keys; pass :func:`key_columns` of every
    table that shares the key, so ``request_id`` is repaired alike in all of them).
    """
    sa_table = table.__table__  # type: ignore[attr-defined]
    unique = key_columns(table) if keys is None else keys
    rules = []
    for col in sa_table.columns:
        if col.primary_key:
            continue
        default = col.default.arg if col.default is not None else None
        if callable(default):  # a default_factory: SQLAlchemy wraps it to take a context
            default = _factory(default)
        base = col.type
        impl = getattr(base, "impl_instance", None) or getattr(base, "impl", None)
        sa_type = impl if isinstance(impl, String) else base
        kind: Kind
        low = high = 0
        if isinstance(sa_type, String):
            kind = "text"
        elif isinstance(sa_type, Boolean):
            kind = "bool"
        elif isinstance(sa_type, Integer):
            kind = "int"
            bits = next(b for t, b in _INT_BITS if isinstance(sa_type, t))
            low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        elif isinstance(sa_type, Float):
            kind = "float"
        elif isinstance(sa_type, JSON):
            kind = "json"
        else:
            raise TypeError(f"no repair rule for column {col.name} of type {col.type!r}")
        rules.append(
            ColumnRule(
                name=col.name,
                kind=kind,
                nullable=bool(col.nullable),
                max_chars=getattr(sa_type, "length", None) if kind == "text" else None,
                low=low,
                high=high,
                unique=col.name in unique,
                default=default,
            )
        )
    return tuple(rules)


def _factory(wrapped: Any) -> Any:
    def make() -> Any:
        return wrapped(None)

    return make


def max_chars(table: type[SQLModel], column: str) -> int | None:
    """The length of a text column of ``table`` (None: unbounded)."""
    for rule in rules_of(table):
        if rule.name == column:
            return rule.max_chars
    raise KeyError(column)


# --- values ------------------------------------------------------------------------------
def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    try:
        return str(value)
    except Exception:  # a broken __str__
        return object.__repr__(value)


def _unique_text(original: str, cleaned: str, limit: int | None, strict: bool) -> str:
    digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()
    suffix = "~" + digest[:_HASH_CHARS]
    if limit is not None:
        cleaned = clean_text(cleaned, max(0, limit - len(suffix)), strict=strict)
    return cleaned + suffix


def clean_json(value: Any, *, strict: bool = False, depth: int = 0) -> Any:
    """``value`` as JSON every database stores and every reader decodes."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if text_ok(value, None) and not strict else clean_text(value, strict=strict)
    if depth >= _MAX_DEPTH:
        return clean_text(_as_text(value)[:4096], strict=strict)
    if isinstance(value, Mapping):
        return {
            clean_text(_as_text(k), strict=strict): clean_json(v, strict=strict, depth=depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [clean_json(v, strict=strict, depth=depth + 1) for v in value]
    return clean_text(_as_text(value), strict=strict)


def _json_ok(value: Any) -> bool:
    """True when ``value`` is already JSON without NaN, NUL or lone surrogates."""
    try:
        out = orjson.dumps(value)  # refuses lone surrogates, odd keys and types, huge ints
    except (TypeError, ValueError, RecursionError):
        return False
    if b"\\u0000" in out:
        return False
    if b"null" in out:  # orjson writes NaN and infinities as null: look closer
        try:
            _STRICT.encode(value)
        except ValueError:
            return False
    return True


def json_column(value: Any) -> str:
    """The engines' JSON serializer: orjson (NaN and infinities become ``null``), and
    :func:`clean_json` first for what it refuses."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, ValueError, RecursionError):
        return _COMPACT.encode(clean_json(value))


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str | bytes):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def clean_value(rule: ColumnRule, value: Any, *, strict: bool = False) -> Any:
    """``value`` repaired to fit ``rule``'s column."""
    if value is None:
        return rule.fallback()
    kind = rule.kind
    if kind == "text":
        if text_ok(value, rule.max_chars) and not (strict and not value.isascii()):
            return value
        original = _as_text(value)
        cleaned = clean_text(original, rule.max_chars, strict=strict)
        if rule.unique and cleaned != original:
            return _unique_text(original, cleaned, rule.max_chars, strict)
        return cleaned
    if kind == "json":
        return value if not strict and _json_ok(value) else clean_json(value, strict=strict)
    if kind == "bool":
        return bool(value)
    number = _number(value)
    if kind == "float":
        try:
            result = None if number is None else float(number)
        except OverflowError:
            result = None
        return result if result is not None and math.isfinite(result) else rule.fallback()
    # int
    if isinstance(number, float):
        if not math.isfinite(number):
            return rule.fallback()
        number = int(number)
    if number is None:
        return rule.fallback()
    return min(max(int(number), rule.low), rule.high)


class RowRules:
    """A table's rules, grouped by kind for :func:`clean_row`'s fast checks."""

    def __init__(self, rules: tuple[ColumnRule, ...]) -> None:
        self.rules = {r.name: r for r in rules}
        self.texts = [(r.name, r.max_chars or 2**62, r.nullable) for r in rules if r.kind == "text"]
        self.ints = [(r.name, r.low, r.high, r.nullable) for r in rules if r.kind == "int"]
        self.floats = [(r.name, r.nullable) for r in rules if r.kind == "float"]
        self.bools = [(r.name, r.nullable) for r in rules if r.kind == "bool"]
        self.jsons = [(r.name, r.nullable) for r in rules if r.kind == "json"]

    def suspects(self, row: Mapping[str, Any]) -> list[str]:
        """Columns of ``row`` that may need a repair (every other one needs none)."""
        out = []
        get = row.get
        for name, limit, nullable in self.texts:
            v = get(name, _ABSENT)
            if v is None:
                if not nullable:
                    out.append(name)
            elif v is not _ABSENT and not (
                type(v) is str and len(v) <= limit and v.isascii() and "\x00" not in v
            ):
                out.append(name)
        for name, low, high, nullable in self.ints:
            v = get(name, _ABSENT)
            if v is None:
                if not nullable:
                    out.append(name)
            elif v is not _ABSENT and not (type(v) is int and low <= v <= high):
                out.append(name)
        for group, check in ((self.floats, _finite), (self.bools, _is_bool)):
            for name, nullable in group:
                v = get(name, _ABSENT)
                if v is None:
                    if not nullable:
                        out.append(name)
                elif v is not _ABSENT and not check(v):
                    out.append(name)
        if not self.jsons:
            return out
        values = [get(name, _ABSENT) for name, _ in self.jsons]
        if not _json_ok([v for v in values if v is not _ABSENT and v is not None]):
            out.extend(
                n
                for (n, _), v in zip(self.jsons, values, strict=True)
                if v is not _ABSENT and not _json_ok(v)
            )
        for (name, nullable), v in zip(self.jsons, values, strict=True):
            if v is None and not nullable:
                out.append(name)
        return out


def _finite(v: Any) -> bool:
    return type(v) is float and v - v == 0.0  # NaN and infinities fail


def _is_bool(v: Any) -> bool:
    return type(v) is bool


def clean_row(
    rules: RowRules, row: dict[str, Any], *, strict: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The row with every column of ``rules`` repaired (a copy when one changed; ``row``
    itself when none did), and the names of those changed. ``strict`` looks at every
    column (the fast checks let non-ASCII text through)."""
    names = [n for n in rules.rules if n in row] if strict else rules.suspects(row)
    out: dict[str, Any] | None = None
    changed = []
    for name in names:
        old = row[name]
        new = clean_value(rules.rules[name], old, strict=strict)
        if new is old or (type(new) is type(old) and new == old):
            continue
        if out is None:
            out = dict(row)
        out[name] = new
        changed.append(name)
    return (row if out is None else out), changed


_ABSENT = object()


# --- errors ------------------------------------------------------------------------------
def refusal(exc: BaseException) -> str | None:
    """Why the database refused the data (a reason to log), or None if it is the database.

    Refused: the database's ``DataError`` / ``IntegrityError``, and a value that could not
    be bound (``StatementError`` around a Python error, a driver's ``ValueError`` /
    ``TypeError`` / ``OverflowError``, ``UnicodeEncodeError`` included). Everything else
    (connection lost, server down, disk full, locked, missing table or permission) is the
    database's: retried later, never blamed on the record.
    """
    if isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError):
        return describe(exc)
    if isinstance(exc, sa_exc.DBAPIError):
        return None
    if isinstance(exc, sa_exc.StatementError):
        orig = exc.orig
        return describe(exc) if isinstance(orig, ValueError | TypeError | ArithmeticError) else None
    if isinstance(exc, sa_exc.SQLAlchemyError | OSError):
        return None
    if isinstance(exc, ValueError | TypeError | ArithmeticError):
        return describe(exc)
    return None


def describe(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` of the underlying error, first line only, no value of the row."""
    base: BaseException = exc
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        base = orig
    diag = getattr(base, "diag", None)
    message = getattr(diag, "message_primary", None) if diag is not None else None
    if not message:
        lines = str(base).strip().splitlines()
        message = lines[0] if lines else ""
    message = message.split(': "', 1)[0]  # PostgreSQL quotes the offending value there
    if isinstance(base, UnicodeError):
        message = re.sub(r"character '.*?'", "a character", message)
    return clean_text(f"{type(base).__name__}: {message}", limit, strict=True)
