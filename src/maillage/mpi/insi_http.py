"""INSi over the hub's FHIR API: ``Patient/$insi-search`` and ``Patient/$insi-verify``.

The only module of ``maillage.national`` that imports Starlette (and the FHIR HTTP
helpers: format negotiation, body limits, the one translation of domain errors to an
OperationOutcome in ``fhir/http/outcomes.py``).

``POST /fhir/Patient/$insi-search`` takes a ``Parameters`` resource with either a
``patient`` parameter (a Patient resource, read as ``identity.patient_traits`` reads
it: the official name's family and given names, ``gender``, ``birthDate``, the INSEE
code of the ``patient-birthPlace`` address) or trait parameters, which also override
the Patient's:

    birthName   string   the birth name
    firstName   string   a birth first name, repeated in order (or one value, the list
                         separated by spaces: INSi's own convention)
    gender      code     male | female
    birthDate   date     YYYY-MM-DD
    birthPlace  string   INSEE code of the birthplace (commune, or 99 + country)

It answers a ``Parameters`` resource: ``status`` (``found``, ``not_found``,
``several``), ``code`` (INSi's 00, 01, 02) and, when found, ``ins`` (the INS
identifier) and ``patient`` (the reference traits as a FR Core Patient carrying the
INS identifier; not stored).

``POST /fhir/Patient/$insi-verify`` takes the same traits and the INS to check as an
``ins`` Identifier parameter (else the Patient's INS identifier), and answers
``status`` (``verified``, ``mismatch``, ``unknown``) and one ``differs`` code per
differing trait (``birth_name``, ``first_name``, ``first_names``, ``sex``,
``birth_date``, ``birthplace``).

Missing traits or a malformed INS answer 400, an unavailable teleservice 503, each
with an OperationOutcome. The request is not logged: it holds personal data.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maillage.errors import InvalidRequest
from maillage.fhir.http import requests as req
from maillage.fhir.http.responses import fhir_response
from maillage.fhir.http.routes import fhir_endpoint
from maillage.identity.ins import OID_NIA, OID_NIR, OID_NIR_DEMO, OID_NIR_TEST
from maillage.identity.patient_traits import BIRTH_PLACE_URL, INSEE_CODE_URL, patient_traits
from maillage.national.insi import InsiIdentity, InsiTeleservice

DEFAULT_MAX_BODY: Final = 64 * 1024

FR_IDENTIFIER_TYPE_SYSTEM: Final = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
# FR Core identifier types of an INS (fr-core-cs-v2-0203). INS-NIR and INS-NIA were
# checked against the FR Core IG; the test and demo codes could not be: correct here.
INS_IDENTIFIER_TYPES: Final = {
    OID_NIR: ("INS-NIR", "NIR définitif"),
    OID_NIA: ("INS-NIA", "NIR temporaire"),
    OID_NIR_TEST: ("INS-NIR-TEST", "NIR définitif de test"),
    OID_NIR_DEMO: ("INS-NIR-DEMO", "NIR définitif de démonstration"),
}
# The code system of French communes the FR Core INSEE code value set binds to
# (fr-core-vs-insee-code); a birth abroad (99 + country) is coded without a system.
COMMUNE_SYSTEM: Final = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"

# Trait parameters → keys of the raw traits (``patient_traits``).
_TRAIT_PARAMETERS: Final = {
    "birthName": "birth_name",
    "gender": "sex",
    "birthDate": "birth_date",
    "birthPlace": "birthplace",
}
_KNOWN: Final = frozenset({*_TRAIT_PARAMETERS, "firstName", "patient", "ins"})


def insi_routes(
    teleservice: InsiTeleservice, *, prefix: str = "/fhir", max_body_bytes: int = DEFAULT_MAX_BODY
) -> list[Route]:
    """The two INSi operations, to mount before the FHIR API's routes (its
    ``Patient/{id}`` pattern would otherwise take ``Patient/$insi-search``)."""
    api = _InsiApi(teleservice, max_body_bytes)
    return [
        Route(f"{prefix}/Patient/$insi-search", fhir_endpoint(api.search), methods=["POST"]),
        Route(f"{prefix}/Patient/$insi-verify", fhir_endpoint(api.verify), methods=["POST"]),
    ]


class _InsiApi:
    def __init__(self, teleservice: InsiTeleservice, max_body: int) -> None:
        self.teleservice = teleservice
        self.max_body = max_body

    async def search(self, request: Request) -> Response:
        parameters = _parameters(await req.json_body(request, self.max_body))
        result = await self.teleservice.search(_traits(parameters))
        out: list[dict[str, Any]] = [
            {"name": "status", "valueCode": result.status.value},
            {"name": "code", "valueCode": result.code},
        ]
        if result.identity is not None:
            out.append({"name": "ins", "valueIdentifier": ins_identifier(result.identity)})
            out.append({"name": "patient", "resource": reference_patient(result.identity)})
        return fhir_response({"resourceType": "Parameters", "parameter": out})

    async def verify(self, request: Request) -> Response:
        parameters = _parameters(await req.json_body(request, self.max_body))
        traits = _traits(parameters)
        matricule, oid = _ins(parameters, traits)
        verification = await self.teleservice.verify(matricule, oid, traits)
        out: list[dict[str, Any]] = [{"name": "status", "valueCode": verification.status.value}]
        out.extend({"name": "differs", "valueCode": trait} for trait in verification.differing)
        return fhir_response({"resourceType": "Parameters", "parameter": out})


def ins_identifier(identity: InsiIdentity) -> dict[str, Any]:
    code, display = INS_IDENTIFIER_TYPES[identity.oid]
    return {
        "use": "official",
        "type": {
            "coding": [{"system": FR_IDENTIFIER_TYPE_SYSTEM, "code": code, "display": display}]
        },
        "system": identity.oid,
        "value": identity.matricule,
    }


def reference_patient(identity: InsiIdentity) -> dict[str, Any]:
    """The INS traits as a FR Core Patient (official name = birth name and birth first
    names), with the INS identifier and the birthplace's INSEE code."""
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [ins_identifier(identity)],
        "name": [
            {"use": "official", "family": identity.birth_name, "given": list(identity.first_names)}
        ],
        "gender": identity.gender,
        "birthDate": identity.birth_date.isoformat(),
    }
    if identity.birthplace:
        coding: dict[str, str] = {"code": identity.birthplace}
        if not identity.birthplace.startswith("99"):
            coding = {"system": COMMUNE_SYSTEM, **coding}
        patient["extension"] = [
            {
                "url": BIRTH_PLACE_URL,
                "valueAddress": {"extension": [{"url": INSEE_CODE_URL, "valueCoding": coding}]},
            }
        ]
    return patient


