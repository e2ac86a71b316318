"""Resources the Synthea sample lacks, for the conformance oracle: deterministic, written
with the test factories, pointing at the sample's own resources.

- Observations (``valueQuantity``) and RiskAssessments (``probabilityDecimal``) derived
  from the first encounters: the sample has no quantity or number values;
- Patients with accented names, typed identifiers, a managing organization and a general
  practitioner (two-level chains), Encounters pointing at them (``_has``);
- Observations of every value kind, with components (composite parameters), logical
  references (``:identifier``), tags, security labels, profiles and sources;
- DocumentReferences with ``relatesTo`` and attachment URLs, Procedures with
  ``instantiatesUri``, Devices with ``url`` (uri parameters);
- ValueSets (``:in``/``:not-in``: explicit concepts, a whole system with an exclude,
  imports, a filter, an expansion only, one with the url of an official value set) and
  Lists whose entries reference resources of several types (``_list``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests import factories

QUANTITY_VALUES = ("72", "72.5", "80.25", "1.2e2", "0.5", "100", "99.5", "100.5", "7", "12.35")
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
TAGS = "http://example.org/fhir/tags"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PROFILE = "http://example.org/fhir/StructureDefinition/fr-"
Sample = dict[str, list[dict[str, Any]]]


def derived_resources(sample: Sample) -> list[dict[str, Any]]:
    """Observations (valueQuantity) and RiskAssessments (probability) for the first
    encounters of the sample: the quantity and number values the sample has none of."""
    derived: list[dict[str, Any]] = []
    encounters = sorted(sample["Encounter"], key=lambda encounter: encounter["id"])[:40]
    for number, encounter in enumerate(encounters):
        value = QUANTITY_VALUES[number % len(QUANTITY_VALUES)]
        unit = ("kg", "mm[Hg]", "%")[number % 3]
        quantity: dict[str, Any] = {"value": float(value) if "." in value else int(float(value))}
        quantity.update({"unit": unit, "system": UCUM, "code": unit})
        if number % 7 == 6:
            quantity.pop("system")  # a unit without system
        derived.append(
            {
                "resourceType": "Observation",
                "id": f"derived-obs-{number:03d}",
                "status": "final",
                "code": {
                    "coding": [{"system": "http://loinc.org", "code": f"{29463 + number % 4}-7"}]
                },
                "subject": encounter["subject"],
                "encounter": {"reference": f"Encounter/{encounter['id']}"},
                "effectiveDateTime": encounter["period"]["start"],
                "valueQuantity": quantity,
            }
        )
        derived.append(
            {
                "resourceType": "RiskAssessment",
                "id": f"derived-risk-{number:03d}",
                "status": "final",
                "subject": encounter["subject"],
                "occurrenceDateTime": encounter["period"]["start"][:10],
                "prediction": [{"probabilityDecimal": float(Decimal(value) / 200)}],
            }
        )
    return derived


def _first(sample: Sample, resource_type: str, count: int) -> list[str]:
    return sorted(resource["id"] for resource in sample[resource_type])[:count]


def _typed(code: str, system: str, value: str) -> dict[str, Any]:
    kind = {"coding": [{"system": V2_0203, "code": code}], "text": f"Numéro {code}"}
    return {"type": kind, "system": system, "value": value}


def synthetic_patients(sample: Sample) -> list[dict[str, Any]]:
    organizations = _first(sample, "Organization", 2)
    practitioners = _first(sample, "Practitioner", 2)
    people = [
        ("Lœuillet", ("Hélène",), "1980-02-03", "female"),
        ("Ñúñez-O'Brien", ("Zoë", "Anne-Marie"), "1975", "male"),
        ("Østergård", ("Åsa",), "2001-05", "female"),
        ("Nguyễn", ("Thị", "Lan"), "1990-12-31", "female"),
    ]
    patients = []
    for number, (family, given, birth, gender) in enumerate(people):
        extra: dict[str, Any] = {"id": f"syn-pat-{number}"}
        identifiers = [
            _typed("MR", factories.TEST_IPP_SYSTEM, f"IPP{number:04d}"),
            _typed(
                "SS" if number % 2 else "NIIP",
                factories.TEST_NIR_SYSTEM,
                factories.synthetic_nir(f"2800199{100 + number:03d}{number + 1:03d}"),
            ),
        ]
        # An INS is only kept on a qualified identity.
        extra["extension"] = [factories.identity_reliability("QUAL")]
        if number != 2:  # the third has no organization, practitioner or identifier
            extra["managingOrganization"] = {
                "reference": f"Organization/{organizations[number % 2]}"
            }
            extra["generalPractitioner"] = [
                {"reference": f"Practitioner/{practitioners[number % 2]}"}
            ]
        extra["meta"] = _meta(number)
        patient = factories.patient(
            family=family,
            given=given,
            birth_date=birth,
            gender=gender,
            identifiers=identifiers,
            **extra,
        )
        if number == 2:
            patient.pop("identifier")
        patients.append(patient)
    return patients


def _meta(number: int) -> dict[str, Any]:
    """Tags, security labels, profiles and sources, varied by ``number``."""
    meta: dict[str, Any] = {}
    if number % 3 != 2:
        tag = {"system": TAGS, "code": ("vip", "study-7")[number % 2], "display": "Étude"}
        meta["tag"] = [tag] if number % 4 else [tag, {"code": "no-system"}]
    if number % 2 == 0:
        meta["security"] = [{"system": CONFIDENTIALITY, "code": ("R", "N", "V")[number % 3]}]
    if number % 3 != 1:
        meta["profile"] = [f"{PROFILE}{('patient', 'observation', 'core')[number % 3]}"]
    if number % 4 != 3:
        meta["source"] = f"http://example.org/fhir/sources/ehr-{number % 3}#{number}"
    return meta


def synthetic_encounters(sample: Sample) -> list[dict[str, Any]]:
    organizations = _first(sample, "Organization", 3)
    conditions = _first(sample, "Condition", 2)
    encounters = []
    for number in range(4):
        encounters.append(
            factories.encounter(
                subject=f"Patient/syn-pat-{number}",
                start=f"2024-0{number + 1}-1{number}T08:30:00+02:00",
                id=f"syn-enc-{number}",
                serviceProvider={"reference": f"Organization/{organizations[number % 3]}"},
                reasonReference=[{"reference": f"Condition/{conditions[number % 2]}"}],
                meta=_meta(number + 1),
            )
        )
    return encounters


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def synthetic_observations(sample: Sample) -> list[dict[str, Any]]:
    patients = [f"Patient/{pid}" for pid in _first(sample, "Patient", 2)]
    patients += [f"Patient/syn-pat-{number}" for number in range(4)]
    pressures = [(120, 80), (135.5, 85), (100, 120), (80, 60.25), (140, 90), (121, 79)]
    observations = []
    for number, (systolic, diastolic) in enumerate(pressures):
        panel = factories.observation(
            subject=patients[number % len(patients)],
            code="85354-9",
            display="Blood pressure panel",
            effective=f"2024-02-{number + 10}T09:1{number}:00Z",
            id=f"syn-bp-{number}",
            encounter={"reference": f"Encounter/syn-enc-{number % 4}"},
            component=[
                {
                    "code": _concept(factories.LOINC, "8480-6", "Systolic blood pressure"),
                    "valueQuantity": _quantity(systolic, "mm[Hg]"),
                },
                {
                    "code": _concept(factories.LOINC, "8462-4", "Diastolic blood pressure"),
                    "valueQuantity": _quantity(diastolic, "mm[Hg]"),
                },
            ],
            meta=_meta(number),
        )
        panel.pop("valueQuantity")
        if number == 5:
            panel["component"].append(
                {
                    "code": _concept(SNOMED, "271649006", "Posture"),
                    "valueCodeableConcept": _concept(SNOMED, "33586001", "Sitting position"),
                }
            )
        observations.append(panel)
    values: list[tuple[str, str, str, dict[str, Any]]] = [
        (
            "72166-2",
            "Tobacco smoking status",
            "concept",
            {"valueCodeableConcept": _concept(SNOMED, "8517006", "Ex-smoker")},
        ),
        (
            "72166-2",
            "Tobacco smoking status",
            "concept",
            {"valueCodeableConcept": _concept(SNOMED, "266919005", "Never smoked")},
        ),
        ("8251-1", "Service comment", "string", {"valueString": "Hélène va mieux, œdème résolu"}),
        ("8251-1", "Service comment", "string", {"valueString": "Zoë: no change"}),
        ("21612-7", "Reported age", "date", {"valueDateTime": "2023-06-15T10:30:00+02:00"}),
        (
            "21612-7",
            "Reported age",
            "date",
            {"valuePeriod": {"start": "2023-06", "end": "2023-07-02"}},
        ),
        ("8867-4", "Heart rate", "quantity", {"valueQuantity": _quantity(72, "/min")}),
        ("8867-4", "Heart rate", "quantity", {"valueQuantity": _quantity(64.5, "/min")}),
    ]
    for number, (code, display, _, value) in enumerate(values):
        resource = factories.observation(
            subject=patients[number % len(patients)],
            code=code,
            display=display,
            effective=f"2023-0{number % 9 + 1}-0{number % 9 + 1}",
            id=f"syn-obs-{number}",
            meta=_meta(number + 2),
            performer=[
                {"identifier": {"system": factories.TEST_IPP_SYSTEM, "value": f"RPPS{number % 3}"}}
            ],
        )
        resource.pop("valueQuantity")
        resource.update(value)
        observations.append(resource)
    return observations


def synthetic_others(sample: Sample) -> list[dict[str, Any]]:
    documents = _first(sample, "DocumentReference", 3)
    urls = (
        "http://example.org/docs/2024/report-001.pdf",
        "https://example.org/docs/2024/report-002.pdf",
        "urn:oid:1.2.250.1.999.7.3",
    )
    others: list[dict[str, Any]] = []
    for number, url in enumerate(urls):
        others.append(
            {
                "resourceType": "DocumentReference",
                "id": f"syn-doc-{number}",
                "meta": _meta(number),
                "status": "current",
                "subject": {"reference": f"Patient/syn-pat-{number}"},
                "relatesTo": [
                    {
                        "code": "replaces",
                        "target": {"reference": f"DocumentReference/{documents[number]}"},
                    },
                    {
                        "code": "appends",
                        "target": {"reference": f"DocumentReference/{documents[(number + 1) % 3]}"},
                    },
                ][: 2 if number < 2 else 1],
                "content": [{"attachment": {"contentType": "application/pdf", "url": url}}],
            }
        )
    for number, uri in enumerate(
        ("http://example.org/protocols/knee/v2", "http://example.org/protocols/knee")
    ):
        others.append(
            {
                "resourceType": "Procedure",
                "id": f"syn-proc-{number}",
                "status": "completed",
                "instantiatesUri": [uri],
                "subject": {"reference": f"Patient/syn-pat-{number}"},
                "encounter": {"reference": f"Encounter/syn-enc-{number}"},
                "code": _concept(SNOMED, "179344006", "Knee replacement"),
            }
        )
    for number, url in enumerate(
        ("http://example.org/devices/pump-17", "https://example.org/devices/pump-17/v2")
    ):
        others.append(
            {
                "resourceType": "Device",
                "id": f"syn-dev-{number}",
                "url": url,
                "patient": {"reference": f"Patient/syn-pat-{number}"},
                "meta": _meta(number + 1),
            }
        )
    return others


VS = "http://example.org/fhir/ValueSet/conformance-"
CVX = "http://hl7.org/fhir/sid/cvx"
GENDER = "http://hl7.org/fhir/administrative-gender"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ENCOUNTER_STATUS = "http://hl7.org/fhir/ValueSet/encounter-status"


def _codes(sample: Sample, resource_type: str, element: str) -> list[str]:
    """The codes of ``element`` in the sample, most frequent first (ties by code)."""
    counts: dict[str, int] = {}
    for resource in sample[resource_type]:
        for coding in resource.get(element, {}).get("coding", []):
            counts[coding["code"]] = counts.get(coding["code"], 0) + 1
    return sorted(counts, key=lambda code: (-counts[code], code))


def synthetic_value_sets(sample: Sample) -> list[dict[str, Any]]:
    """ValueSets of every compose form the hub expands, over the sample's codes."""
    conditions = _codes(sample, "Condition", "code")
    procedures = _codes(sample, "Procedure", "code")
    vaccines = _codes(sample, "Immunization", "vaccineCode")
    concepts = factories.concepts
    return [
        factories.value_set(
            url=VS + "explicit",
            id="syn-vs-explicit",
            include=[
                concepts(SNOMED, *conditions[1:4], "38341003"),
                # DocumentReference.type has 34117-2 and 51847-2: one in, one out
                concepts(factories.LOINC, "8867-4", "85354-9", "51847-2"),
                concepts(CVX, vaccines[0]),
            ],
        ),
        factories.value_set(  # every SNOMED CT code but the most frequent ones
            url=VS + "snomed-but",
            id="syn-vs-snomed-but",
            include=[{"system": SNOMED}],
            exclude=[concepts(SNOMED, conditions[0], procedures[0], procedures[2])],
        ),
        factories.value_set(  # an import, with codes of another system
            url=VS + "import",
            id="syn-vs-import",
            version="2",
            include=[{"valueSet": [VS + "explicit"]}, concepts(CVX, *vaccines[1:3])],
        ),
        factories.value_set(  # an import of an import, one code excluded
            url=VS + "import-deep",
            id="syn-vs-import-deep",
            include=[{"valueSet": [VS + "import|2"]}],
            exclude=[concepts(CVX, vaccines[1])],
        ),
        factories.value_set(  # an official value set (a v3 filter) imported, AMB out
            url=VS + "encounter-but",
            id="syn-vs-encounter-but",
            include=[{"valueSet": ["http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"]}],
            exclude=[concepts(ACT_CODE, "AMB")],
        ),
        factories.value_set(url=VS + "tags", id="syn-vs-tags", include=[concepts(TAGS, "vip")]),
        factories.value_set(  # a whole system minus an imported value set
            url=VS + "snomed-minus-explicit",
            id="syn-vs-snomed-minus-explicit",
            include=[{"system": SNOMED}],
            exclude=[{"valueSet": [VS + "explicit"]}],
        ),
        factories.value_set(  # the SNOMED CT codes of an imported value set (no others)
            url=VS + "snomed-of-explicit",
            id="syn-vs-snomed-of-explicit",
            include=[{"system": SNOMED, "valueSet": [VS + "explicit"]}],
            exclude=[{"system": CVX}],
        ),
        factories.value_set(  # codes of a system AND of an imported value set
            url=VS + "intersect",
            id="syn-vs-intersect",
            include=[
                {
                    **concepts(SNOMED, *conditions[:3], *procedures[:3]),
                    "valueSet": [VS + "snomed-but"],
                }
            ],
        ),
        factories.value_set(  # a whole code system held by the hub, a code element
            url=VS + "gender-but",
            id="syn-vs-gender-but",
            include=[{"system": GENDER}],
            exclude=[concepts(GENDER, "male")],
        ),
        factories.value_set(  # a filter on a FHIR code system (its concept tree)
            url=VS + "inactive",
            id="syn-vs-inactive",
            include=[
                {
                    "system": CLINICAL,
                    "filter": [{"property": "concept", "op": "is-a", "value": "inactive"}],
                }
            ],
        ),
        factories.value_set(  # an official value set imported, one code excluded
            url=VS + "clinical-but",
            id="syn-vs-clinical-but",
            include=[{"valueSet": ["http://hl7.org/fhir/ValueSet/condition-clinical"]}],
            exclude=[concepts(CLINICAL, "resolved")],
        ),
        factories.value_set(  # no compose: an expansion only
            url=VS + "expanded",
            id="syn-vs-expanded",
            expansion={
                "timestamp": "2024-01-01T00:00:00Z",
                "contains": [
                    {"system": CLINICAL, "code": "active"},
                    {"system": ACT_CODE, "code": "EMER"},
                    {"system": GENDER, "code": "female"},
                ],
            },
        ),
        factories.value_set(  # a stored value set with an official url: it takes over
            url=ENCOUNTER_STATUS,
            id="syn-vs-encounter-status",
            version="local",
            include=[concepts("http://hl7.org/fhir/encounter-status", "in-progress")],
        ),
    ]


