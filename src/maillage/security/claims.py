"""Reading an issuer's claims: paths into a token, and values mapped through its tables.

A claim path is dotted (``realm_access.roles``) and walks into objects and through lists:
``SubjectRefPro.exercices.activities.numeroFinessSite`` gives the FINESS of every activity
of every practice of a Pro Santé Connect user. ``role_map`` and ``site_map`` turn such
values (a profession code, a FINESS number) into the hub's roles and sites; a value they
do not list gives nothing. Issuer presets (``security/data/<name>_issuer.json``) hold
ready-made claim paths and maps for a known identity provider. Pure: no I/O but reading
the shipped data files.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from typing import Any, Final, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
# The issuer presets shipped with the hub, by the name an issuers-file entry gives.
PRESETS: Final = {"psc": "psc_issuer.json"}
# How many values one path may give: a token is small, but a crafted one should not make
# the mapping loop long (PSC users have a handful of practices and activities).
_MAX_VALUES: Final = 200


def first(claims: Mapping[str, Any], names: Sequence[str]) -> Any:
    """The value of the first of ``names`` the claims hold (not empty); dotted names read
    inside objects."""
    for name in names:
        value: Any = claims
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value not in (None, "", []):
            return value
    return None


def strings(value: Any, *, separator: str | None = None) -> frozenset[str]:
    """A claim's value as a set of strings: a string (split on ``separator`` if given),
    a list of them, or any other scalar."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split(separator) if separator is not None else [value])
    if isinstance(value, list | tuple):
        return frozenset(str(item) for item in value if item not in (None, ""))
    return frozenset({str(value)})


def values_at(claims: Mapping[str, Any], path: str) -> list[str]:
    """Every scalar value at a dotted path, walking through lists at any step; empty
    strings are skipped (PSC sends ``""`` for a FINESS it does not know)."""
    found: list[str] = []
    for value in _walk(claims, path.split(".")):
        if isinstance(value, bool) or value is None or value == "":
            continue
        if isinstance(value, str | int):
            found.append(str(value))
            if len(found) >= _MAX_VALUES:
                break
    return found


def _walk(node: Any, parts: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node[:_MAX_VALUES]:
            yield from _walk(item, parts)
        return
    if not parts:
        yield node
        return
    if isinstance(node, Mapping) and parts[0] in node:
        yield from _walk(node[parts[0]], parts[1:])


def mapped(
    claims: Mapping[str, Any],
    paths: Sequence[str],
    table: Mapping[str, T],
    *,
    what: str,
    issuer: str,
) -> list[T]:
    """What ``table`` gives for the values at ``paths``; values it does not list are
    skipped, and logged at DEBUG only (a FINESS or a profession code, never who)."""
    given: list[T] = []
    if not table:
        return given
    for path in paths:
        for value in values_at(claims, path):
            if value in table:
                given.append(table[value])
            else:
                log.debug("issuer %s: %s %r of %s is not mapped", issuer, what, value, path)
    return given


@functools.cache
def known_roles() -> frozenset[str]:
    """The roles the shipped access policy (``security/data/policy.json``) knows."""
    text = resources.files("maillage.security").joinpath("data/policy.json").read_text()
    return frozenset(json.loads(text)["roles"])


def preset(name: str) -> dict[str, Any]:
    """An issuer preset's fields (a fresh copy: the caller may merge into it)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: the hub ships {sorted(PRESETS)}")
    return copy.deepcopy(_preset_fields(name))


@functools.cache
def _preset_fields(name: str) -> dict[str, Any]:
    text = resources.files("maillage.security").joinpath(f"data/{PRESETS[name]}").read_text()
    fields = json.loads(text)["issuer"]
    if not isinstance(fields, dict):
        raise ValueError(f"the preset {name!r} is malformed: 'issuer' is not an object")
    return fields


def with_preset(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An issuers-file entry with its ``preset`` filled in: the entry's own fields win;
    ``claims`` and ``role_map`` are merged name by name (an entry may change one claim
    path, or map one more profession, or map one to ``[]`` to give it nothing)."""
    merged = preset(str(entry["preset"]))
    for key, value in entry.items():
        base = merged.get(key)
        if key in ("claims", "role_map") and isinstance(base, dict) and isinstance(value, dict):
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return merged
