"""The quarantine file: traces the database refused even repaired, kept readable.

One JSON object per line (``quarantine.jsonl``, mode 0600: it holds client addresses,
tags and key names like the database does)::

    {"quarantined_at": 1700000000.5, "reason": "DataError: ...", "record": {...}}

``record`` is the trace as journaled (``TraceRecord.to_dict``; a journal line that did not
parse is kept as ``"line"`` instead), so nothing acknowledged is lost: fix what the
database refused and feed the records back. Non-finite numbers are written as the strings
``"NaN"`` / ``"Infinity"`` / ``"-Infinity"`` and non-ASCII as ``\\u`` escapes, so every line
is strict JSON (``jq`` reads it). Appends take an ``flock``, so the writers of several
processes can share one file. A crash between the quarantine and the journal's commit
marker can repeat an entry (same ``request_id``); it never drops one.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from herd.traces.records import TraceRecord

QUARANTINE_FILE_NAME = "quarantine.jsonl"


class Quarantine:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def add(self, reason: str, record: TraceRecord | None = None, line: bytes = b"") -> None:
        """Append one entry durably (fsync); raises ``OSError`` when it cannot."""
        entry: dict[str, Any] = {"quarantined_at": time.time(), "reason": reason}
        if record is not None:
            entry["record"] = record.to_dict()
        else:
            entry["line"] = line.decode("utf-8", "backslashreplace")
        data = (json.dumps(_strict(entry), ensure_ascii=True, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the flock

    def entries(self) -> list[dict[str, Any]]:
        """Every entry in the file (tests, tools); an absent file has none."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _strict(value: Any, depth: int = 0) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if depth > 32:
        return str(value)
    if isinstance(value, dict):
        return {str(k): _strict(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v, depth + 1) for v in value]
    return value
