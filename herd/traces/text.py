"""Text every database stores: no NUL, no lone surrogate, at most a column's length.

Pure Python (no SQLAlchemy), so ``herd.traces.records`` can use it on the request path.
``TAG_MAX_CHARS`` is the length of a tag (``trace_tags.tag`` is declared with it).
"""

from __future__ import annotations

import re

TAG_MAX_CHARS = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_ok(value: object, limit: int | None = None) -> bool:
    """True when ``value`` is a string every database takes as it is (the fast path)."""
    return (
        type(value) is str
        and (limit is None or len(value) <= limit)
        and "\x00" not in value
        and (value.isascii() or _SURROGATE.search(value) is None)
    )


def clean_text(value: str, limit: int | None = None, *, strict: bool = False) -> str:
    """``value`` without NUL or lone surrogates, at most ``limit`` characters.

    A lone surrogate becomes U+FFFD (a high + low pair is joined into its character);
    a value cut to ``limit`` ends in ``…``. ``strict``: ASCII only (the rest as
    backslash escapes), for a database whose encoding is not UTF-8.
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        if _SURROGATE.search(value) is not None:
            value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        if strict:
            value = value.encode("ascii", "backslashreplace").decode("ascii")
    if limit is not None and len(value) > limit:
        mark = "..." if strict else "…"
        value = value[: limit - len(mark)] + mark if limit > len(mark) else value[:limit]
    return value
