"""Load inputs: Bundle JSON files, folders (bulk export layout), gzip NDJSON."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from maillage.loading.service import BulkLoader
from tests.loading.conftest import SMALL_TERRITORY, scalar, stored, write_ndjson


def _bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def test_transaction_bundle_entries_load_with_urn_uuid_references_resolved(
    clean_database: str, tmp_path: Path
) -> None:
    patient_url = "urn:uuid:6f1e2b1c-0000-4000-8000-000000000001"
    encounter_url = "urn:uuid:6f1e2b1c-0000-4000-8000-000000000002"
    bundle = _bundle(
        "transaction",
        [
            {
                "fullUrl": patient_url,
                "resource": {"resourceType": "Patient", "name": [{"family": "Bundleur"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": encounter_url,
                "resource": {
                    "resourceType": "Encounter",
                    "id": "enc-b",
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": patient_url},
                },
                "request": {"method": "PUT", "url": "Encounter/enc-b"},
            },
            {"request": {"method": "DELETE", "url": "Patient/gone"}},
        ],
    )
    source = tmp_path / "transaction.json"
    source.write_bytes(orjson.dumps(bundle))

    report = BulkLoader(clean_database).load_paths([source])

    assert (report.files, report.created, report.rejected) == (1, 2, [])
    # No id in the entry: the uuid of its fullUrl becomes the id, so a reload is idempotent.
    patient_id = patient_url.removeprefix("urn:uuid:")
    assert stored(clean_database, "Patient", patient_id) is not None
    encounter = stored(clean_database, "Encounter", "enc-b")
    assert encounter is not None
    assert encounter["subject"] == {"reference": f"Patient/{patient_id}"}
    assert (
        scalar(
            clean_database,
            "SELECT target_id FROM sp_reference WHERE param = 'subject'",
        )
        == patient_id
    )
    assert BulkLoader(clean_database).load_paths([source]).unchanged == 2


def test_collection_and_searchset_bundles_and_bad_entries(
    clean_database: str, tmp_path: Path
) -> None:
    collection = tmp_path / "collection.json"
    collection.write_bytes(
        orjson.dumps(
            _bundle(
                "collection",
                [
                    {"resource": {"resourceType": "Patient", "id": "c-1"}},
                    {"resource": {"resourceType": "Patient", "id": "c-2", "gender": 7}},
                    {"resource": {"resourceType": "Practitioner", "id": "c-3"}},
                ],
            )
        )
    )
    searchset = tmp_path / "searchset.json.gz"
    searchset.write_bytes(
        gzip.compress(
            orjson.dumps(
                _bundle(
                    "searchset",
                    [
                        {"resource": {"resourceType": "Patient", "id": "s-1"},
                         "search": {"mode": "match"}},
                        {"resource": {"resourceType": "OperationOutcome",
                                      "issue": [{"severity": "warning", "code": "processing"}]},
                         "search": {"mode": "outcome"}},
                    ],
                )
            )
        )
    )  # fmt: skip
    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [')

    report = BulkLoader(clean_database).load_paths([collection, searchset, broken])

    assert report.files == 3
    assert report.created == 3
    assert scalar(clean_database, "SELECT array_agg(id ORDER BY id) FROM resource") == [
        "c-1",
        "c-3",
        "s-1",
    ]
    locations = sorted(rejected.location for rejected in report.rejected)
    assert locations == [f"{broken}:1", f"{collection}: Bundle.entry[1]"]


def test_folder_in_bulk_export_layout_with_gzip_and_subfolders(
    clean_database: str, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    (export / "more").mkdir(parents=True)
    lines = SMALL_TERRITORY.read_bytes().splitlines()
    (export / "Part1.ndjson").write_bytes(b"\n".join(lines[:3]) + b"\n")
    (export / "Part2.ndjson.gz").write_bytes(gzip.compress(b"\n".join(lines[3:5]) + b"\n"))
    write_ndjson(export / "more" / "Part3.ndjson", [*lines[5:], "{oops"])
    (export / "README.txt").write_text("not FHIR: ignored in a folder")

    report = BulkLoader(clean_database).load_paths([export])

    assert (report.files, report.created) == (3, 7)
    assert [(rejected.file, rejected.line) for rejected in report.rejected] == [
        (str(export / "more" / "Part3.ndjson"), 3)
    ]
    assert scalar(clean_database, "SELECT count(*) FROM resource") == 7


def test_gzip_ndjson_line_numbers_are_those_of_the_uncompressed_file(
    clean_database: str, tmp_path: Path
) -> None:
    source = write_ndjson(
        tmp_path / "Patient.ndjson.gz",
        [
            {"resourceType": "Patient", "id": "g-1"},
            "[1, 2]",
            {"resourceType": "Patient", "id": "g-2"},
        ],
    )

    report = BulkLoader(clean_database).load_paths([source], progress=True)

    assert report.created == 2
    assert [(rejected.line, rejected.message) for rejected in report.rejected] == [
        (2, "the body is not a FHIR resource (no resourceType)")
    ]


def test_a_damaged_gzip_file_is_reported_and_the_other_files_load(
    clean_database: str, tmp_path: Path
) -> None:
    good = write_ndjson(tmp_path / "a.ndjson", [{"resourceType": "Patient", "id": "fine"}])
    payload = gzip.compress(
        b"".join(
            orjson.dumps({"resourceType": "Patient", "id": f"z-{n}"}) + b"\n" for n in range(500)
        )
    )
    damaged = tmp_path / "b.ndjson.gz"
    damaged.write_bytes(payload[: len(payload) // 2])

    report = BulkLoader(clean_database).load_paths([good, damaged])

    assert report.files == 2
    assert [(r.file, "unreadable" in r.message) for r in report.rejected] == [(str(damaged), True)]
    assert stored(clean_database, "Patient", "fine") is not None
