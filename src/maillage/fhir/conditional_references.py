"""Conditional references outside a transaction: ``Practitioner?identifier=system|value``
written in a resource that is created or updated on its own.

FHIR defines them for transactions (``bundles.py`` resolves them there), but a site's
software often names an organisation by its FINESS number, a practitioner by their
RPPS number, in plain creates and updates too (and bulk exports do: the loader resolves
those, ``loading/references.py``). Stored as written, such a reference would be a
string no search follows and no care relationship reads. So every write resolves them
as a transaction would, in the write's own transaction: the one resource the criteria
match, searched as the caller (``Repository.match_one``, which holds the criteria lock
to the end). None: 404, located at the reference; several: 412 (as in a transaction).
The messages name the target type and the place, never the criteria (they may hold a
patient's identifier).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from maillage.errors import Issue, NotFound
from maillage.fhir.validation import require_known_type

if TYPE_CHECKING:
    from maillage.fhir.repository import Repository

__all__ = [
    "conditional_references",
    "has_conditional_references",
    "resolve_conditional_references",
    "with_literal_bytes",
    "with_literals",
]

# A conditional reference value in JSON (a value with an escaped character is left as
# written: no identifier system or value needs one).
_IN_JSON = re.compile(rb'"reference"\s*:\s*"([A-Z][A-Za-z]*\?[^"\\]*)"')
_CONDITIONAL = re.compile(r"^[A-Z][A-Za-z]*\?")


def conditional_references(body: bytes) -> tuple[str, ...]:
    """The distinct conditional references (``Type?criteria``) of a resource's JSON."""
    if b"?" not in body:
        return ()
    return tuple(dict.fromkeys(m.decode() for m in _IN_JSON.findall(body)))


def with_literal_bytes(body: bytes, resolved: Mapping[str, str]) -> tuple[bytes, int]:
    """A resource's JSON with its ``resolved`` references written as literals, and how
    many were (the bulk loader rewrites its lines so, before parsing them)."""
    count = 0

    def literal(match: re.Match[bytes]) -> bytes:
        nonlocal count
        target = resolved.get(match[1].decode())
        if target is None:
            return match[0]
        count += 1
        return match[0][: match.start(1) - match.start(0)] + target.encode() + b'"'

    return _IN_JSON.sub(literal, body), count


def has_conditional_references(resource: Any) -> bool:
    """Whether a parsed resource holds one (the common answer, no, in a few µs)."""
    return bool(conditional_references(orjson.dumps(resource)))


def with_literals(node: Any, resolved: Mapping[str, str]) -> Any:
    """``node`` with each ``reference`` found in ``resolved`` replaced by its literal."""
    if isinstance(node, dict):
        return {
            key: resolved.get(value, value)
            if key == "reference" and isinstance(value, str)
            else with_literals(value, resolved)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [with_literals(item, resolved) for item in node]
    return node


async def resolve_conditional_references(repo: Repository, resource: Any) -> Any:
    """``resource`` with its conditional references written as ``Type/id``; ``repo``
    is bound to the write's transaction."""
    if not isinstance(resource, dict):
        return resource  # the write refuses it
    resolved: dict[str, str] = {}
    for path, reference in _places(resource, str(resource.get("resourceType", ""))):
        if reference in resolved:
            continue
        target_type, _, query = reference.partition("?")
        require_known_type(target_type)
        match = await repo.match_one(target_type, parse_qsl(query, keep_blank_values=True))
        if match is None:  # 404, as in a transaction (``bundles.py``)
            message = f"the conditional reference to a {target_type} at {path} matches nothing"
            raise NotFound(message, issues=[Issue(message, expression=path, code="not-found")])
        resolved[reference] = match.reference
    return with_literals(resource, resolved)


def _places(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(FHIRPath-like place, reference) of each conditional reference under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and _CONDITIONAL.match(value):
                yield f"{path}.reference", value
            else:
                yield from _places(value, f"{path}.{key}")
    elif isinstance(node, list):
        for position, item in enumerate(node):
            yield from _places(item, f"{path}[{position}]")
