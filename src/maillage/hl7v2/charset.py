"""The character set of a message, read from MSH-18 in the raw bytes before decoding.

IHE PAM FR: ISO 8859/15 is the French standard (``MSH-18 = 8859/15``), UTF-8 is allowed
(``UNICODE UTF-8``); ``8859/1`` still comes from older feeds. An empty MSH-18 means the
site's default. The MSH segment itself is ASCII, so it can be read before decoding.
"""

from __future__ import annotations

# HL7 table 0211 values we accept -> Python codecs.
CODECS: dict[str, str] = {
    "8859/15": "iso-8859-15",
    "8859/1": "latin-1",
    "UNICODE UTF-8": "utf-8",
    "ASCII": "ascii",
}


class UnsupportedCharset(ValueError):
    """MSH-18 names a character set the gateway does not decode."""


def msh_fields(raw: bytes) -> list[bytes] | None:
    """The MSH segment's fields as bytes (index n is MSH-n), or None without an MSH."""
    text = raw.lstrip(b" \t\r\n")
    if not text.startswith(b"MSH") or len(text) < 4:
        return None
    end = len(text)
    for separator in (b"\r", b"\n"):
        found = text.find(separator)
        if 0 <= found < end:
            end = found
    segment = text[:end]
    field_separator = segment[3:4]
    parts = segment[4:].split(field_separator)
    # MSH-1 is the separator itself; MSH-2 (encoding characters) is parts[0].
    return [b"MSH", field_separator, *parts]


def declared_charset(raw: bytes) -> str | None:
    """MSH-18's first repetition as written, or None when absent or empty."""
    fields = msh_fields(raw)
    if fields is None or len(fields) <= 18:
        return None
    encoding_characters = fields[2]
    repetition = encoding_characters[1:2] or b"~"
    value = fields[18].split(repetition)[0].strip()
    return value.decode("ascii", errors="replace") or None


def codec_for(declared: str | None, site_default: str) -> str:
    """The Python codec for a declared MSH-18 value (or the site default)."""
    value = declared if declared is not None else site_default
    codec = CODECS.get(value.strip().upper())
    if codec is None:
        raise UnsupportedCharset(value)
    return codec