def _parameters(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest("an INSi operation's body is a Parameters resource")
    parameters = body.get("parameter") or []
    if not isinstance(parameters, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) for p in parameters
    ):
        raise InvalidRequest("each parameter of the Parameters resource has a name")
    for parameter in parameters:
        if parameter["name"] not in _KNOWN:
            raise InvalidRequest(
                f"unknown parameter {parameter['name']!r}: use patient, birthName, firstName,"
                " gender, birthDate, birthPlace (and ins to verify)"
            )
    return parameters


def _traits(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    traits: dict[str, Any] = {}
    patients = [p.get("resource") for p in parameters if p["name"] == "patient"]
    if patients:
        patient = patients[0]
        if len(patients) > 1 or not isinstance(patient, dict):
            raise InvalidRequest("the patient parameter is one Patient resource")
        if patient.get("resourceType") != "Patient":
            raise InvalidRequest("the patient parameter is one Patient resource")
        traits = patient_traits(patient)
    for parameter in parameters:
        key = _TRAIT_PARAMETERS.get(parameter["name"])
        if key is not None:
            traits[key] = _primitive(parameter)
    first_names = [_primitive(p) for p in parameters if p["name"] == "firstName"]
    if first_names:
        traits["first_names"] = first_names
        traits["first_name"] = None
    return traits


def _ins(parameters: list[dict[str, Any]], traits: dict[str, Any]) -> tuple[str, str]:
    for parameter in parameters:
        if parameter["name"] == "ins":
            identifier = parameter.get("valueIdentifier")
            if not isinstance(identifier, dict):
                raise InvalidRequest("the ins parameter is an Identifier (system and value)")
            system, value = identifier.get("system"), identifier.get("value")
            if not isinstance(system, str) or not isinstance(value, str):
                raise InvalidRequest("the ins Identifier has a system (the INS OID) and a value")
            return value, system
    if traits.get("ins") and traits.get("ins_system"):
        return str(traits["ins"]), str(traits["ins_system"])
    raise InvalidRequest(
        "the INS to verify is required: an ins Identifier parameter, or the patient's"
        " INS identifier"
    )


def _primitive(parameter: dict[str, Any]) -> str:
    values = [
        value
        for key, value in parameter.items()
        if key.startswith("value") and isinstance(value, str)
    ]
    if len(values) != 1:
        raise InvalidRequest(f"the {parameter['name']} parameter has one text value[x]")
    return values[0]
