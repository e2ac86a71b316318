"""Batch and transaction Bundles (FHIR R4 http.html#transaction)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests import factories
from tests.fhir.support import assert_outcome, body, create, search_ids


def _post(http: httpx.Client, bundle: dict[str, Any], **headers: str) -> httpx.Response:
    return http.post("", json=bundle, headers=headers)


def _ok(http: httpx.Client, bundle: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = _post(http, bundle, **headers)
    assert response.status_code == 200, response.text
    result = body(response)
    assert result["resourceType"] == "Bundle"
    assert result["type"] == f"{bundle['type']}-response"
    assert len(result["entry"]) == len(bundle["entry"])
    return dict(result)


def _token(ident: dict[str, str]) -> str:
    return f"{ident['system']}|{ident['value']}"


# -- transaction: references ----------------------------------------------------------
def test_transaction_from_the_spec_resolves_urn_uuid_references(http: httpx.Client) -> None:
    sent = factories.load_fixture("transaction-admission.json")
    result = _ok(http, sent)
    observation_entry, encounter_entry, patient_entry = result["entry"]
    for item in result["entry"]:
        assert item["response"]["status"] == "201 Created"
        assert item["response"]["etag"] == 'W/"1"'
        assert item["response"]["lastModified"] == item["resource"]["meta"]["lastUpdated"]
        assert item["fullUrl"].endswith(item["response"]["location"].split("/_history")[0])
    patient_ref = patient_entry["response"]["location"].split("/_history")[0]
    encounter_ref = encounter_entry["response"]["location"].split("/_history")[0]
    assert patient_ref.startswith("Patient/")
    observation = body(http.get(f"/{observation_entry['response']['location']}"))
    assert observation["subject"]["reference"] == patient_ref
    assert observation["encounter"]["reference"] == encounter_ref
    # References in the narrative are rewritten too.
    assert f'href="{patient_ref}"' in observation["text"]["div"]
    assert "urn:uuid" not in str(observation)
    encounter = body(http.get(f"/{encounter_ref}"))
    assert encounter["subject"]["reference"] == patient_ref
    # The response entries carry the stored resources in the request's order.
    assert observation_entry["resource"]["resourceType"] == "Observation"
    assert patient_entry["resource"]["resourceType"] == "Patient"


def test_transaction_conditional_create_reuses_the_existing_resource(http: httpx.Client) -> None:
    first = _ok(http, factories.load_fixture("transaction-admission.json"))
    again = _ok(http, factories.load_fixture("transaction-admission.json"))
    assert again["entry"][2]["response"]["status"] == "200 OK"
    assert again["entry"][2]["response"]["location"] == first["entry"][2]["response"]["location"]
    assert len(search_ids(http, "/Patient")) == 1
    patient_ref = first["entry"][2]["response"]["location"].split("/_history")[0]
    observations = body(http.get("/Observation", params={"subject": patient_ref}))
    assert observations["total"] == 2


def test_transaction_resolves_conditional_references(http: httpx.Client) -> None:
    ident = factories.identifier()
    patient = create(http, factories.patient(identifiers=[ident]))
    result = _ok(
        http,
        factories.transaction(
            factories.entry(
                "POST",
                "Observation",
                factories.observation(subject=f"Patient?identifier={_token(ident)}"),
            )
        ),
    )
    observation = body(http.get(f"/{result['entry'][0]['response']['location']}"))
    assert observation["subject"]["reference"] == f"Patient/{patient['id']}"


def test_conditional_reference_to_a_patient_created_in_the_same_transaction(
    http: httpx.Client,
) -> None:
    ident = factories.identifier()
    criteria = f"identifier={_token(ident)}"
    result = _ok(
        http,
        factories.transaction(
            factories.entry(
                "POST", "Observation", factories.observation(subject=f"Patient?{criteria}")
            ),
            factories.entry(
                "POST",
                "Patient",
                factories.patient(identifiers=[ident]),
                full_url=factories.new_urn(),
                if_none_exist=criteria,
            ),
        ),
    )
    patient_ref = result["entry"][1]["response"]["location"].split("/_history")[0]
    observation = body(http.get(f"/{result['entry'][0]['response']['location']}"))
    assert observation["subject"]["reference"] == patient_ref


def test_failed_conditional_references_fail_the_transaction(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    ident = factories.identifier()
    observation = factories.observation(subject=f"Patient?identifier={_token(ident)}")
    unmatched = factories.transaction(
        factories.entry("POST", "Organization", factories.organization()),
        factories.entry("POST", "Observation", observation),
    )
    assert_outcome(_post(http, unmatched), 404, says="Bundle.entry[1]")
    create(http, factories.patient(identifiers=[ident]))
    create(http, factories.patient(identifiers=[ident]))
    assert_outcome(_post(http, unmatched), 412, says="Bundle.entry[1]")
    assert stored_rows("resource") == 2


def test_unknown_urn_uuid_reference_fails_the_transaction(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    response = _post(
        http,
        factories.transaction(
            factories.entry("POST", "Patient", factories.patient(), full_url=factories.new_urn()),
            factories.entry(
                "POST", "Observation", factories.observation(subject=factories.new_urn())
            ),
        ),
    )
    assert_outcome(response, 400, says="urn:uuid")
    assert stored_rows("resource") == 0


def test_uri_elements_naming_an_entry_are_rewritten_but_identifiers_are_kept(
    http: httpx.Client,
) -> None:
    urn = factories.new_urn()
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": urn},
        "subject": {"reference": urn},
        "content": [{"attachment": {"contentType": "application/pdf", "url": urn}}],
    }
    result = _ok(
        http,
        factories.transaction(
            factories.entry("POST", "Patient", factories.patient(), full_url=urn),
            factories.entry("POST", "DocumentReference", document),
        ),
    )
    patient_ref = result["entry"][0]["response"]["location"].split("/_history")[0]
    stored = body(http.get(f"/{result['entry'][1]['response']['location']}"))
    assert stored["subject"]["reference"] == patient_ref
    assert stored["content"][0]["attachment"]["url"] == patient_ref
    assert stored["masterIdentifier"]["value"] == urn


def test_put_entries_with_urn_full_urls_are_referenced_by_their_url(http: httpx.Client) -> None:
    patient_urn = factories.new_urn()
    result = _ok(
        http,
        factories.transaction(
            factories.entry(
                "PUT", "Patient/known-1", factories.patient(id="known-1"), full_url=patient_urn
            ),
            factories.entry("POST", "Observation", factories.observation(subject=patient_urn)),
        ),
    )
    assert result["entry"][0]["response"]["status"] == "201 Created"
    observation = body(http.get(f"/{result['entry'][1]['response']['location']}"))
    assert observation["subject"]["reference"] == "Patient/known-1"


def test_conditional_put_entry_with_urn_full_url_is_referenced(http: httpx.Client) -> None:
    ident = factories.identifier()
    existing = create(http, factories.patient(identifiers=[ident]))
    fresh = factories.identifier()
    first_urn, second_urn = factories.new_urn(), factories.new_urn()
    result = _ok(
        http,
        factories.transaction(
            factories.entry(
                "PUT",
                f"Patient?identifier={_token(ident)}",
                factories.patient(identifiers=[ident], gender="male"),
                full_url=first_urn,
            ),
            factories.entry(
                "PUT",
                f"Patient?identifier={_token(fresh)}",
                factories.patient(identifiers=[fresh]),
                full_url=second_urn,
            ),
            factories.entry("POST", "Observation", factories.observation(subject=first_urn)),
            factories.entry("POST", "Observation", factories.observation(subject=second_urn)),
        ),
    )
    statuses = [item["response"]["status"] for item in result["entry"]]
    assert statuses == ["200 OK", "201 Created", "201 Created", "201 Created"]
    created_ref = result["entry"][1]["response"]["location"].split("/_history")[0]
    first = body(http.get(f"/{result['entry'][2]['response']['location']}"))
    second = body(http.get(f"/{result['entry'][3]['response']['location']}"))
    assert first["subject"]["reference"] == f"Patient/{existing['id']}"
    assert second["subject"]["reference"] == created_ref


# -- transaction: atomicity and checks ------------------------------------------------
def test_one_invalid_entry_fails_the_whole_transaction(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    existing = create(http, factories.patient(gender="female"))
    response = _post(
        http,
        factories.transaction(
            factories.entry("POST", "Organization", factories.organization()),
            factories.entry("PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"}),
            factories.entry("DELETE", "Organization/whatever"),
            factories.entry("POST", "Patient", factories.patient(birth_date="1980-02-31")),
        ),
    )
    outcome = assert_outcome(response, 422, says="Bundle.entry[3]")
    assert "Patient.birthDate" in str(outcome)
    assert stored_rows("resource") == 1
    assert stored_rows("resource_version") == 0
    assert body(http.get(f"/Patient/{existing['id']}"))["gender"] == "female"


def test_post_entry_whose_resource_type_differs_from_its_url_fails(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    response = _post(
        http,
        factories.transaction(
            factories.entry(
                "POST", "Patient", factories.organization(), full_url=factories.new_urn()
            )
        ),
    )
    assert_outcome(response, 400, says="Bundle.entry[0]")
    assert stored_rows("resource") == 0


def test_a_resource_may_appear_only_once_in_a_transaction(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    existing = create(http, factories.patient(gender="female"))
    response = _post(
        http,
        factories.transaction(
            factories.entry("PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"}),
            factories.entry("DELETE", f"Patient/{existing['id']}"),
        ),
    )
    assert_outcome(response, 400, says=f"Patient/{existing['id']}")
    assert stored_rows("resource_version") == 0


def test_a_full_url_may_name_only_one_entry(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    urn = factories.new_urn()
    response = _post(
        http,
        factories.transaction(
            factories.entry("POST", "Patient", factories.patient(), full_url=urn),
            factories.entry("POST", "Patient", factories.patient(), full_url=urn),
            factories.entry("POST", "Observation", factories.observation(subject=urn)),
        ),
    )
    assert_outcome(response, 400, says="Bundle.entry[1]")
    assert stored_rows("resource") == 0


def test_transaction_processes_delete_post_put_then_get(http: httpx.Client) -> None:
    ident = factories.identifier()
    old = create(http, factories.patient(identifiers=[ident], gender="female"))
    put_target = create(http, factories.patient(gender="female"))
    result = _ok(
        http,
        factories.transaction(
            # GET listed first, processed last: it sees the writes.
            factories.entry("GET", f"Patient?identifier={_token(ident)}"),
            # PUT listed before POST, processed after it.
            factories.entry("PUT", f"Patient/{put_target['id']}", {**put_target, "gender": "male"}),
            # POST listed before DELETE: were it processed first, the conditional
            # delete would match two patients and fail.
            factories.entry("POST", "Patient", factories.patient(identifiers=[ident])),
            factories.entry("DELETE", f"Patient?identifier={_token(ident)}"),
            factories.entry("GET", f"Patient/{put_target['id']}"),
        ),
    )
    statuses = [item["response"]["status"] for item in result["entry"]]
    assert statuses == ["200 OK", "200 OK", "201 Created", "204 No Content", "200 OK"]
    new_ref = result["entry"][2]["response"]["location"].split("/_history")[0]
    searchset = result["entry"][0]["resource"]
    assert searchset["type"] == "searchset"
    assert [item["resource"]["id"] for item in searchset["entry"]] == [new_ref.split("/")[1]]
    assert result["entry"][4]["resource"]["gender"] == "male"
    assert_outcome(http.get(f"/Patient/{old['id']}"), 410)


def test_transaction_response_entries_follow_prefer_return(http: httpx.Client) -> None:
    sent = factories.transaction(factories.entry("POST", "Patient", factories.patient()))
    minimal = _ok(http, sent, Prefer="return=minimal")
    assert "resource" not in minimal["entry"][0]
    assert minimal["entry"][0]["response"]["location"].startswith("Patient/")
    full = _ok(http, sent)
    assert full["entry"][0]["resource"]["resourceType"] == "Patient"


def test_transaction_patch_entry_applies_a_json_patch(http: httpx.Client) -> None:
    existing = create(http, factories.patient(gender="female"))
    patch = factories.json_patch_binary([{"op": "replace", "path": "/gender", "value": "male"}])
    result = _ok(
        http,
        factories.transaction(
            factories.entry("PATCH", f"Patient/{existing['id']}", patch, if_match='W/"1"')
        ),
    )
    assert result["entry"][0]["response"]["etag"] == 'W/"2"'
    assert body(http.get(f"/Patient/{existing['id']}"))["gender"] == "male"


def test_transaction_if_match_conflict_fails_with_412(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    existing = create(http, factories.patient())
    response = _post(
        http,
        factories.transaction(
            factories.entry("POST", "Organization", factories.organization()),
            factories.entry(
                "PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"}, if_match='W/"9"'
            ),
        ),
    )
    assert_outcome(response, 412, says="Bundle.entry[1]")
    assert stored_rows("resource") == 1


def test_empty_transaction_is_fine(http: httpx.Client) -> None:
    response = _post(http, factories.transaction())
    assert response.status_code == 200
    assert body(response)["type"] == "transaction-response"


# -- batch ----------------------------------------------------------------------------
def test_batch_reports_each_entry_on_its_own(http: httpx.Client) -> None:
    existing = create(http, factories.patient())
    result = _ok(
        http,
        factories.batch(
            factories.entry("POST", "Patient", factories.patient()),
            factories.entry("GET", "Patient/nobody"),
            factories.entry("POST", "Patient", factories.patient(birth_date="soon")),
            factories.entry("GET", f"Patient/{existing['id']}"),
            factories.entry("PATCH", "Patient", factories.json_patch_binary([])),
            factories.entry("GET", "Patient/a/b/c"),
        ),
    )
    responses = [item["response"] for item in result["entry"]]
    assert [response["status"][:3] for response in responses] == [
        "201",
        "404",
        "422",
        "200",
        "400",
        "400",
    ]
    for failed in (responses[1], responses[2], responses[4], responses[5]):
        assert failed["outcome"]["resourceType"] == "OperationOutcome"
    assert "Patient.birthDate" in str(responses[2]["outcome"])
    assert result["entry"][3]["resource"]["id"] == existing["id"]
    assert len(search_ids(http, "/Patient")) == 2


def test_batch_search_entry_returns_a_searchset(http: httpx.Client) -> None:
    ident = factories.identifier()
    patient = create(http, factories.patient(identifiers=[ident]))
    result = _ok(
        http, factories.batch(factories.entry("GET", f"Patient?identifier={_token(ident)}"))
    )
    searchset = result["entry"][0]["resource"]
    assert [item["resource"]["id"] for item in searchset["entry"]] == [patient["id"]]


def test_only_batch_and_transaction_bundles_are_processed(http: httpx.Client) -> None:
    assert_outcome(_post(http, factories.bundle("collection", [])), 400)
    assert_outcome(_post(http, factories.patient()), 400)
    bad_method = factories.transaction({"request": {"method": "TRACE", "url": "Patient"}})
    assert_outcome(_post(http, bad_method), 400, says="Bundle.entry[0]")
    no_request = factories.transaction({"resource": factories.patient()})
    assert_outcome(_post(http, no_request), 400, says="Bundle.entry[0]")
