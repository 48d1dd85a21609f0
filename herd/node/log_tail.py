"""Reading this device's JSONL log (:mod:`herd.logs`) for ``herd logs``: the last lines,
then what was written after a position. Bounded: at most :data:`MAX_LINES` lines and
:data:`MAX_BYTES` bytes per read, and only whole lines (a line being written is left
for the next read). A position is the file's identity and an offset; when the file was
rotated (another inode) or truncated, reading starts at the new file's beginning.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from herd.logs import LOG_FILE_NAME

MAX_LINES = 2000
MAX_BYTES = 1 << 20
_BLOCK = 64 * 1024

Position = dict[str, int]


def log_file(log_dir: Path) -> Path:
    return log_dir / LOG_FILE_NAME


def _identity(st: os.stat_result) -> str:
    return f"{socket.gethostname()}:{st.st_dev}:{st.st_ino}"


def _answer(path: Path, st: os.stat_result | None, lines: list[str], offset: int) -> dict[str, Any]:
    return {
        "file": str(path),
        "source": _identity(st) if st is not None else f"{socket.gethostname()}:{path}",
        "lines": lines,
        "position": {"ino": st.st_ino if st is not None else 0, "offset": offset},
    }


def _decode(chunk: bytes) -> list[str]:
    return [raw.decode("utf-8", "replace") for raw in chunk.split(b"\n") if raw.strip()]


def tail(path: Path, lines: int) -> dict[str, Any]:
    """The last ``lines`` whole lines of ``path`` (capped) and the position after them;
    no lines (and offset 0) when the file does not exist yet."""
    want = max(0, min(int(lines), MAX_LINES))
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return _answer(path, None, [], 0)
    with fh:
        st = os.fstat(fh.fileno())
        end = st.st_size
        data = b""
        start = end
        while start > 0 and data.count(b"\n") <= want and end - start < MAX_BYTES:
            step = min(_BLOCK, start, MAX_BYTES - (end - start))
            start -= step
            fh.seek(start)
            data = fh.read(step) + data
        cut = data.rfind(b"\n") + 1  # whole lines only: the rest is still being written
        whole = data[:cut]
        if start > 0:  # the first line read may be a part: drop it
            whole = whole[whole.find(b"\n") + 1 :]
        found = _decode(whole)
        return _answer(path, st, found[-want:] if want else [], start + cut)


def read_after(path: Path, position: Position | None) -> dict[str, Any]:
    """The whole lines written after ``position`` (capped) and the position after them."""
    pos = position or {}
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return _answer(path, None, [], 0)
    with fh:
        st = os.fstat(fh.fileno())
        offset = int(pos.get("offset", 0))
        if int(pos.get("ino", -1)) != st.st_ino or offset > st.st_size:
            offset = 0  # rotated or truncated: the new file from its start
        fh.seek(offset)
        data = fh.read(MAX_BYTES)
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) == MAX_BYTES:  # one line longer than a read: skip it
            cut = len(data)
        found = _decode(data[:cut])
        extra = found[MAX_LINES:]
        if extra:  # more lines than a read returns: stop after the first MAX_LINES
            found = found[:MAX_LINES]
            cut = _offset_after(data, MAX_LINES)
        return _answer(path, st, found, offset + cut)


def _offset_after(data: bytes, count: int) -> int:
    """The offset just past the ``count``-th non-blank line of ``data``."""
    seen, index = 0, 0
    while seen < count:
        nl = data.index(b"\n", index)
        if data[index:nl].strip():
            seen += 1
        index = nl + 1
    return index
