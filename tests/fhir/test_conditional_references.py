"""A plain create or update naming a resource by its identifier
(``Practitioner?identifier=system|value``) stores the literal ``Type/id``, as a
transaction would: searches follow it and the care relationships name it."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests import factories
from tests.fhir.support import assert_outcome, body, create, put


def _conditional(resource: dict[str, Any]) -> str:
    first = resource["identifier"][0]
    return f"{resource['resourceType']}?identifier={first['system']}|{first['value']}"


def _encounter(participant: str, **extra: Any) -> dict[str, Any]:
    patient = f"Patient/{factories.new_value('p')}"
    return factories.encounter(
        subject=patient,
        status="in-progress",
        participant=[{"individual": {"reference": participant}}],
        **extra,
    )


def test_a_create_naming_a_practitioner_by_identifier_stores_the_literal(
    http: httpx.Client, database_url: str
) -> None:
    doctor = create(http, factories.practitioner())

    stored = create(http, _encounter(_conditional(doctor)))

    literal = f"Practitioner/{doctor['id']}"
    assert stored["participant"][0]["individual"] == {"reference": literal}
    found = body(http.get("/Encounter", params={"practitioner": literal}))
    assert [entry["resource"]["id"] for entry in found["entry"]] == [stored["id"]]
    with psycopg.connect(database_url) as conn:
        principals = conn.execute(
            "SELECT principal FROM care_access WHERE source_id = %s", (stored["id"],)
        ).fetchall()
    assert (literal,) in principals  # the care relationship names the practitioner


def test_an_update_and_a_conditional_update_resolve_theirs(http: httpx.Client) -> None:
    doctor = create(http, factories.practitioner())
    hospital = create(http, factories.organization())
    encounter = create(http, _encounter(f"Practitioner/{doctor['id']}"))

    updated = put(http, {**encounter, "serviceProvider": {"reference": _conditional(hospital)}})
    assert updated.status_code == 200, updated.text
    assert body(updated)["serviceProvider"] == {"reference": f"Organization/{hospital['id']}"}

    visit = factories.identifier(system="urn:test:visit")
    by_identifier = http.put(
        "/Encounter",
        params={"identifier": f"{visit['system']}|{visit['value']}"},
        json=_encounter(_conditional(doctor), identifier=[visit]),
    )
    assert by_identifier.status_code == 201, by_identifier.text
    assert body(by_identifier)["participant"][0]["individual"] == {
        "reference": f"Practitioner/{doctor['id']}"
    }


def test_a_reference_that_matches_nothing_is_refused_where_it_is(http: httpx.Client) -> None:
    unknown = factories.practitioner()  # never stored
    encounter = _encounter(_conditional(unknown))

    response = http.post("/Encounter", json=encounter)

    # as in a transaction: 404, the entry (here the element) located
    outcome = assert_outcome(response, 404, code="not-found", says="matches nothing")
    assert outcome["issue"][0]["expression"] == ["Encounter.participant[0].individual.reference"]
    # the criteria are not echoed: they may hold a patient's identifier
    assert unknown["identifier"][0]["value"] not in response.text
    subject = encounter["subject"]["reference"]
    assert body(http.get("/Encounter", params={"subject": subject}))["total"] == 0


def test_a_reference_that_matches_several_is_refused(http: httpx.Client) -> None:
    first = create(http, factories.organization())
    create(http, factories.organization(identifier=first["identifier"]))

    response = http.post("/Encounter", json=_encounter(_conditional(first)))

    assert_outcome(response, 412, code="multiple-matches")
