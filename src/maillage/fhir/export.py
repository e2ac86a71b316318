"""FHIR Bulk Data ``$export`` (Bulk Data Access IG 1.0/2.0), run as a background job.

``ExportService.kickoff`` checks the request and enqueues a ``bulk-export`` job;
``ExportService.run`` is that job's handler: in one read-only REPEATABLE READ
transaction (one snapshot, whose start is the manifest's ``transactionTime``) it streams
each resource type through a server-side cursor, with the requester's access filter
inside the SQL, into one NDJSON file per type under ``export_dir/<job id>/``.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import psycopg
from psycopg import sql

from maillage.errors import Forbidden, InvalidRequest, NotFound
from maillage.fhir.definitions import patient_compartment, patient_link_params, resource_types
from maillage.fhir.repository import FhirStore
from maillage.jobs import Job, JobControl, JobService, JobStatus
from maillage.security import Action, RequestContext

EXPORT_KIND = "bulk-export"
NDJSON = "application/fhir+ndjson"
# The IG: servers SHALL accept these spellings of NDJSON.
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
LEVELS = ("system", "patient", "group")
_BATCH_ROWS = 1000
_PROGRESS_EVERY = 10_000


def _patient_types() -> list[str]:
    return sorted(({"Patient"} | set(patient_compartment())) & resource_types())


def _member_id(reference: Any) -> str | None:
    """The Patient id of a Group member reference (relative, absolute or versioned)."""
    if not isinstance(reference, str):
        return None
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" else None


def manifest(job: Job, base_url: str) -> dict[str, Any]:
    """The completion manifest of a finished export, its URLs under ``base_url``."""
    result = job.result or {}
    return {
        "transactionTime": result.get("transactionTime"),
        "request": result.get("request"),
        "requiresAccessToken": False,
        "output": [
            {
                "type": item["type"],
                "url": f"{base_url}/$export-file/{job.id}/{item['file']}",
                "count": item["count"],
            }
            for item in result.get("output", [])
        ],
        "error": [],
    }


def progress_text(job: Job) -> str:
    progress = job.progress or {}
    if job.status == JobStatus.QUEUED or not progress:
        return "queued" if job.status == JobStatus.QUEUED else "started"
    return (
        f"{progress.get('resources', 0)} resources exported;"
        f" {progress.get('types_done', 0)} of {progress.get('types_total', 0)} types"
    )


class ExportService:
    def __init__(self, store: FhirStore, jobs: JobService, export_dir: Path) -> None:
        self.store = store
        self.jobs = jobs
        self.export_dir = export_dir

    # -- the requester's side -----------------------------------------------------------
    async def kickoff(
        self,
        ctx: RequestContext,
        *,
        level: str,
        group_id: str | None,
        args: dict[str, Any],
        request_url: str,
    ) -> Job:
        assert level in LEVELS
        output_format = args.get("_outputFormat")
        # An unescaped "+" arrives as a space (form decoding).
        if output_format is not None and output_format.replace(" ", "+") not in OUTPUT_FORMATS:
            raise InvalidRequest(
                f"_outputFormat {output_format!r} is not served; this server writes {NDJSON}"
            )
        types: list[str] | None = args.get("_type")
        for resource_type in types or ():
            self.store.policy.authorize(ctx, Action.SEARCH, resource_type)
        if level == "group":
            assert group_id is not None
            # Unknown, deleted or forbidden Groups are refused now, not in the job.
            await self.store.repository(ctx).read("Group", group_id)
        since: datetime | None = args.get("_since")
        params = {
            "level": level,
            "group_id": group_id,
            "types": types,
            "since": since.isoformat() if since else None,
            "request": request_url,
        }
        return await self.jobs.enqueue(EXPORT_KIND, params, ctx)

    async def job_of(self, ctx: RequestContext, job_id: str) -> Job:
        """The requester's export job; anybody else's, or a cancelled one, is not found."""
        job = await self.jobs.get(job_id)
        if (
            job is None
            or job.kind != EXPORT_KIND
            or job.requested_by != ctx.who
            or job.status == JobStatus.CANCELLED
        ):
            raise NotFound(f"no export job {job_id}")
        return job

    async def cancel(self, ctx: RequestContext, job_id: str) -> None:
        await self.job_of(ctx, job_id)
        await self.jobs.cancel(job_id)
        shutil.rmtree(self.export_dir / job_id, ignore_errors=True)

    async def file_of(self, ctx: RequestContext, job_id: str, name: str) -> Path:
        job = await self.job_of(ctx, job_id)
        files = {item["file"] for item in (job.result or {}).get("output", [])}
        if job.status != JobStatus.DONE or name not in files:
            raise NotFound(f"export {job_id} has no file {name}")
        return self.export_dir / job_id / name

    # -- the job handler ----------------------------------------------------------------
    async def run(self, job: Job, control: JobControl) -> dict[str, Any]:
        folder = self.export_dir / job.id
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            return await self._export(job, control, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    async def _export(self, job: Job, control: JobControl, folder: Path) -> dict[str, Any]:
        params = job.params
        ctx = job.request_context
        level = params["level"]
        if level not in LEVELS:
            raise ValueError(f"unknown export level {level!r}")
        known = resource_types()
        unknown = [name for name in params.get("types") or () if name not in known]
        if unknown:
            raise ValueError(f"unknown resource types {', '.join(unknown)}")
        candidates = sorted(known) if level == "system" else _patient_types()
        wanted = [t for t in candidates if params.get("types") is None or t in params["types"]]
        since = datetime.fromisoformat(params["since"]) if params.get("since") else None
        output: list[dict[str, Any]] = []
        exported = 0
        async with self.store.db.transaction() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor = await conn.execute("SELECT now()")
            row = await cursor.fetchone()
            assert row is not None
            transaction_time: datetime = row[0]
            patients = None
            if level == "group":
                patients = await self._group_members(conn, ctx, params["group_id"])
            for done, resource_type in enumerate(wanted, start=1):
                where = self._where(ctx, resource_type, level, patients, since)
                if where is not None:
                    name = f"{resource_type}.ndjson"
                    so_far = {
                        "types_done": done - 1,
                        "types_total": len(wanted),
                        "resources": exported,
                    }
                    count = await self._write_type(
                        conn, resource_type, where, folder / name, control, so_far
                    )
                    exported += count
                    if count:
                        output.append({"type": resource_type, "file": name, "count": count})
                await control.progress(
                    {"types_done": done, "types_total": len(wanted), "resources": exported}
                )
        return {
            "transactionTime": transaction_time.isoformat(),
            "request": params.get("request"),
            "output": output,
        }

    def _where(
        self,
        ctx: RequestContext,
        resource_type: str,
        level: str,
        patients: list[str] | None,
        since: datetime | None,
    ) -> sql.Composable | None:
        """The filter of one type's rows, None when the type has nothing to give."""
        try:
            self.store.policy.authorize(ctx, Action.SEARCH, resource_type)
        except Forbidden:
            return None
        where: list[sql.Composable] = [
            sql.SQL("r.resource_type = {}").format(sql.Literal(resource_type)),
            sql.SQL("NOT r.deleted"),
            self.store.policy.sql_filter(ctx, Action.SEARCH, "r"),
        ]
        if since is not None:
            where.append(sql.SQL("r.last_updated >= {}").format(sql.Literal(since)))
        if level != "system" and resource_type == "Patient":
            if patients is not None:
                where.append(sql.SQL("r.id = ANY({})").format(sql.Literal(patients)))
        elif level != "system":
            codes = list(patient_link_params(resource_type))
            if not codes:
                return None
            member = (
                sql.SQL(" AND x.target_id = ANY({})").format(sql.Literal(patients))
                if patients is not None
                else sql.SQL("")
            )
            where.append(
                sql.SQL(
                    "EXISTS (SELECT 1 FROM sp_reference x WHERE x.rid = r.rid"
                    " AND x.param = ANY({codes}) AND x.target_type = 'Patient'{member})"
                ).format(codes=sql.Literal(codes), member=member)
            )
        return sql.SQL(" AND ").join(where)

    async def _group_members(
        self, conn: psycopg.AsyncConnection, ctx: RequestContext, group_id: str
    ) -> list[str]:
        self.store.policy.authorize(ctx, Action.READ, "Group")
        query = sql.SQL(
            "SELECT r.content FROM resource r WHERE r.resource_type = 'Group' AND r.id = {}"
            " AND NOT r.deleted AND {}"
        ).format(sql.Literal(group_id), self.store.policy.sql_filter(ctx, Action.READ, "r"))
        cursor = await conn.execute(query)
        row = await cursor.fetchone()
        if row is None:
            raise NotFound(f"Group/{group_id} is not known")
        group = orjson.loads(row[0])
        members = [
            _member_id((member.get("entity") or {}).get("reference"))
            for member in group.get("member") or []
            if not member.get("inactive")
        ]
        return sorted({member for member in members if member})

    async def _write_type(
        self,
        conn: psycopg.AsyncConnection,
        resource_type: str,
        where: sql.Composable,
        path: Path,
        control: JobControl,
        so_far: dict[str, Any],
    ) -> int:
        query = sql.SQL("SELECT r.content FROM resource r WHERE {} ORDER BY r.rid").format(where)
        count = 0
        with path.open("wb") as file:
            async with conn.cursor(name=f"export_{resource_type.lower()}") as cursor:
                cursor.itersize = _BATCH_ROWS
                await cursor.execute(query)
                batch: list[bytes] = []
                async for (content,) in cursor:
                    text = content if isinstance(content, str) else orjson.dumps(content).decode()
                    batch.append(text.encode() + b"\n")
                    count += 1
                    if len(batch) >= _BATCH_ROWS:
                        await _write(file, batch)
                        batch = []
                    if count % _PROGRESS_EVERY == 0:
                        await control.progress({**so_far, "resources": so_far["resources"] + count})
                await _write(file, batch)
        if count == 0:
            path.unlink()
        return count


async def _write(file: BinaryIO, lines: list[bytes]) -> None:
    if lines:
        await asyncio.to_thread(file.write, b"".join(lines))
