"""The searches of the scale benchmark: the request the hub gets, the floor (the same rows
in plain SQL through psycopg 3, without counting or Bundle building), the engine call whose
statements are explained, and the values each search is run with (from the data).

The Synthea export has no Observation: the token search runs on Condition.code and the
compartment search on Encounter (both named by the issue as alternatives).
"""

from __future__ import annotations

import random
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

PAGE = 50
SNOMED = "http://snomed.info/sct"

Found = list[tuple[str, str]]  # (search mode, "Type/id")


def _page_of(inner: str) -> str:
    return (
        "SELECT r.resource_type, r.id, r.content, r.rid FROM resource r"
        " WHERE r.resource_type = %(type)s AND NOT r.deleted"
        f" AND {inner} ORDER BY r.rid LIMIT {PAGE}"
    )


_TOKEN = _page_of(
    "r.rid IN (SELECT x.rid FROM sp_token x WHERE x.resource_type = %(type)s"
    " AND x.param = 'code' AND x.system_code_hash = %(hash)s)"
)
_COMPARTMENT = _page_of(
    "r.rid IN (SELECT x.rid FROM sp_reference x WHERE x.resource_type = 'Encounter'"
    # Encounter's ``patient`` is read from its ``subject`` rows to a Patient
    # (definitions.reference_rows), as the engine does
    " AND x.param = 'subject' AND x.target_type = 'Patient' AND x.target_id = %(patient)s)"
    " AND r.rid IN (SELECT d.rid FROM sp_date d WHERE d.resource_type = 'Encounter'"
    " AND d.param = 'date' AND d.high >= %(since)s"
    # the value index's key (migration 0013), as the engine states it
    " AND hashtextextended(d.resource_type || '|' || d.param, 0)"
    " = hashtextextended('Encounter|date', 0))"
)
_CHAIN = _page_of(
    "r.rid IN (SELECT x.rid FROM sp_reference x WHERE x.resource_type = 'Encounter'"
    " AND x.param = 'subject' AND x.target_type = 'Patient' AND x.target_id IN"
    " (SELECT t.id FROM resource t WHERE t.resource_type = 'Patient' AND NOT t.deleted"
    " AND t.rid IN (SELECT s.rid FROM sp_string s WHERE s.resource_type = 'Patient'"
    " AND s.param = 'name' AND s.value_norm LIKE %(pattern)s"
    " AND hashtextextended(s.resource_type || '|' || s.param, 0)"
    " = hashtextextended('Patient|name', 0))))"
)
_SUBJECTS = (
    "SELECT t.resource_type, t.id, t.content FROM resource t WHERE t.resource_type = 'Patient'"
    " AND NOT t.deleted AND t.id IN (SELECT x.target_id FROM sp_reference x"
    " WHERE x.rid = ANY(%(rids)s) AND x.param = 'subject' AND x.target_type = 'Patient')"
)
_EVERYTHING = (
    "SELECT r.resource_type, r.id, r.content, r.rid FROM resource r WHERE NOT r.deleted AND"
    " r.rid IN (SELECT p.rid FROM resource p WHERE p.resource_type = 'Patient'"
    " AND p.id = %(patient)s UNION ALL SELECT x.rid"
    " FROM sp_reference x JOIN unnest(%(types)s::text[], %(codes)s::text[]) AS m(t, c)"
    " ON x.resource_type = m.t AND x.param = m.c"
    " WHERE x.target_type = 'Patient' AND x.target_id = %(patient)s)"
)
_REFERENCED = (
    "SELECT t.resource_type, t.id, t.content FROM resource t WHERE NOT t.deleted AND"
    " (t.resource_type, t.id) IN (SELECT x.target_type, x.target_id FROM sp_reference x"
    " WHERE x.rid = ANY(%(rids)s) AND x.target_type = ANY(%(targets)s))"
)


def _matches(rows: list[tuple[Any, ...]]) -> Found:
    return [("match", f"{row[0]}/{row[1]}") for row in rows]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    target_ms: int
    path: Callable[[Any], str]
    floor: Callable[[psycopg.Connection, Any], Found]
    engine_call: Callable[[Any], Callable[[Any, Any], Awaitable[Any]]]
    # Requests measured at most (``$everything`` reads 5,000 resources each time).
    max_requests: int = 1000


def _search_call(
    resource_type: str, params: Callable[[Any], list[tuple[str, str]]]
) -> Callable[[Any], Callable[[Any, Any], Awaitable[Any]]]:
    def bind(value: Any) -> Callable[[Any, Any], Awaitable[Any]]:
        async def call(engine: Any, conn: Any) -> Any:
            return await engine.search(
                conn, resource_type, params(value), strict=True, visible=lambda a: sql.SQL("TRUE")
            )

        return call

    return bind


def _url(resource_type: str, params: list[tuple[str, str]]) -> str:
    return f"/fhir/{resource_type}?{urllib.parse.urlencode(params)}"


# -- token ------------------------------------------------------------------------------
def _token_params(value: tuple[str, str]) -> list[tuple[str, str]]:
    return [("code", f"{value[0]}|{value[1]}")]


def _token_floor(conn: psycopg.Connection, value: tuple[str, str]) -> Found:
    from maillage.fhir.indexing.normalize import token_hash

    found = conn.execute(
        _TOKEN, {"type": "Condition", "hash": token_hash("Condition", "code", *value)}
    ).fetchall()
    return _matches(found)


