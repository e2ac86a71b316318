"""Media types in and out: JSON only, said clearly when the client wants something else."""

from __future__ import annotations

from typing import Any

import orjson

from maillage.errors import MalformedContent, NotAcceptable, UnsupportedMediaType

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {FHIR_JSON, "application/json", "application/json+fhir", "json", "text/json"}
_XML_HINTS = ("xml",)
_PATCH_TYPES = {"application/json-patch+json"}


def check_format(format_param: str | None, accept: str | None) -> None:
    """Raise NotAcceptable unless JSON can satisfy ``_format`` / ``Accept``."""
    if format_param:
        wanted = format_param.split(";")[0].strip().lower()
        if wanted not in _JSON_TYPES:
            raise NotAcceptable(f"_format={format_param} is not served; this server speaks JSON")
        return
    if not accept:
        return
    offered = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if any(kind in _JSON_TYPES or kind in ("*/*", "application/*") for kind in offered):
        return
    if any(hint in kind for kind in offered for hint in _XML_HINTS) or offered:
        raise NotAcceptable(f"Accept: {accept} cannot be served; ask for application/fhir+json")


def check_content_type(content_type: str | None, *, patch: bool = False) -> None:
    kind = (content_type or "").split(";")[0].strip().lower()
    allowed = _PATCH_TYPES if patch else _JSON_TYPES
    if kind not in allowed:
        expected = "application/json-patch+json" if patch else FHIR_JSON
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'} is not accepted here; send {expected}"
        )


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedContent(f"the body is not valid JSON: {error}") from error


def render(content: Any, *, pretty: bool = False) -> bytes:
    if not pretty:
        return orjson.dumps(content)
    # Stored bodies are spliced in as fragments, which orjson copies as they are: parse
    # the whole document once so that ``_pretty`` indents it throughout.
    return orjson.dumps(orjson.loads(orjson.dumps(content)), option=orjson.OPT_INDENT_2)
