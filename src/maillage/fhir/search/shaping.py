"""``_summary`` and ``_elements``: return part of each resource, tagged SUBSETTED.

Summary elements are those the R4 definitions mark ``isSummary``, read from the
validation models (fhir.resources); ``_summary=text`` keeps the narrative and the
mandatory elements. A subsetted resource carries the v3 ObservationValue SUBSETTED tag
in ``meta.tag`` (R4 search.html#summary), so that nobody mistakes it for the whole.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import orjson

from maillage.fhir.model import StoredResource

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
_ALWAYS = ("resourceType", "id", "meta")


@functools.cache
def _model_elements(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a resource type, by JSON name."""
    from fhir.resources.R4B import get_fhir_model_class

    model = get_fhir_model_class(resource_type)
    summary, mandatory = set(), set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        json_name = info.alias or name
        if extra.get("summary_element_property"):
            summary.add(json_name)
        if extra.get("element_property") and (info.is_required() or extra.get("element_required")):
            mandatory.add(json_name)
    return frozenset(summary), frozenset(mandatory)


def _kept(resource_type: str, summary: str | None, elements: list[str] | None) -> set[str] | None:
    """The top-level elements to keep, None for the whole resource."""
    if elements is not None:
        return {*elements, *_ALWAYS}
    if summary == "true":
        return {*_model_elements(resource_type)[0], *_ALWAYS}
    if summary == "text":
        return {"text", *_model_elements(resource_type)[1], *_ALWAYS}
    return None


def subset(resource: dict[str, Any], kept: set[str] | None, drop_text: bool) -> dict[str, Any]:
    if kept is not None:
        # a primitive's extensions travel with it (``_birthDate`` beside ``birthDate``)
        shaped = {k: v for k, v in resource.items() if k in kept or k.lstrip("_") in kept}
    else:
        shaped = dict(resource)
    if drop_text:
        shaped.pop("text", None)
    meta = dict(shaped.get("meta") or {})
    tags = [tag for tag in meta.get("tag", []) if tag.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    shaped["meta"] = meta
    return shaped


def shape(
    entries: list[StoredResource], *, summary: str | None, elements: list[str] | None
) -> list[StoredResource]:
    """The entries as ``_summary``/``_elements`` ask (unchanged when neither does)."""
    if elements is None and summary not in ("true", "text", "data"):
        return entries
    shaped = []
    for entry in entries:
        if entry.body is None:
            shaped.append(entry)
            continue
        kept = _kept(entry.resource_type, summary, elements)
        resource = subset(orjson.loads(entry.body), kept, drop_text=summary == "data")
        shaped.append(dataclasses.replace(entry, body=orjson.dumps(resource).decode()))
    return shaped
