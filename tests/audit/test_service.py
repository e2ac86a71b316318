"""Recording, concurrent appends (tasks and processes), the write's transaction, the
patient's report and who may read the audit."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import textwrap

import psycopg
import pytest

from maillage.audit import AuditTrail, Outcome, PatientAccess
from maillage.errors import Forbidden, NotFound
from maillage.security import RequestContext

from .conftest import DOCTOR, DPO, run

NURSE_BTG = RequestContext(
    who="Practitioner/nurse-urg", site="ch-sud", purpose="ETREAT", roles=frozenset({"nurse"})
)


def _verify(database_url: str) -> tuple[bool, int]:
    async def verify(trail: AuditTrail) -> tuple[bool, int]:
        report = await trail.verify()
        return report.intact, report.checked

    return run(database_url, verify)


def test_concurrent_tasks_keep_one_chain(clean_database: str) -> None:
    async def many(trail: AuditTrail) -> None:
        async def writer(number: int) -> None:
            for turn in range(10):
                await trail.record(DOCTOR, "read", "Patient", [f"p{number}"], [f"p{number}"])
                if turn % 3 == 0:  # changes in their own transactions, beside the batches
                    async with trail.db.transaction() as conn:
                        await trail.record(DOCTOR, "update", "Patient", ["x"], ["x"], conn=conn)

        await asyncio.gather(*(writer(number) for number in range(40)))

    run(clean_database, many, max_batch=50)
    assert _verify(clean_database) == (True, 40 * 10 + 40 * 4)


def test_two_processes_keep_one_chain(clean_database: str) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from maillage.audit import AuditTrail
        from maillage.security import RequestContext
        from maillage.storage import Database

        async def main():
            db = Database(sys.argv[1], min_size=1, max_size=4)
            await db.open()
            trail = AuditTrail(db)
            ctx = RequestContext(who="Practitioner/" + sys.argv[2], roles=frozenset({"nurse"}))
            async def one(n):
                await trail.record(ctx, "read", "Observation", [str(n)], ["p" + str(n % 7)])
            await asyncio.gather(*(one(n) for n in range(300)))
            await trail.close()
            await db.close()

        asyncio.run(main())
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, clean_database, name])
        for name in ("a", "b")
    ]
    assert [process.wait(timeout=120) for process in processes] == [0, 0]
    assert _verify(clean_database) == (True, 600)


def test_a_change_is_audited_with_its_transaction(clean_database: str) -> None:
    async def write(trail: AuditTrail) -> None:
        async with trail.db.transaction() as conn:
            await trail.record(DOCTOR, "create", "Patient", ["kept"], ["kept"], conn=conn)
        with pytest.raises(NotFound):
            async with trail.db.transaction() as conn:
                await trail.record(DOCTOR, "create", "Patient", ["lost"], ["lost"], conn=conn)
                raise NotFound("the write failed after its audit row: both roll back")
        with pytest.raises(RuntimeError, match="open transaction"):
            async with trail.db.connection() as conn:
                await trail.record(DOCTOR, "create", "Patient", ["x"], ["x"], conn=conn)

    run(clean_database, write)
    with psycopg.connect(clean_database) as conn:
        rows = conn.execute("SELECT seq, patient_id, action FROM audit_event").fetchall()
    assert rows == [(1, "kept", "C")]


def test_one_event_per_patient_of_a_search(clean_database: str) -> None:
    async def search(trail: AuditTrail) -> None:
        await trail.record(
            DOCTOR, "search-type", "Observation", ["o1", "o2", "o3"], ["p1", "p2"],
            query="code=1234-5",
        )  # fmt: skip
        await trail.record(DOCTOR, "search-type", "Patient", [], [], query="family=X")

    run(clean_database, search)
    with psycopg.connect(clean_database) as conn:
        rows = conn.execute("SELECT patient_id, action FROM audit_event ORDER BY seq").fetchall()
    assert rows == [("p1", "E"), ("p2", "E"), (None, "E")]


def test_the_patient_report(clean_database: str) -> None:
    async def scenario(trail: AuditTrail) -> list[PatientAccess]:
        await trail.record(DOCTOR, "read", "Patient", ["p1"], ["p1"])
        await trail.record(DOCTOR, "read", "Patient", ["p2"], ["p2"])  # someone else
        await trail.record(NURSE_BTG, "read", "Observation", ["o9"], ["p1"])
        refused = Forbidden("not in care")
        await trail.record(DOCTOR, "read", "Condition", ["c1"], ["p1"], refused)
        await trail.record(DOCTOR, "search-type", "Observation", [], ["p1"], query="code=x")
        return await trail.patient_report(DPO, "p1")

    accesses = run(clean_database, scenario)
    assert [access.interaction for access in accesses] == [
        "search-type", "read", "read", "read",
    ]  # fmt: skip
    search, refusal, emergency, reading = accesses
    assert reading.who == "Practitioner/dr-martin" and reading.resources == ()
    assert reading.roles == ("physician",) and reading.site == "chu-nord"
    assert reading.purpose == "TREAT" and not reading.break_the_glass
    assert emergency.break_the_glass and emergency.purpose == "ETREAT"
    assert emergency.resources == ("Observation/o9",) and emergency.site == "ch-sud"
    assert refusal.outcome == Outcome.MINOR_FAILURE and "Forbidden" in refusal.outcome_desc
    assert search.resources == ("code=x",)
    assert accesses[0].recorded >= accesses[-1].recorded

    async def later(trail: AuditTrail) -> tuple[list[PatientAccess], list[PatientAccess]]:
        future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        # the DPO's own look is in the record now
        return await trail.patient_report(DPO, "p1", since=future), await trail.patient_report(
            DPO, "p1"
        )

    empty, again = run(clean_database, later)
    assert empty == []
    assert again[0].who == "Practitioner/dpo" and again[0].interaction == "operation"


def test_only_the_audit_readers_may_read_it(clean_database: str) -> None:
    async def scenario(trail: AuditTrail) -> None:
        await trail.record(DOCTOR, "read", "Patient", ["p1"], ["p1"])
        with pytest.raises(Forbidden, match="audit"):
            await trail.patient_report(DOCTOR, "p1")
        with pytest.raises(Forbidden):
            await trail.search(DOCTOR, "p1")
        for role in ("dim", "identitovigilance", "administrator", "security"):
            reader = RequestContext(who=f"Practitioner/{role}", roles=frozenset({role}))
            assert await trail.search(reader, "p1")
        assert await trail.patient_report(RequestContext.system("cli"), "p1")

    run(clean_database, scenario)

    async def narrower(trail: AuditTrail) -> None:
        dim = RequestContext(who="Practitioner/dim", roles=frozenset({"dim"}))
        with pytest.raises(Forbidden):
            await trail.search(dim, "p1")

    run(clean_database, narrower, readers={"security"})
    with psycopg.connect(clean_database) as conn:
        refused = conn.execute(
            "SELECT count(*) FROM audit_event WHERE outcome = 4 AND body->>'outcomeDesc'"
            " = 'Forbidden (forbidden)' AND patient_id = 'p1'"
        ).fetchone()
    assert refused == (3,)  # each refused look into the audit is itself audited
    assert _verify(clean_database)[0]


def test_reads_not_awaited_are_flushed_at_close(clean_database: str) -> None:
    async def scenario(trail: AuditTrail) -> None:
        for number in range(25):
            await trail.record(DOCTOR, "read", "Patient", [str(number)], [str(number)], wait=False)

    run(clean_database, scenario)
    assert _verify(clean_database) == (True, 25)
