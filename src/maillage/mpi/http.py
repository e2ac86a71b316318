"""The patient index's FHIR operations over HTTP: PIXm ``$ihe-pix`` and ``$match``.

    GET  /fhir/Patient/$ihe-pix?sourceIdentifier=system|value[&targetSystem=uri]...
    POST /fhir/Patient/$ihe-pix   (a ``Parameters``: ``sourceIdentifier`` as valueString
         ``system|value`` as IHE's own example, or valueIdentifier; ``targetSystem``
         valueUri or valueString, repeating; R4 operations.html#executing)
         IHE PIXm [ITI-83]: a ``Parameters`` with ``targetIdentifier`` (Identifier) and
         ``targetId`` (Reference) repeats; the hub's FHIR base is the domain of Logical
         ids (``[base]|Patient/123``). Unknown identifier 404 (``not-found``),
         unknown source domain 400 and unknown target domain 403 (``code-invalid``),
         as ITI-83 2:3.83.4.2.2.2-4 say; an INS shared by several territorial
         identities 409.
    POST /fhir/Patient/$match   (a ``Parameters``: ``resource``, ``onlyCertainMatches``,
         ``count``) FHIR R4 Patient/$match: a searchset Bundle of territorial identities
         (golden Patients), each with ``search.mode`` = match, ``search.score`` and the
         ``match-grade`` extension (see ``lookup.py`` for the grades); warnings come as an
         OperationOutcome entry (``search.mode`` = outcome). A missing ``resource`` 400, a
         resource that is not a valid Patient 400/422.

Both are declared in ``fhir/operations`` (CapabilityStatement). On a hub whose patient
index is off they stay mounted and answer 501 with an OperationOutcome saying so (the
CapabilityStatement lists them either way; a 404 would read as "unknown patient").
Errors go through the one translation, ``fhir/http/outcomes.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maillage.errors import InvalidRequest, Issue
from maillage.fhir import operations
from maillage.fhir.http import requests as req
from maillage.fhir.http.outcomes import operation_outcome
from maillage.fhir.http.responses import fhir_response
from maillage.fhir.http.routes import fhir_endpoint
from maillage.fhir.repository import FhirStore
from maillage.fhir.validation import validate_resource
from maillage.mpi.index import PatientIndex
from maillage.mpi.lookup import PatientLookup

MATCH_GRADE_URL: Final = "http://hl7.org/fhir/StructureDefinition/match-grade"
DEFAULT_MAX_BODY: Final = 1024 * 1024


def lookup_routes(
    fhir: FhirStore,
    index: PatientIndex | None,
    base_url: Callable[[Request], str],
    max_body_bytes: int = DEFAULT_MAX_BODY,
    *,
    prefix: str = "/fhir",
) -> list[Route]:
    """To mount before the FHIR API's routes (its ``Patient/{id}`` would take them)."""
    api = _LookupApi(PatientLookup(fhir, index) if index else None, base_url, max_body_bytes)
    return [
        Route(f"{prefix}/Patient/$ihe-pix", fhir_endpoint(api.pix), methods=["GET", "POST"]),
        Route(f"{prefix}/Patient/$match", fhir_endpoint(api.match), methods=["POST"]),
    ]


class _LookupApi:
    def __init__(
        self,
        lookup: PatientLookup | None,
        base_url: Callable[[Request], str],
        max_body: int,
    ) -> None:
        self.lookup = lookup
        self.base_url = base_url
        self.max_body = max_body

    async def pix(self, request: Request) -> Response:
        if self.lookup is None:
            return _index_off("$ihe-pix")
        operation = operations.find("ihe-pix", "type", "Patient")
        pairs = req.query_params(request)
        if request.method == "POST":
            pairs = [*pairs, *_pix_body(await req.json_body(request, self.max_body))]
        # targetSystem repeats (0..*, ITI-83 2:3.83.4.1.2.2); the rest is parsed as declared
        targets = [value for name, value in pairs if name == "targetSystem"]
        strict = req.preferences(request).handling == "strict"
        args = operations.parse_arguments(
            operation, [(n, v) for n, v in pairs if n != "targetSystem"], strict=strict
        )
        if "sourceIdentifier" not in args:
            raise InvalidRequest("sourceIdentifier (system|value) is required")
        found = await self.lookup.cross_references(
            req.context_of(request),
            args["sourceIdentifier"],
            targets,
            fhir_base=self.base_url(request),
        )
        parameters: list[dict[str, Any]] = [
            {"name": "targetIdentifier", "valueIdentifier": identifier}
            for identifier in found.identifiers
        ]
        parameters.extend(
            {"name": "targetId", "valueReference": {"reference": f"Patient/{patient_id}"}}
            for patient_id in found.patient_ids
        )
        body: dict[str, Any] = {"resourceType": "Parameters"}
        if parameters:
            body["parameter"] = parameters
        return fhir_response(body)

    async def match(self, request: Request) -> Response:
        if self.lookup is None:
            return _index_off("$match")
        resource, only_certain, count = _match_arguments(
            await req.json_body(request, self.max_body),
            strict=req.preferences(request).handling == "strict",
        )
        result = await self.lookup.match(
            req.context_of(request), resource, only_certain=only_certain, count=count
        )
        base = self.base_url(request)
        entries: list[dict[str, Any]] = [
            {
                "fullUrl": f"{base}/Patient/{match.territorial_id}",
                "resource": orjson.Fragment(match.patient.body or "{}"),
                "search": {
                    "extension": [{"url": MATCH_GRADE_URL, "valueCode": match.grade}],
                    "mode": "match",
                    "score": round(match.score, 6),
                },
            }
            for match in result.matches
        ]
        if result.warnings:
            issues = [Issue(w, severity="warning", code="informational") for w in result.warnings]
            entries.append({"resource": operation_outcome(issues), "search": {"mode": "outcome"}})
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(result.matches),
            "link": [{"relation": "self", "url": f"{base}/Patient/$match"}],
        }
        if entries:
            bundle["entry"] = entries
        return fhir_response(bundle)


