"""Path segments of the FHIR REST API, so that routes match only what they serve.

A resource type starts with an upper-case letter and a logical id never starts with
``_``: ``/fhir/metadata``, ``/fhir/_history`` or ``/fhir/Patient/_search`` are then
never taken for a type or an id, and a method such a path does not take is answered
405 with an ``Allow`` header (instead of, say, a conditional delete of "metadata").
Ids that break the FHIR id rules still reach the store, which says why it refuses them.
"""

from __future__ import annotations

from typing import ClassVar

from starlette.convertors import Convertor, register_url_convertor


class ResourceTypeSegment(Convertor[str]):
    regex: ClassVar[str] = "[A-Z][^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class LogicalIdSegment(Convertor[str]):
    regex: ClassVar[str] = "(?!_)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fhir_type", ResourceTypeSegment())
register_url_convertor("fhir_id", LogicalIdSegment())

TYPE = "{type:fhir_type}"
ID = "{id:fhir_id}"
