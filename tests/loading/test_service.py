"""BulkLoader: idempotent, versioned, transactional per chunk, bad lines located."""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import psycopg
import pytest

from maillage.errors import ConfigurationError, Forbidden
from maillage.loading.service import BulkLoader
from maillage.security import Action, AllowAll, RequestContext
from tests.loading.conftest import (
    SMALL_TERRITORY,
    scalar,
    stored,
    without_server_meta,
    write_ndjson,
)


def test_small_file_loads_with_ids_kept_and_meta_stamped(
    clean_database: str, small_territory: list[dict[str, Any]]
) -> None:
    report = BulkLoader(clean_database).load_paths([SMALL_TERRITORY])

    assert (report.files, report.loaded, report.created, report.unchanged) == (1, 7, 7, 0)
    assert report.rejected == []
    for resource in small_territory:
        body = stored(clean_database, resource["resourceType"], resource["id"])
        assert body is not None
        assert without_server_meta(body) == resource
        assert body["meta"]["versionId"] == "1"
        assert body["meta"]["lastUpdated"].endswith("Z")
    # References between the loaded resources are indexed as Type/id.
    assert (
        scalar(
            clean_database,
            "SELECT count(*) FROM sp_reference WHERE resource_type = 'Encounter'"
            " AND param = 'subject' AND target_type = 'Patient' AND target_id = 'pat-1'",
        )
        == 1
    )


def test_reload_of_the_same_file_writes_nothing(clean_database: str) -> None:
    loader = BulkLoader(clean_database)
    loader.load_paths([SMALL_TERRITORY])
    index_rows = scalar(clean_database, "SELECT count(*) FROM sp_token")
    stamps = scalar(clean_database, "SELECT array_agg(last_updated ORDER BY rid) FROM resource")

    again = loader.load_paths([SMALL_TERRITORY])

    assert (again.loaded, again.unchanged, again.rejected) == (0, 7, [])
    assert scalar(clean_database, "SELECT count(*) FROM resource") == 7
    assert scalar(clean_database, "SELECT count(*) FROM resource_version") == 0
    assert scalar(clean_database, "SELECT max(version_id) FROM resource") == 1
    assert scalar(clean_database, "SELECT count(*) FROM sp_token") == index_rows
    assert (
        scalar(clean_database, "SELECT array_agg(last_updated ORDER BY rid) FROM resource")
        == stamps
    )


def test_changed_resource_becomes_version_2_with_the_old_one_in_history(
    clean_database: str, small_territory: list[dict[str, Any]], tmp_path: Path
) -> None:
    loader = BulkLoader(clean_database)
    loader.load_paths([SMALL_TERRITORY])
    changed = [
        {**resource, "gender": "other"} if resource["id"] == "pat-2" else resource
        for resource in small_territory
    ]

    report = loader.load_paths([write_ndjson(tmp_path / "v2.ndjson", changed)])

    assert (report.loaded, report.updated, report.unchanged) == (1, 1, 6)
    current = stored(clean_database, "Patient", "pat-2")
    assert current is not None
    assert current["gender"] == "other"
    assert current["meta"]["versionId"] == "2"
    assert (
        scalar(
            clean_database,
            "SELECT version_id FROM resource WHERE resource_type = 'Patient' AND id = 'pat-2'",
        )
        == 2
    )
    old = scalar(
        clean_database,
        "SELECT content FROM resource_version WHERE resource_type = 'Patient'"
        " AND id = 'pat-2' AND version_id = 1",
    )
    assert old["gender"] == "male" and old["meta"]["versionId"] == "1"
    # The index follows the new content, without leftovers of the old one.
    genders = scalar(
        clean_database,
        "SELECT array_agg(t.code) FROM sp_token t JOIN resource r USING (rid)"
        " WHERE r.id = 'pat-2' AND t.param = 'gender'",
    )
    assert genders == ["other"]


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_is_loaded(
    clean_database: str, tmp_path: Path
) -> None:
    source = write_ndjson(
        tmp_path / "mixed.ndjson",
        [
            {"resourceType": "Patient", "id": "ok-1", "gender": "female"},
            '{"resourceType": "Patient", "id": ',  # line 2: invalid JSON
            {"id": "no-type"},  # line 3: not a resource
            {"resourceType": "Patient", "id": "bad-1", "birthDate": "yesterday"},  # line 4
            {"resourceType": "NotAType", "id": "x"},  # line 5
            "",  # line 6: blank lines are skipped
            {"resourceType": "Patient", "id": "bad id!"},  # line 7: invalid id
            {"resourceType": "Patient", "id": "ok-2", "gender": "male"},  # line 8
        ],
    )

    report = BulkLoader(clean_database).load_paths([source])

    assert report.loaded == 2
    located = {(rejected.file, rejected.line) for rejected in report.rejected}
    assert located == {(str(source), line) for line in (2, 3, 4, 5, 7)}
    messages = {rejected.line: rejected.message for rejected in report.rejected}
    assert "invalid JSON" in messages[2]
    assert "resourceType" in messages[3]
    assert "birthDate" in messages[4]
    assert "NotAType" in messages[5]
    assert "id" in messages[7]
    assert report.rejected[0].location == f"{source}:2"
    assert stored(clean_database, "Patient", "ok-2") is not None
    assert stored(clean_database, "Patient", "bad-1") is None