# -- compartment ------------------------------------------------------------------------
def _compartment_params(value: tuple[str, str]) -> list[tuple[str, str]]:
    return [("patient", value[0]), ("date", f"ge{value[1]}")]


def _compartment_floor(conn: psycopg.Connection, value: tuple[str, str]) -> Found:
    found = conn.execute(
        _COMPARTMENT,
        {"type": "Encounter", "patient": value[0], "since": f"{value[1]}T00:00:00+00:00"},
    ).fetchall()
    return _matches(found)


# -- chain ------------------------------------------------------------------------------
def _chain_params(value: str) -> list[tuple[str, str]]:
    return [("subject.name", value)]


def _chain_floor(conn: psycopg.Connection, value: str) -> Found:
    from maillage.fhir.indexing.normalize import normalize_string

    found = conn.execute(
        _CHAIN, {"type": "Encounter", "pattern": normalize_string(value) + "%"}
    ).fetchall()
    return _matches(found)


# -- include ----------------------------------------------------------------------------
def _include_params(value: tuple[str, str]) -> list[tuple[str, str]]:
    return [*_token_params(value), ("_include", "Condition:subject")]


def _include_floor(conn: psycopg.Connection, value: tuple[str, str]) -> Found:
    from maillage.fhir.indexing.normalize import token_hash

    page = conn.execute(
        _TOKEN, {"type": "Condition", "hash": token_hash("Condition", "code", *value)}
    ).fetchall()
    subjects = conn.execute(_SUBJECTS, {"rids": [row[3] for row in page]}).fetchall()
    return _matches(page) + [("include", f"{row[0]}/{row[1]}") for row in subjects]


# -- $everything ------------------------------------------------------------------------
def _everything_path(value: str) -> str:
    return f"/fhir/Patient/{value}/$everything?_count=1000"


def _everything_floor(conn: psycopg.Connection, value: str) -> Found:
    from maillage.fhir.definitions import patient_compartment, resource_types
    from maillage.fhir.search.everything import REFERENCED, _compartment_links

    members = sorted({"Patient", *patient_compartment()} & resource_types())
    types, codes = _compartment_links(members)
    rows = conn.execute(_EVERYTHING, {"patient": value, "types": types, "codes": codes}).fetchall()
    referenced = conn.execute(
        _REFERENCED, {"rids": [row[3] for row in rows], "targets": list(REFERENCED)}
    ).fetchall()
    return _matches(rows) + [("include", f"{row[0]}/{row[1]}") for row in referenced]


def _everything_call(value: str) -> Callable[[Any, Any], Awaitable[Any]]:
    async def call(engine: Any, conn: Any) -> Any:
        from maillage.fhir.search.everything import everything

        return await everything(
            engine,
            conn,
            value,
            types=None,
            since=None,
            count=1000,
            page=None,
            visible=lambda alias: sql.SQL("TRUE"),
            authorize=lambda resource_type: None,
        )

    return call


SCENARIOS = [
    Scenario(
        "token",
        "token: `Condition?code=system|code`, first page",
        50,
        lambda v: _url("Condition", _token_params(v)),
        _token_floor,
        _search_call("Condition", _token_params),
    ),
    Scenario(
        "compartment",
        "compartment: `Encounter?patient=<id>&date=ge<date>`",
        20,
        lambda v: _url("Encounter", _compartment_params(v)),
        _compartment_floor,
        _search_call("Encounter", _compartment_params),
    ),
    Scenario(
        "chain",
        "chained: `Encounter?subject.name=<family>`",
        200,
        lambda v: _url("Encounter", _chain_params(v)),
        _chain_floor,
        _search_call("Encounter", _chain_params),
    ),
    Scenario(
        "include",
        "`Condition?code=...&_include=Condition:subject`, first page",
        100,
        lambda v: _url("Condition", _include_params(v)),
        _include_floor,
        _search_call("Condition", _include_params),
    ),
    Scenario(
        "everything",
        "`Patient/<id>/$everything` (5,000 resources, every page)",
        1000,
        _everything_path,
        _everything_floor,
        _everything_call,
        max_requests=40,
    ),
]


def scenario_values(
    database: str, key: str, dataset: dict[str, Any], rng: random.Random, count: int
) -> list[Any]:
    """``count`` values for search ``key``, drawn from the data."""
    with psycopg.connect(database) as conn:
        if key in ("token", "include"):
            codes = conn.execute(
                "SELECT DISTINCT c->>'system', c->>'code' FROM resource r,"
                " jsonb_array_elements(r.content->'code'->'coding') c"
                " WHERE r.resource_type = 'Condition'"  # every copy has the sample's codes
            ).fetchall()
            return [tuple(rng.choice(codes)) for _ in range(count)]
        if key == "compartment":
            patients = conn.execute(
                "SELECT id FROM resource WHERE resource_type = 'Patient' AND id <> %s",
                (dataset["heavy_patient"],),
            ).fetchall()
            return [
                (
                    rng.choice(patients)[0],
                    f"{rng.randrange(1990, 2021)}-{rng.randrange(1, 13):02d}-01",
                )
                for _ in range(count)
            ]
        if key == "chain":
            families = conn.execute(
                "SELECT content->'name'->0->>'family' FROM resource"
                " WHERE resource_type = 'Patient' AND id <> %s",
                (dataset["heavy_patient"],),
            ).fetchall()
            return [rng.choice(families)[0] for _ in range(count)]
        return [dataset["heavy_patient"]] * count