def _match_arguments(body: Any, *, strict: bool) -> tuple[dict[str, Any], bool, int | None]:
    """``resource`` (a valid Patient), ``onlyCertainMatches``, ``count``."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest("the body of $match is a Parameters resource")
    parameters = body.get("parameter") or []
    if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
        raise InvalidRequest("Parameters.parameter is a list of parameters")
    resources = [p.get("resource") for p in parameters if p.get("name") == "resource"]
    if len(resources) != 1 or resources[0] is None:
        raise InvalidRequest("$match takes exactly one resource parameter: the Patient to match")
    if not isinstance(resources[0], dict) or resources[0].get("resourceType") != "Patient":
        raise InvalidRequest("the resource parameter of $match is a Patient resource")
    patient = validate_resource(resources[0], expected_type="Patient")
    # the primitive parameters through the operation's declaration (count: an integer)
    primitives: list[tuple[str, str]] = []
    for parameter in parameters:
        name = parameter.get("name")
        if name == "resource":
            continue
        values = [v for k, v in parameter.items() if k.startswith("value")]
        if len(values) != 1 or isinstance(values[0], dict | list):
            raise InvalidRequest(f"the {name} parameter has one primitive value[x]")
        value = values[0]
        primitives.append(
            (str(name), str(value).lower() if isinstance(value, bool) else str(value))
        )
    operation = operations.find("match", "type", "Patient")
    args = operations.parse_arguments(operation, primitives, strict=strict)
    only_certain = args.get("onlyCertainMatches", "false")
    if only_certain not in ("true", "false"):
        raise InvalidRequest("onlyCertainMatches is a boolean (true or false)")
    return patient, only_certain == "true", args.get("count")


def _pix_body(body: Any) -> list[tuple[str, str]]:
    """The ``Parameters`` of a POSTed ``$ihe-pix`` as the query's (name, value) pairs."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest("the body of a POST to $ihe-pix must be a Parameters resource")
    pairs: list[tuple[str, str]] = []
    for parameter in body.get("parameter") or []:
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if name == "sourceIdentifier":
            pairs.append((name, _token_of(parameter)))
        elif name == "targetSystem":
            value = parameter.get("valueUri", parameter.get("valueString"))
            if not isinstance(value, str) or not value:
                raise InvalidRequest("targetSystem: a valueUri (the target domain) is expected")
            pairs.append((name, value))
        else:
            raise InvalidRequest(
                f"$ihe-pix has no parameter {name!r} (sourceIdentifier, targetSystem)"
            )
    return pairs


def _token_of(parameter: dict[str, Any]) -> str:
    identifier = parameter.get("valueIdentifier")
    if isinstance(identifier, dict):
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and system and value:
            return f"{system}|{value}"
        raise InvalidRequest("sourceIdentifier: the valueIdentifier needs a system and a value")
    token = parameter.get("valueString", parameter.get("valueToken"))
    if isinstance(token, str):
        return token
    raise InvalidRequest("sourceIdentifier: a valueString system|value or a valueIdentifier")


def _index_off(operation: str) -> Response:
    message = f"{operation} needs the territorial patient index, which is off on this hub"
    return fhir_response(operation_outcome([Issue(message, code="not-supported")]), status=501)
