"""Response header values that always encode.

HTTP header values travel as Latin-1 bytes; a value with any other character makes the
server fail while answering (a 500 after the work is done). Names herd writes into its
``X-Herd-*`` headers are validated on the way in (:mod:`herd.wire.limits`), and every
value still passes through :func:`header_value`: printable ASCII is kept as it is,
anything else is percent-encoded (UTF-8), so a header can never fail to encode.
"""

from __future__ import annotations

from urllib.parse import quote

from herd.domain import canonical_model

# Printable ASCII but "%", which must be escaped to keep the encoding reversible.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def header_value(value: object) -> str:
    """``value`` as a header value: printable ASCII unchanged, the rest percent-encoded."""
    text = str(value)
    if text.isascii() and text.isprintable() and "%" not in text:
        return text
    return quote(text, safe=_SAFE)


def model_header(model: str) -> str:
    """``X-Herd-Model``: the canonical fleet name of the model that served (Ollama's
    matching form: lower case, ``:latest`` when no tag), header-safe."""
    return header_value(canonical_model(model))
