"""The AuditEvent built for an access: IHE BALP shape, references only."""

from __future__ import annotations

import base64
import datetime as dt

import orjson
from fhir.resources.R4B.auditevent import AuditEvent

from maillage.audit.events import Interaction, Outcome, build_event, redact_query
from maillage.errors import Forbidden
from maillage.security import RequestContext

from .conftest import DOCTOR

WHEN = dt.datetime(2026, 11, 28, 8, 30, 15, 123456, tzinfo=dt.UTC)


def test_read_event_has_the_balp_fields() -> None:
    event = build_event(DOCTOR, "read", "Observation", ["obs-1"], "pat-1", recorded=WHEN)
    AuditEvent.model_validate(event)  # a valid R4 AuditEvent
    assert event["type"]["code"] == "rest"
    assert event["subtype"] == [
        {"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}
    ]
    assert event["action"] == "R"
    assert event["recorded"] == "2026-11-28T08:30:15.123456Z"
    assert (event["outcome"], event["outcomeDesc"]) == ("0", "success")
    user, hub, organisation = event["agent"]
    assert user["who"] == {"reference": "Practitioner/dr-martin"}
    assert user["requestor"] is True
    assert user["role"][0]["coding"][0]["code"] == "physician"
    assert user["location"]["identifier"]["value"] == "chu-nord"
    assert hub["requestor"] is False and hub["who"]["identifier"]["value"] == "maillage"
    assert organisation["who"] == {"reference": "Organization/chu-nord"}
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert event["source"]["site"] == "chu-nord"
    patient, observation = event["entity"]
    assert patient["what"] == {"reference": "Patient/pat-1"}
    assert (patient["type"]["code"], patient["role"]["code"]) == ("1", "1")
    assert observation["what"] == {"reference": "Observation/obs-1"}
    assert observation["role"]["code"] == "4"


def test_actions_by_interaction() -> None:
    expected = {"create": "C", "update": "U", "patch": "U", "delete": "D", "vread": "R"}
    expected |= {"history-instance": "R", "search-type": "E", "operation": "E"}
    for interaction, action in expected.items():
        event = build_event(DOCTOR, interaction, "Patient", ["p"], "p", recorded=WHEN)
        assert event["action"] == action
        assert event["subtype"][0]["code"] == interaction
    assert {member.value for member in Interaction} >= set(expected)


def test_break_the_glass_is_flagged() -> None:
    ctx = RequestContext(who="Practitioner/urg", purpose="ETREAT", roles=frozenset({"nurse"}))
    event = build_event(ctx, "read", "Patient", ["p"], "p", recorded=WHEN)
    codes = [coding["code"] for coding in event["purposeOfEvent"][0]["coding"]]
    assert codes == ["ETREAT", "BTG"]
    assert event["agent"][0]["purposeOfUse"] == event["purposeOfEvent"]


def test_failures_are_described_without_their_message() -> None:
    refused = Forbidden("Patient Jeanne DUPONT born 1950-02-03 is not in your care")
    event = build_event(DOCTOR, "read", "Patient", ["p"], "p", refused, recorded=WHEN)
    assert (event["outcome"], event["outcomeDesc"]) == ("4", "Forbidden (forbidden)")
    crash = build_event(DOCTOR, "read", "Patient", [], None, RuntimeError("x"), recorded=WHEN)
    assert crash["outcome"] == "8"
    assert "entity" not in crash
    assert build_event(DOCTOR, "read", "Patient", [], None, Outcome.MAJOR_FAILURE,
                       recorded=WHEN)["outcome"] == "12"  # fmt: skip


def test_search_query_is_kept_without_identity_traits() -> None:
    query = "family=DUPONT&given:exact=Jeanne&birthdate=1950-02-03&gender=female&_count=10"
    event = build_event(
        DOCTOR, "search-type", "Patient", ["p1", "p2"], "p1", query=query, recorded=WHEN
    )
    AuditEvent.model_validate(event)
    query_entity = event["entity"][-1]
    assert query_entity["role"]["code"] == "24"
    text = base64.b64decode(query_entity["query"]).decode()
    assert "family=***" in text and "given:exact=***" in text and "birthdate=***" in text
    assert "gender=female" in text and "_count=10" in text
    # the patient is one entity, the other result a resource entity
    assert [e.get("what") for e in event["entity"][:2]] == [
        {"reference": "Patient/p1"},
        {"reference": "Patient/p2"},
    ]
    serialised = orjson.dumps(event).decode()
    for personal in ("DUPONT", "Jeanne", "1950"):
        assert personal not in serialised


def test_redact_chained_parameters() -> None:
    assert redact_query("subject:Patient.name=Martin&code=1234") == (
        "subject:Patient.name=***&code=1234"
    )


def test_a_user_that_is_not_a_reference_is_an_identifier() -> None:
    event = build_event(RequestContext.system("loader"), "create", "Patient", ["p"], "p",
                        recorded=WHEN)  # fmt: skip
    assert event["agent"][0]["who"] == {
        "identifier": {"system": "urn:maillage:user", "value": "system:loader"}
    }
    assert "location" not in event["agent"][0]