def test_strict_stops_at_the_bad_chunk_and_keeps_nothing_of_it(
    clean_database: str, tmp_path: Path
) -> None:
    good = [{"resourceType": "Patient", "id": f"p-{number}"} for number in range(10)]
    lines: list[Any] = [*good[:4], *good[4:7], "not json", *good[7:]]
    source = write_ndjson(tmp_path / "strict.ndjson", lines)

    report = BulkLoader(clean_database, chunk_size=4, workers=0).load_paths([source], strict=True)

    assert report.stopped
    assert [
        (rejected.line, "invalid JSON" in rejected.message) for rejected in report.rejected
    ] == [(8, True)]
    # Chunk 1 (lines 1-4) was committed; chunk 2 (lines 5-8) held the bad line: nothing of
    # it is stored, and nothing after it was read.
    ids = scalar(clean_database, "SELECT array_agg(id ORDER BY id) FROM resource")
    assert ids == ["p-0", "p-1", "p-2", "p-3"]
    assert report.loaded == 4


def test_resources_without_id_get_a_uuid(clean_database: str) -> None:
    report = BulkLoader(clean_database).load_resources(
        [{"resourceType": "Patient", "gender": "female"}], source="test"
    )

    assert report.created == 1
    resource_id, method = scalar(clean_database, "SELECT (id, method) FROM resource")
    assert len(resource_id) == 36 and resource_id.count("-") == 4
    assert method == "POST"


def test_a_repeated_id_in_one_load_is_written_in_order(clean_database: str) -> None:
    first = {"resourceType": "Patient", "id": "twice", "gender": "female"}
    second = {"resourceType": "Patient", "id": "twice", "gender": "male"}

    report = BulkLoader(clean_database).load_resources([first, second, dict(second)])

    assert (report.created, report.updated, report.unchanged) == (1, 1, 1)
    body = stored(clean_database, "Patient", "twice")
    assert body is not None
    assert (body["gender"], body["meta"]["versionId"]) == ("male", "2")


def test_a_deleted_resource_is_revived_as_a_new_version(clean_database: str) -> None:
    loader = BulkLoader(clean_database)
    loader.load_paths([SMALL_TERRITORY])
    with psycopg.connect(clean_database) as conn:
        conn.execute(
            "UPDATE resource SET deleted = true, content = NULL, content_hash = NULL,"
            " version_id = 2 WHERE id = 'pat-1'"
        )

    report = loader.load_paths([SMALL_TERRITORY])

    assert (report.updated, report.unchanged) == (1, 6)
    body = stored(clean_database, "Patient", "pat-1")
    assert body is not None and body["meta"]["versionId"] == "3"


def test_pool_path_keeps_input_order_and_locations(clean_database: str, tmp_path: Path) -> None:
    resources: list[Any] = [
        {"resourceType": "Observation", "id": f"obs-{n}", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
         "subject": {"reference": f"Patient/p-{n % 7}"}, "valueQuantity": {"value": n}}
        for n in range(300)
    ]  # fmt: skip
    resources[150] = {**resources[150], "valueQuantity": {"value": "150 mg"}}
    resources[299] = {**resources[10], "valueQuantity": {"value": 1000}}  # later line wins
    source = write_ndjson(tmp_path / "many.ndjson", resources)

    report = BulkLoader(clean_database, chunk_size=40, workers=2).load_paths([source])

    assert (report.created, report.updated, report.unchanged) == (298, 1, 0)
    assert [
        (rejected.line, "valueQuantity" in rejected.message) for rejected in report.rejected
    ] == [(151, True)]
    body = stored(clean_database, "Observation", "obs-10")
    assert body is not None
    assert (body["valueQuantity"]["value"], body["meta"]["versionId"]) == (1000, "2")
    values = scalar(
        clean_database,
        "SELECT array_agg(DISTINCT q.value) FROM sp_quantity q JOIN resource r USING (rid)"
        " WHERE r.id = 'obs-10'",
    )
    assert values == [1000]


