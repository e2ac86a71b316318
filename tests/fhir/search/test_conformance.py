"""Search conformance: the hub's answers against an independent oracle (fhirpathpy over the
raw Synthea resources and synthetic ones, and the R4 search rules in plain Python, see
``oracle``).

The sample is loaded once for the module (the server-stamped ``meta`` read back for
``_lastUpdated``); every generated query is sent over HTTP and the ids returned are
compared with the ids the oracle expects. docs/search-conformance.md has the figures.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from maillage.fhir.definitions import params_for
from maillage.loading.service import BulkLoader
from tests.conftest import RunningHub, empty_tables
from tests.fhir.search import oracle

MIN_QUERIES = 500
# Disagreements the specification justifies (none so far): "Type?name=value" -> clause.
ACCEPTED: dict[str, str] = {}


@pytest.fixture(scope="module")
def sample() -> dict[str, list[dict[str, object]]]:
    return oracle.load_sample()


@pytest.fixture(scope="module")
def loaded(
    hub: RunningHub, database_url: str, sample: dict[str, list[dict[str, object]]]
) -> Iterator[str]:
    """The sample (with its derived resources) in an emptied database; emptied again after."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_tables(conn)
    resources = [resource for resources in sample.values() for resource in resources]
    report = BulkLoader(database_url).load_resources(resources)
    assert report.rejected == []
    # the oracle reads the resources as stored: meta.lastUpdated and versionId are the
    # server's, and the export's conditional references were resolved to Type/id
    with psycopg.connect(database_url) as conn:
        stored = {
            (kind, rid): content
            for kind, rid, content in conn.execute(
                "SELECT resource_type, id, content FROM resource"
            )
        }
    for resource in resources:
        as_stored = stored[(resource["resourceType"], resource["id"])]
        assert {k: v for k, v in as_stored.items() if k != "meta"}.keys() == {
            k for k in resource if k != "meta"
        }
        resource.clear()
        resource.update(as_stored)
    yield f"{hub.base_url}/fhir"
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_tables(conn)


def _indexed(resource_type: str, code: str) -> bool:
    param = params_for(resource_type).get(code)
    return param is not None and param.indexed


def _hub_ids(client: httpx.Client, query: oracle.Query) -> frozenset[str] | str:
    """The ids the hub returns (all pages), or the error it answered with."""
    started = time.perf_counter()
    try:
        return _fetch_ids(client, query)
    finally:
        _TIMES[str(query)] = time.perf_counter() - started


_TIMES: dict[str, float] = {}


def _fetch_ids(client: httpx.Client, query: oracle.Query) -> frozenset[str] | str:
    ids: set[str] = set()
    url: str | None = f"/{query.resource_type}"
    params: dict[str, str] | None = {query.name: query.value, "_count": "1000", "_elements": "id"}
    while url is not None:
        response = client.get(url, params=params)
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:200]}"
        bundle = response.json()
        ids.update(entry["resource"]["id"] for entry in bundle.get("entry", []))
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        url, params = (following[0] if following else None), None
    return frozenset(ids)


def _describe(query: oracle.Query, got: frozenset[str] | str) -> str:
    if isinstance(got, str):
        return f"  {query}: {got}"
    extra, lacking = sorted(got - query.expected), sorted(query.expected - got)
    return (
        f"  {query}: hub {len(got)}, oracle {len(query.expected)};"
        f" only hub {extra[:3]}{'...' if len(extra) > 3 else ''},"
        f" only oracle {lacking[:3]}{'...' if len(lacking) > 3 else ''}"
    )


def test_search_agrees_with_the_fhirpath_oracle(
    loaded: str, sample: dict[str, list[dict[str, object]]]
) -> None:
    started = time.perf_counter()
    plan = oracle.plan(sample, _indexed)
    planned = time.perf_counter() - started
    with (
        httpx.Client(base_url=loaded, timeout=60, headers={"Prefer": "handling=strict"}) as client,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        answers = list(pool.map(lambda query: _hub_ids(client, query), plan.queries))
    asked = time.perf_counter() - started - planned

    by_param: dict[str, list[str]] = defaultdict(list)
    for query, got in zip(plan.queries, answers, strict=True):
        if got == query.expected or str(query) in ACCEPTED:
            continue
        by_param[f"{query.resource_type}.{query.name}"].append(_describe(query, got))
    skipped_fhirpath = {k: v for k, v in plan.skipped.items() if v.startswith("fhirpathpy")}
    print(  # noqa: T201 - the figures of the run, shown with -s
        f"\nconformance: {len(plan.queries)} queries {dict(sorted(plan.per_kind.items()))};"
        f" {len(skipped_fhirpath)} parameters fhirpathpy cannot evaluate"
        f" {sorted(skipped_fhirpath)};"
        f" {len(plan.skipped) - len(skipped_fhirpath)} not indexed by the hub;"
        f" {len(plan.without_values)} without values in the sample;"
        f" {sum(map(len, by_param.values()))} mismatches"
        f"; plan {planned:.1f} s, HTTP {asked:.1f} s"
        f"\nper type/modifier/prefix: {dict(sorted(plan.per_label.items()))}"
    )
    slowest = sorted(_TIMES.items(), key=lambda item: -item[1])[:5]
    print("slowest queries:", [f"{q} {t:.2f}s" for q, t in slowest])  # noqa: T201
    report = "\n".join(
        f"{name} ({len(lines)}):\n" + "\n".join(lines) for name, lines in sorted(by_param.items())
    )
    assert not by_param, f"the hub disagrees with the oracle:\n{report}"
    assert len(plan.queries) >= MIN_QUERIES
    assert {
        *("token", "string", "date", "reference", "quantity", "number", "uri", "composite"),
        *("chain", "_has", "_id", "_lastUpdated", "_tag", "_profile", "_security", "_list"),
    } <= set(plan.per_kind)
    assert {
        *("uri:below", "uri:above", "token:of-type", "token:text", "reference:Type"),
        *("reference:identifier", "chain:Type", "chain:2 levels", "_has:nested"),
        *("composite:missing", "uri:missing", "date ap", "number ap", "quantity ap"),
        *("token:in", "token:not-in", "chain:in", "_has:not-in"),
    } <= set(plan.per_label)
