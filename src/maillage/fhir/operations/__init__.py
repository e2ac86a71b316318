"""FHIR operations (``$name``), declared as data and served by one shared piece of code.

Following Medplum's model: each operation is a row of ``OPERATIONS`` (name, level,
resource type, definition URL, parameters, handler). ``parse_arguments`` reads the
parameters the row declares from a GET query string or a POST ``Parameters`` body, so a
handler only receives typed arguments; the CapabilityStatement lists the rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maillage.errors import InvalidRequest, NotFound, UnsupportedParameter
from maillage.fhir.definitions import resource_types
from maillage.fhir.model import SearchPage
from maillage.fhir.repository import Repository

# Parameters of the request itself, never an operation's.
_TRANSPORT = ("_format", "_pretty")


@dataclass(frozen=True)
class Parameter:
    name: str
    # integer, instant, types (comma-separated resource types), string
    type: str


Handler = Callable[[Repository, str | None, dict[str, Any]], Awaitable[SearchPage]]


@dataclass(frozen=True)
class Operation:
    name: str
    level: str  # "system", "type" or "instance"
    resource_type: str | None
    definition: str
    parameters: tuple[Parameter, ...]
    # None: an asynchronous operation (Bulk Data ``$export``), kicked off by its own
    # route (``fhir/http/export.py``) into a background job; its parameters are still
    # parsed here.
    handler: Handler | None = None


async def _everything(
    repo: Repository, resource_id: str | None, args: dict[str, Any]
) -> SearchPage:
    assert resource_id is not None
    return await repo.everything(
        resource_id,
        types=args.get("_type"),
        since=args.get("_since"),
        count=args.get("_count"),
        page=args.get("_page"),
    )


_EXPORT_PARAMETERS = (
    Parameter("_outputFormat", "string"),
    Parameter("_since", "instant"),
    Parameter("_type", "types"),
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        name="everything",
        level="instance",
        resource_type="Patient",
        definition="http://hl7.org/fhir/OperationDefinition/Patient-everything",
        parameters=(
            Parameter("_since", "instant"),
            Parameter("_type", "types"),
            Parameter("_count", "integer"),
            # the keyset cursor of the paging links
            Parameter("_page", "string"),
        ),
        handler=_everything,
    ),
    *(
        Operation(
            name="export",
            level=level,
            resource_type=resource_type,
            definition=definition,
            parameters=_EXPORT_PARAMETERS,
        )
        for level, resource_type, definition in (
            ("system", None, "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"),
            (
                "type",
                "Patient",
                "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
            ),
            (
                "instance",
                "Group",
                "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
            ),
        )
    ),
    # Rebuild the search index of some types as a background job (``fhir/reindex.py``),
    # kicked off and polled by its own routes (``fhir/http/reindex.py``).
    Operation(
        name="reindex",
        level="system",
        resource_type=None,
        definition="urn:maillage:OperationDefinition:reindex",
        parameters=(Parameter("_type", "types"),),
    ),
    # The territorial patient index's lookups, served by their own routes
    # (``mpi/http.py``). IHE PIXm [ITI-83]: ``targetSystem`` repeats (0..*), read there.
    Operation(
        name="ihe-pix",
        level="type",
        resource_type="Patient",
        definition="https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
        parameters=(Parameter("sourceIdentifier", "string"), Parameter("targetSystem", "string")),
    ),
    # FHIR R4 Patient/$match: its ``resource`` parameter (a Patient) is read by the route.
    Operation(
        name="match",
        level="type",
        resource_type="Patient",
        definition="http://hl7.org/fhir/OperationDefinition/Patient-match",
        parameters=(Parameter("onlyCertainMatches", "string"), Parameter("count", "integer")),
    ),
    # INSi (the national INS teleservice, simulated here): ``mpi/insi_http.py``.
    Operation(
        name="insi-search",
        level="type",
        resource_type="Patient",
        definition="urn:maillage:OperationDefinition:insi-search",
        parameters=(Parameter("birthName", "string"), Parameter("birthDate", "string")),
    ),
    Operation(
        name="insi-verify",
        level="type",
        resource_type="Patient",
        definition="urn:maillage:OperationDefinition:insi-verify",
        parameters=(),
    ),
    # Emergency access to one record, with a reason (``fhir/http/glass.py``).
    Operation(
        name="break-the-glass",
        level="instance",
        resource_type="Patient",
        definition="urn:maillage:OperationDefinition:break-the-glass",
        parameters=(Parameter("reason", "string"),),
    ),
)


def find(name: str, level: str, resource_type: str | None) -> Operation:
    for operation in OPERATIONS:
        if (operation.name, operation.level, operation.resource_type) == (
            name,
            level,
            resource_type,
        ):
            return operation
    where = f"on {resource_type}" if resource_type else "at system level"
    raise NotFound(f"operation ${name} is not served {where} at {level} level")


def for_type(resource_type: str) -> list[dict[str, str]]:
    """CapabilityStatement ``rest.resource.operation`` entries of a type."""
    return [
        {"name": operation.name, "definition": operation.definition}
        for operation in OPERATIONS
        if operation.resource_type == resource_type
    ]


def system_level() -> list[dict[str, str]]:
    """CapabilityStatement ``rest.operation`` entries (system-level operations)."""
    return [
        {"name": operation.name, "definition": operation.definition}
        for operation in OPERATIONS
        if operation.level == "system"
    ]


def from_parameters(body: Any) -> list[tuple[str, str]]:
    """(name, value as text) pairs of a ``Parameters`` resource of primitive values."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest("an operation's POST body is a Parameters resource")
    pairs = []
    for parameter in body.get("parameter") or []:
        values = [
            value
            for key, value in (parameter or {}).items()
            if key.startswith("value") and not isinstance(value, dict | list)
        ]
        if not isinstance(parameter.get("name"), str) or len(values) != 1:
            raise InvalidRequest("each parameter has a name and one primitive value[x]")
        value = values[0]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        pairs.append((parameter["name"], text))
    return pairs


def _convert(parameter: Parameter, value: str) -> Any:
    if parameter.type == "integer":
        if not value.isdigit():
            raise InvalidRequest(f"{parameter.name} must be a non-negative integer")
        return int(value)
    if parameter.type == "instant":
        try:
            moment = datetime.fromisoformat(value.replace(" ", "+").replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise InvalidRequest(f"{parameter.name} must be an instant with a time zone")
        return moment
    if parameter.type == "types":
        names = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [name for name in names if name not in resource_types()]
        if unknown:
            raise InvalidRequest(f"{parameter.name} names unknown types: {', '.join(unknown)}")
        return names
    return value


def parse_arguments(
    operation: Operation, pairs: list[tuple[str, str]], *, strict: bool
) -> dict[str, Any]:
    """The declared parameters of ``operation``, typed; unknown ones are refused under
    strict handling, ignored otherwise (as searches do)."""
    declared = {parameter.name: parameter for parameter in operation.parameters}
    args: dict[str, Any] = {}
    for name, value in pairs:
        parameter = declared.get(name)
        if parameter is None:
            if strict and name not in _TRANSPORT:
                raise UnsupportedParameter(f"${operation.name} has no parameter {name!r}")
            continue
        if name in args:
            raise InvalidRequest(f"{name} is given more than once")
        args[name] = _convert(parameter, value)
    return args
