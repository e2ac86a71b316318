"""``Patient/[id]/$everything``: the Patient and every resource of its compartment.

One query over ``sp_reference`` (each compartment type's parameters that point at the
Patient), the access filter inside it, paged by the same keyset cursor as searches (the
Patient first, then by ``rid``). The Practitioner, Organization, Location and Medication
resources a page's resources reference are added to that page as includes, themselves
filtered by the access policy.

A Patient that lists other Patients of the hub as ``seealso`` links (a territorial
identity lists its source identities: ``docs/decisions/0005-patient-index.md``) gathers
their compartments too: ``$everything`` on the territorial identity is the person's record
across every site, each resource still passing the access filter.
"""

from __future__ import annotations

from datetime import datetime

import orjson
import psycopg
from psycopg import sql

from maillage.errors import Forbidden, NotFound
from maillage.fhir.definitions import patient_compartment, patient_link_params, resource_types
from maillage.fhir.model import SearchPage, StoredResource
from maillage.fhir.search import includes
from maillage.fhir.search.builder import Authorize, Visible
from maillage.fhir.search.engine import SearchEngine, cursors
from maillage.fhir.search.paging import SortKey, decode
from maillage.fhir.search.query import Include, ResultParams

# Resources that are not patient-specific, added when a page's resources reference them.
REFERENCED = ("Practitioner", "Organization", "Location", "Medication")


def _compartment_links(types: list[str]) -> tuple[list[str], list[str]]:
    """(type, ``sp_reference`` param) pairs that put a resource of ``types`` in a Patient
    compartment."""
    pairs = [
        (resource_type, code)
        for resource_type in types
        for code in patient_link_params(resource_type)
    ]
    return [pair[0] for pair in pairs], [pair[1] for pair in pairs]


async def everything(
    engine: SearchEngine,
    conn: psycopg.AsyncConnection,
    patient_id: str,
    *,
    types: list[str] | None,
    since: datetime | None,
    count: int | None,
    page: str | None,
    visible: Visible,
    authorize: Authorize,
) -> SearchPage:
    def may_see(resource_type: str) -> bool:
        try:
            authorize(resource_type)
        except Forbidden:
            return False
        return True

    count = engine.default_count if count is None else min(count, engine.max_count)
    await engine.set_timeout(conn)
    found = await engine.fetch(
        conn,
        sql.SQL(
            "SELECT r.content FROM resource r WHERE r.resource_type = 'Patient' AND r.id = {}"
            " AND NOT r.deleted AND {}"
        ).format(sql.Literal(patient_id), visible("r")),
    )
    if not found:
        raise NotFound(f"Patient/{patient_id} is not known")
    patient_ids = [patient_id, *_see_also(found[0][0])]
    members = {"Patient", *patient_compartment()} & resource_types()
    wanted = sorted(t for t in members if (types is None or t in types) and may_see(t))
    link_types, link_codes = _compartment_links(wanted)
    the_patient = sql.SQL("(r.resource_type = 'Patient' AND r.id = ANY({}))").format(
        sql.Literal(patient_ids)
    )
    where = [
        sql.SQL("NOT r.deleted"),
        visible("r"),
        sql.SQL("r.resource_type = ANY({})").format(sql.Literal(wanted)),
        # One set of rids (the Patient's, then its compartment's): an OR of the two would
        # make PostgreSQL scan the whole resource table.
        sql.SQL(
            "r.rid IN (SELECT p.rid FROM resource p WHERE p.resource_type = 'Patient'"
            " AND p.id = ANY({ids}) UNION SELECT x.rid FROM sp_reference x"
            " JOIN unnest({types}::text[], {codes}::text[]) AS m(t, c)"
            " ON x.resource_type = m.t AND x.param = m.c"
            " WHERE x.target_type = 'Patient' AND x.target_id = ANY({ids}))"
        ).format(
            types=sql.Literal(link_types),
            codes=sql.Literal(link_codes),
            ids=sql.Literal(patient_ids),
        ),
    ]
    if since is not None:
        where.append(sql.SQL("r.last_updated >= {}").format(sql.Literal(since)))
    filters = sql.SQL(" AND ").join(where)
    keys = [SortKey(the_patient, "boolean", descending=True), SortKey(sql.SQL("r.rid"), "bigint")]
    cursor = decode(page, keys) if page else None
    rows = await engine.page_rows(conn, filters, keys, cursor, count=count)
    page_rows = rows[:count]
    if cursor is not None and cursor.backward:
        page_rows.reverse()
    total = await engine.total(conn, filters, "accurate")
    referenced = [
        Include(None, None, target, reverse=False, iterate=False)
        for target in REFERENCED
        if target in resource_types() and (types is None or target in types) and may_see(target)
    ]
    added = await includes.included(
        lambda query: engine.fetch(conn, query),
        page_rows,
        referenced,
        visible=visible,
        authorize=authorize,
    )
    used = [("_count", str(count))]
    if types is not None:
        used.append(("_type", ",".join(types)))
    if since is not None:
        used.append(("_since", since.isoformat()))
    results = ResultParams(count=count, page=page)
    return SearchPage(
        entries=[StoredResource.from_row(row) for row in page_rows],
        total=total,
        offset=0,
        count=count,
        has_next=False,
        used_params=used,
        included=tuple(added),
        **cursors(page_rows, len(rows) > count, cursor, results),
    )


def _see_also(content: object) -> list[str]:
    """The ids of the hub's Patients this Patient lists as ``seealso`` links."""
    body = orjson.loads(content) if isinstance(content, str | bytes) else content
    links = body.get("link") if isinstance(body, dict) else None
    found: list[str] = []
    for link in links if isinstance(links, list) else []:
        other = link.get("other") if isinstance(link, dict) else None
        reference = other.get("reference") if isinstance(other, dict) else None
        if link.get("type") == "seealso" and isinstance(reference, str):
            kind, _, target = reference.partition("/")
            if kind == "Patient" and target and "/" not in target:
                found.append(target)
    return found