def test_a_line_the_database_refuses_is_rejected_alone(clean_database: str) -> None:
    # A reference too long for the reference index (PostgreSQL's btree row limit): the
    # store's own write fails the same way; the loader rejects that line, keeps the rest.
    noise = "".join(random.Random(7).choices(string.ascii_lowercase, k=12_000))
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "before", "gender": "female"},
        {
            "resourceType": "Patient",
            "id": "huge",
            "managingOrganization": {"reference": f"Organization/{noise}"},
        },
        {"resourceType": "Patient", "id": "after", "gender": "male"},
    ]

    report = BulkLoader(clean_database).load_resources(resources, source="memory")

    assert report.created == 2
    assert [(r.file, r.line) for r in report.rejected] == [("memory", 2)]
    assert "refused by the database" in report.rejected[0].message
    assert scalar(clean_database, "SELECT array_agg(id ORDER BY id) FROM resource") == [
        "after",
        "before",
    ]


class _NoPractitioners(AllowAll):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Action, str]] = []

    def authorize(
        self,
        ctx: RequestContext,
        action: Action,
        resource_type: str,
        resource: dict[str, Any] | None = None,
    ) -> None:
        self.calls.append((ctx.who, action, resource_type))
        if resource_type == "Practitioner":
            raise Forbidden("practitioners come from the directory import")


def test_every_resource_goes_through_the_access_decision_point(clean_database: str) -> None:
    policy = _NoPractitioners()

    report = BulkLoader(clean_database, policy=policy, workers=0).load_paths([SMALL_TERRITORY])

    assert report.created == 6
    assert [(r.line, r.message) for r in report.rejected] == [
        (2, "practitioners come from the directory import")
    ]
    assert len(policy.calls) == 7
    assert {(who, action) for who, action, _ in policy.calls} == {("system:loader", Action.CREATE)}


def test_a_missing_path_is_a_usage_error(clean_database: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        BulkLoader(clean_database).load_paths([tmp_path / "absent.ndjson"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigurationError):
        BulkLoader(clean_database).load_paths([tmp_path / "notes.txt"])


def test_strict_keeps_nothing_of_a_chunk_the_database_refuses(
    clean_database: str, tmp_path: Path
) -> None:
    noise = "".join(random.Random(8).choices(string.ascii_lowercase, k=12_000))
    source = write_ndjson(
        tmp_path / "refused.ndjson",
        [
            {"resourceType": "Patient", "id": "first"},
            {"resourceType": "Patient", "id": "huge", "link": [
                {"other": {"reference": f"Patient/{noise}"}, "type": "seealso"}]},
            {"resourceType": "Patient", "id": "last"},
        ],
    )  # fmt: skip

    report = BulkLoader(clean_database).load_paths([source], strict=True)

    assert report.stopped
    assert [(r.line, "refused by the database" in r.message) for r in report.rejected] == [
        (2, True)
    ]
    assert (report.loaded, scalar(clean_database, "SELECT count(*) FROM resource")) == (0, 0)


def test_rows_created_by_another_writer_meanwhile_are_merged_not_duplicated(
    clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maillage.loading import writer

    loader = BulkLoader(clean_database)
    loader.load_paths([SMALL_TERRITORY])
    # As if the rows were created between the loader's check and its COPY: the check
    # sees nothing, the direct COPY hits the unique key, the chunk goes through the merge.
    monkeypatch.setattr(
        writer, "_ANY_STORED", "SELECT 1 WHERE %s::text[] IS NULL AND %s::text[] IS NULL"
    )

    report = loader.load_paths([SMALL_TERRITORY])

    assert (report.created, report.unchanged, report.rejected) == (0, 7, [])
    assert scalar(clean_database, "SELECT count(*) FROM resource") == 7


def test_a_load_without_index_stores_the_resources_and_no_index_rows(
    clean_database: str, tmp_path: Path
) -> None:
    report = BulkLoader(clean_database, index=False, workers=2, chunk_size=2).load_paths(
        [SMALL_TERRITORY]
    )

    assert (report.loaded, report.indexed) == (7, False)
    assert scalar(clean_database, "SELECT count(*) FROM resource") == 7
    for table in ("sp_token", "sp_string", "sp_date", "sp_reference"):
        assert scalar(clean_database, f"SELECT count(*) FROM {table}") == 0, table
