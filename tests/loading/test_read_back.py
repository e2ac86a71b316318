"""Loaded resources read back through the FHIR API exactly as they were in the files, and
are indistinguishable from resources written through the API."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import psycopg

from maillage.loading.service import BulkLoader
from tests.loading.conftest import SYNTHEA_10, read_ndjson, without_server_meta


def _all_of_type(http: httpx.Client, resource_type: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    url: str | None = f"/{resource_type}"
    params: dict[str, str] | None = {"_count": "1000"}
    while url is not None:
        response = http.get(url, params=params)
        assert response.status_code == 200, response.text
        bundle = response.json()
        for entry in bundle.get("entry", []):
            found[entry["resource"]["id"]] = entry["resource"]
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        url, params = (following[0] if following else None), None
    return found


def _literal(node: Any, by_identifier: dict[str, str]) -> Any:
    """``node`` with its conditional references ``Type?identifier=system|value`` written as
    the ``Type/id`` of the one resource of that type carrying that identifier."""
    if isinstance(node, dict):
        return {
            key: by_identifier.get(value, value)
            if key == "reference"
            else _literal(value, by_identifier)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_literal(item, by_identifier) for item in node]
    return node


def _identified(expected: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """``Type?identifier=system|value`` → ``Type/id``, for the identifiers held once."""
    owners: dict[str, set[str]] = {}
    for resource_type, resources in expected.items():
        for resource in resources:
            for identifier in resource.get("identifier", []):
                token = f"{identifier.get('system')}|{identifier.get('value')}"
                owners.setdefault(f"{resource_type}?identifier={token}", set()).add(
                    f"{resource_type}/{resource['id']}"
                )
    return {key: next(iter(found)) for key, found in owners.items() if len(found) == 1}


def test_synthea_export_loads_completely_and_reads_back_identical(
    http: httpx.Client, clean_database: str
) -> None:
    files = sorted(SYNTHEA_10.glob("*.ndjson"))
    as_given = {path.name.split(".")[0]: read_ndjson(path) for path in files}
    total = sum(len(resources) for resources in as_given.values())
    assert total > 7000

    report = BulkLoader(clean_database).load_paths([SYNTHEA_10])

    assert report.rejected == []
    assert (report.files, report.created) == (len(files), total)
    # identical, but for the export's conditional references (practitioners,
    # organisations, locations), each resolved to the resource it names
    by_identifier = _identified(as_given)
    expected = {kind: _literal(found, by_identifier) for kind, found in as_given.items()}
    conditional = sum(
        str(resource).count("?identifier=") for found in as_given.values() for resource in found
    )
    assert conditional > 9000
    assert not any("?identifier=" in str(found) for found in expected.values())
    found = report.references
    assert (found.before + found.rewritten, dict(found.unresolved)) == (conditional, {})
    for resource_type, resources in expected.items():
        served = _all_of_type(http, resource_type)
        assert len(served) == len(resources), resource_type
        for resource in resources:
            body = served[resource["id"]]
            assert body["meta"]["versionId"] == "1"
            assert without_server_meta(body) == resource, (resource_type, resource["id"])
        for resource in resources[:2]:
            read = http.get(f"/{resource_type}/{resource['id']}")
            assert read.status_code == 200
            assert read.headers["etag"] == 'W/"1"'
            assert without_server_meta(read.json()) == resource
    # References between loaded resources serve searches: encounters per patient.
    per_patient = Counter(encounter["subject"]["reference"] for encounter in expected["Encounter"])
    reference, count = per_patient.most_common(1)[0]
    response = http.get("/Encounter", params={"subject": reference, "_count": "1000"})
    assert len(response.json()["entry"]) == count
    # ... and the practitioners the export named by identifier: encounters per practitioner
    per_practitioner = Counter(
        participant["individual"]["reference"]
        for encounter in expected["Encounter"]
        for participant in encounter.get("participant", [])
    )
    reference, count = per_practitioner.most_common(1)[0]
    assert reference.startswith("Practitioner/")
    response = http.get("/Encounter", params={"practitioner": reference, "_count": "1000"})
    assert len(response.json()["entry"]) == count


def _index_rows(conninfo: str, resource_id: str) -> Counter[tuple[Any, ...]]:
    rows: Counter[tuple[Any, ...]] = Counter()
    with psycopg.connect(conninfo) as conn:
        for table in ("sp_token", "sp_string", "sp_date", "sp_number", "sp_quantity",
                      "sp_uri", "sp_reference"):  # fmt: skip
            cursor = conn.execute(
                f"SELECT t.* FROM {table} t JOIN resource r USING (rid)"
                " WHERE r.id = %s AND t.param <> '_lastUpdated'",
                (resource_id,),
            )
            names = [column.name for column in cursor.description or []]
            for row in cursor.fetchall():
                rows[(table, *(v for n, v in zip(names, row, strict=True) if n != "rid"))] += 1
    return rows


def test_a_loaded_resource_is_indexed_exactly_like_one_written_through_the_api(
    http: httpx.Client, clean_database: str
) -> None:
    patient = read_ndjson(SYNTHEA_10 / "Patient.000.ndjson")[0]
    loaded = {**patient, "id": "via-loader"}
    BulkLoader(clean_database).load_resources([loaded])

    response = http.put("/Patient/via-api", json={**patient, "id": "via-api"})
    assert response.status_code == 201, response.text

    loader_rows = _index_rows(clean_database, "via-loader")
    api_rows = _index_rows(clean_database, "via-api")
    assert sum(loader_rows.values()) > 20
    assert loader_rows == api_rows
    with psycopg.connect(clean_database) as conn:
        methods = conn.execute("SELECT id, method, version_id FROM resource ORDER BY id").fetchall()
    assert methods == [("via-api", "PUT", 1), ("via-loader", "PUT", 1)]