def synthetic_lists(sample: Sample) -> list[dict[str, Any]]:
    """Lists of mixed types, entries flagged deleted, references that name nothing."""
    patients = _first(sample, "Patient", 5)
    conditions = _first(sample, "Condition", 3)
    encounters = _first(sample, "Encounter", 3)
    first = factories.list_of(
        *(f"Patient/{pid}" for pid in patients[:4]),
        "Observation/syn-bp-0",
        "Observation/derived-obs-001",
        *(f"Condition/{cid}" for cid in conditions[:2]),
        f"Encounter/{encounters[0]}/_history/1",
        "Patient/never-stored",
        "#contained",
        deleted=(f"Patient/{patients[3]}", f"Condition/{conditions[1]}"),
        id="syn-list-0",
    )
    first["entry"].append({"item": {"identifier": {"system": TAGS, "value": "logical"}}})
    first["entry"].append({"item": {"reference": "Patient?identifier=urn:oid:1.2|x"}})
    first["entry"][0]["deleted"] = False  # explicitly not deleted: still in the list
    second = factories.list_of(
        "Patient/syn-pat-0",
        "Patient/syn-pat-3",
        f"Patient/{patients[3]}",
        *(f"Encounter/{eid}" for eid in encounters[1:]),
        "Procedure/syn-proc-0",
        "Observation/syn-bp-0",
        f"Condition/{conditions[2]}",
        f"Practitioner/{_first(sample, 'Practitioner', 1)[0]}",
        deleted=("Observation/syn-bp-0",),
        id="syn-list-1",
    )
    empty = factories.list_of(id="syn-list-2", emptyReason={"text": "nothing yet"})
    empty.pop("entry")
    return [first, second, empty]


def synthetic_resources(sample: Sample) -> list[dict[str, Any]]:
    return [
        *derived_resources(sample),
        *synthetic_patients(sample),
        *synthetic_encounters(sample),
        *synthetic_observations(sample),
        *synthetic_others(sample),
        *synthetic_value_sets(sample),
        *synthetic_lists(sample),
    ]
