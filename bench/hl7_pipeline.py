"""HL7 v2 end to end (issue 5): parse, identity match and FHIR writes, beside their floors.

    .venv/bin/python -m bench.hl7_pipeline [--patients 100000] [--adt 6000] [--oru 3000]
        [--sustained-rate 200] [--sustained-seconds 30] [--connections 4]
        [--processors N] [--mode gateway|serve]

Targets: ≥ 500 ADT/s and ≥ 300 ORU^R01/s (10 OBX each) processed end to end with
``--patients`` identities already in the patient index; under a sustained 200 messages/s
the processing lag stays bounded. Client on the same machine, 4 MLLP connections.

1. A fresh database (embedded PostgreSQL unless MAILLAGE_BENCH_DATABASE_URL); a French
   territorial set (``bench/identity_territory_data.py``) is generated, registrations are
   put aside for the feeds, the rest (``--patients``) is filed in the patient index by
   COPY (``identity_online.load_base``), then VACUUM ANALYZE.
2. Floors, in this process, before the hub starts: (a) python-hl7 parsing (decode +
   ``parsing.parse``) of the very messages of the ADT and ORU phases, per second of one
   core's CPU; (b) the FHIR store work the handlers do, without HL7: the same searches
   and conditional updates through a ``FhirStore`` built as ``maillage gateway`` builds
   it (patient index and care hooks on, matching against the same base),
   ``--processors`` tasks, 50 messages per transaction taken as the processor takes
   them (one per patient; a site's movements, and its lab results, as one group in a
   savepoint, as the handlers' group paths write them; the others a savepoint each), on
   registrations of the same set put aside for it (the hub's own are left new for the
   hub); after a warm-up and VACUUM ANALYZE, as the hub gets.
3. ``maillage gateway --processes`` ``--hub-processes`` (the first listens and processes,
   the others process; ``--mode serve``: ``maillage serve --workers 2``, listener in one
   worker, processor in the other) with ``--processors`` processor tasks each; a warm-up feed
   (A28 + A01 + ORU of 100 other identities), not counted.
4. ADT phase: ``--adt`` messages over ``--connections`` connections, each sending the next
   message when the ACK of the previous one arrives: half ADT^A28 (new identities: new
   IPPs, names with their accents, 8859/15 or UTF-8 as the site declares), half ADT^A01
   (admission with ZBE, opening a visit) of the same patients, each A01 on the A28's
   connection 16 patients later. End-to-end rate: messages processed ÷ (the moment the
   last one is processed − the first message's sending), read from ``hl7_message``
   (polled every 0.2 s). Any message dead, rejected or ignored fails the run with its
   reason.
5. ORU phase: ``--oru`` ORU^R01 (one OBR, ten NM OBX: LOINC, UCUM units, reference
   ranges, flags; PV1-19 the visit the A01 opened) for the patients of the ADT phase;
   same measure; the Observations written are counted (10 per message, each with its
   encounter).
6. Sustained phase: ``--sustained-rate`` messages/s paced over the connections for
   ``--sustained-seconds`` (new patients' A28 → A01 → ORU, and ORU of admitted
   patients: half ADT, half ORU). The lag (age of the oldest waiting message, waiting
   count) is sampled every 0.5 s until no message waits; it is bounded when it stays
   under 5 s and the backlog is gone within 5 s of the last ACK (and the client kept the
   pace: never more than 1 s late).

The exit code is 0 when every target is met, 1 otherwise, 2 when the run fails (a message
dead, rejected or ignored; an ACK other than AA; a phase that never completes).

The moment the last message is processed is the poll that first sees no message waiting
(at most 0.2 s late). The rows' ``processed_at`` cannot give it: it is the start of the
processor's batch transaction (its claim), up to a whole batch (50 messages per processor
task) earlier than the commit; the rate it gives is printed beside, as an upper bound.
CPU per message (hub process tree, PostgreSQL server tree, this client) is read from
/proc: their sum against the machine's cores is a ceiling on the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.hl7_ack import _tree_cpu_s, _wait_port
from bench.hl7_messages import Identity, adt_a01, adt_a28, identity_of, interleave, oru_r01
from bench.http_common import (
    OUT_DIR,
    VENV_BIN,
    BenchError,
    fail,
    free_port,
    fresh_database,
    machine_description,
    postgres_server,
    vacuum_analyze,
    verdict,
    wait_until_quiet,
    write_results,
)
from bench.identity_online import PERSONS_PER_RECORD, load_base
from bench.identity_territory_data import generate
from maillage.hl7v2.processing import BUSY_LOCK_TIMEOUT_MS

TARGET_ADT = 500.0
TARGET_ORU = 300.0
LAG_LIMIT_S = 5.0  # the sustained lag is bounded: below this, and the backlog gone ...
DRAIN_LIMIT_S = 5.0  # ... within this many seconds of the last ACK
PACE_SLACK_S = 1.0  # the sustained client may send this late at most, or the run is not paced
OBX_PER_ORU = 10
WARMUP_IDENTITIES = 100
CHAIN_LAG = 16  # a patient's next message comes this many patients later on its connection
BATCH = 50  # the processor's batch (Processor.batch): the store floor's transaction size
SB, EB, CR = b"\x0b", b"\x1c", b"\r"

Message = tuple[bytes, str]  # raw bytes, Python codec
Lanes = list[list[Message]]  # one list per connection


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from maillage.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=100_000, help="identities in the index")
    parser.add_argument("--adt", type=int, default=6000, help="ADT messages (half A28, half A01)")
    parser.add_argument("--oru", type=int, default=3000, help="ORU^R01 messages (10 OBX each)")
    parser.add_argument("--sustained-rate", type=float, default=200.0, help="messages/s")
    parser.add_argument("--sustained-seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--processors",
        type=int,
        default=Settings().hl7_workers,
        help="processor tasks of the hub (MAILLAGE_HL7_WORKERS), and tasks of the store floor",
    )
    parser.add_argument(
        "--hub-processes",
        type=int,
        default=Settings().hl7_processes,
        help="`maillage gateway --processes` (MAILLAGE_HL7_PROCESSES): processes converting",
    )
    parser.add_argument("--mode", choices=["gateway", "serve"], default="gateway")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if args.adt < 2 or args.oru < 1 or args.connections < 1 or args.processors < 1:
        parser.error("--adt ≥ 2, --oru ≥ 1, --connections ≥ 1 and --processors ≥ 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        return fail(error)


def _run_loop(coroutine: Awaitable[Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(coroutine)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]


# -- the data -----------------------------------------------------------------------------
@dataclass
class Cast:
    """The base filed in the index, and the registrations put aside for each feed."""

    base: list[dict[str, Any]]
    warm: list[Identity]
    hub: list[Identity]  # A28 + A01 in the ADT phase, then their ORU
    floor: list[Identity]  # the same work for the store floor
    sustained: list[Identity]
    generated_s: float


def cast(args: argparse.Namespace) -> Cast:
    hub_count = args.adt // 2
    sustained_count = math.ceil(args.sustained_rate * args.sustained_seconds / 4)
    aside = WARMUP_IDENTITIES + 2 * hub_count + sustained_count
    total = args.patients + aside
    started = time.perf_counter()
    persons = max(10, round(total * PERSONS_PER_RECORD * 1.05))
    data = generate(persons, seed=args.seed)
    if len(data.patients) < total:
        data = generate(round(persons * total / len(data.patients) * 1.05), seed=args.seed)
    patients = data.patients
    order = list(range(len(patients)))
    random.Random(args.seed).shuffle(order)
    put_aside = [identity_of(patients[n]) for n in order[:aside]]
    base = [patients[n] for n in order[aside:total]]
    for number, patient in enumerate(base):
        patient["id"] = f"b{number}"
    cuts = [WARMUP_IDENTITIES, hub_count, hub_count, sustained_count]
    groups, at = [], 0
    for size in cuts:
        groups.append(put_aside[at : at + size])
        at += size
    warm, hub, floor, sustained = groups
    return Cast(
        base,
        warm=warm,
        hub=hub,
        floor=floor,
        sustained=sustained,
        generated_s=time.perf_counter() - started,
    )


class Numbers:
    """Message numbers: unique over the run (MSH-10, filler orders, times)."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self) -> int:
        self.next += 1
        return self.next


def _lanes(chains: list[list[Message]], connections: int, lag: int) -> Lanes:
    """Chain i (one patient's messages, in order) goes to connection i mod C."""
    lanes: Lanes = []
    for lane in range(connections):
        mine = chains[lane::connections]
        order = interleave([[raw for raw, _ in chain] for chain in mine], lag)
        codecs = {raw: codec for chain in mine for raw, codec in chain}
        lanes.append([(raw, codecs[raw]) for raw in order])
    return lanes


def adt_chains(people: list[Identity], prefix: str, numbers: Numbers) -> list[list[Message]]:
    chains = []
    for person in people:
        first, second = numbers(), numbers()
        chains.append(
            [
                adt_a28(person, f"{prefix}{first:09d}", first),
                adt_a01(person, f"{prefix}{second:09d}", second),
            ]
        )
    return chains


def oru_message(person: Identity, prefix: str, numbers: Numbers) -> Message:
    number = numbers()
    return oru_r01(person, f"{prefix}{number:09d}", number)


@dataclass
class Feeds:
    warm: Lanes
    adt: Lanes
    oru: Lanes
    sustained: Lanes
    floor_adt: list[list[Message]]  # chains (A28, A01) of the floor's patients
    floor_oru: list[tuple[Identity, Message]]


def feeds(args: argparse.Namespace, people: Cast) -> Feeds:
    numbers = Numbers()
    connections = args.connections
    warm = [
        [*chain, oru_message(person, "W", numbers)]
        for person, chain in zip(people.warm, adt_chains(people.warm, "W", numbers), strict=True)
    ]
    adt = adt_chains(people.hub, "A", numbers)
    oru = [[oru_message(people.hub[n % len(people.hub)], "O", numbers)] for n in range(args.oru)]
    sustained: list[list[Message]] = []
    for number, (person, chain) in enumerate(
        zip(people.sustained, adt_chains(people.sustained, "S", numbers), strict=True)
    ):
        # a new patient's A28, A01 and ORU in this order, and an admitted patient's ORU
        admitted = people.hub[(number * 7) % len(people.hub)]
        a28, a01 = chain
        later = oru_message(admitted, "S", numbers)
        sustained.append([a28, later, a01, oru_message(person, "S", numbers)])
    floor_adt = adt_chains(people.floor, "F", numbers)
    floor_oru = [
        (person, oru_message(person, "F", numbers))
        for person in (people.floor[n % len(people.floor)] for n in range(args.oru))
    ]
    return Feeds(
        warm=_lanes(warm, connections, 4),
        adt=_lanes(adt, connections, CHAIN_LAG),
        oru=_lanes(oru, connections, CHAIN_LAG),
        sustained=_lanes(sustained, connections, CHAIN_LAG),
        floor_adt=floor_adt,
        floor_oru=floor_oru,
    )


def _count(lanes: Lanes) -> int:
    return sum(len(lane) for lane in lanes)


# -- floor (a): the parser alone ----------------------------------------------------------
def parse_floor(messages: list[Message]) -> dict[str, Any]:
    """python-hl7 parsing as the processor does it (decode, ``parsing.parse``), one core:
    messages per second of this process's CPU (the wall-clock rate too, which other
    processes on the machine lower)."""
    from maillage.hl7v2 import parsing

    for raw, codec in messages[:200]:  # warm-up
        parsing.parse(raw.decode(codec))
    started = time.perf_counter()
    cpu = time.process_time()
    for raw, codec in messages:
        parsing.parse(raw.decode(codec))
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu
    return {
        "messages": len(messages),
        "elapsed_s": elapsed,
        "rate": len(messages) / cpu_s if cpu_s else 0.0,
        "wall_rate": len(messages) / elapsed if elapsed else 0.0,
        "cpu_us_per_message": 1e6 * cpu_s / max(1, len(messages)),
    }


# -- floor (b): the FHIR store work alone -------------------------------------------------
Op = Callable[[Any], Awaitable[None]]  # given a Repository bound to the batch's transaction


@dataclass
class FloorOp:
    """One message's store work: alone (``run``), or with the others of its ``group`` and
    site in the batch (``item``), as the handlers' group paths take them."""

    site: str
    patient: str  # a batch takes one operation per patient, as the processor's claim
    run: Op
    group: str | None = None
    item: Any = None


class StoreFloor:
    """The handlers' searches and writes, through a FHIR store built as ``maillage gateway``
    builds its own (patient index and care hooks on), without HL7: no parsing, no mapping
    (done beforehand, untimed), no message store."""

    def __init__(self, conninfo: str, postmaster: int | None) -> None:
        from maillage.demo.senders import configured_sites

        self.conninfo = conninfo
        self.postmaster = postmaster
        self.sites = configured_sites(None)

    async def open(self) -> None:
        from maillage.app import write_hooks
        from maillage.demo.senders import apply_site_configuration
        from maillage.fhir.repository import FhirStore
        from maillage.fhir.search.engine import SearchEngine
        from maillage.fhir.search_definitions import SearchDefinitions
        from maillage.jobs import JobService
        from maillage.mpi import build_patient_index
        from maillage.security import AllowAll
        from maillage.settings import load_settings
        from maillage.storage import Database

        settings = load_settings()
        self.database = Database(self.conninfo, min_size=2, max_size=settings.db_pool_max)
        await self.database.open()
        jobs = JobService(self.database, max_attempts=settings.job_max_attempts)
        self.definitions = SearchDefinitions(
            self.database, jobs, refresh_s=settings.search_definitions_refresh_s
        )
        await self.definitions.refresh()
        engine = SearchEngine(timeout_ms=settings.search_timeout_ms)
        apply_site_configuration(settings.hl7_sites_file)
        hooks = write_hooks(settings, build_patient_index(settings))
        self.store = FhirStore(
            self.database, AllowAll(), engine, definitions=self.definitions, write_hooks=hooks
        )

    async def close(self) -> None:
        await self.database.close()

    # -- the operations, mapped beforehand ----------------------------------------------
    def _parsed(self, message: Message) -> Any:
        from maillage.hl7v2 import parsing

        raw, codec = message
        return parsing.parse(raw.decode(codec))

    def adt_ops(self, chains: list[list[Message]]) -> list[list[FloorOp]]:
        """Per patient: the A28's Patient (IdentityUpdate, new IPP) and the A01's Encounter
        (MovementsHandler, opening insert)."""
        from maillage.hl7v2.identity_mapping import source_identity
        from maillage.hl7v2.movements import apply
        from maillage.hl7v2.movements_mapping import encounter, read_movement

        found: list[list[FloorOp]] = []
        for a28, a01 in chains:
            message = self._parsed(a28)
            code = str(message.extract_field("MSH", 1, 4, 1, 1))
            site = next(s for s in self.sites.sites if s.sending_facility == code)
            mapped = source_identity(message, site)
            read = read_movement(self._parsed(a01), "A01", site)
            body = encounter(
                apply([], read),
                visit=read.visit,
                account=read.account,
                subject="Patient/-",
                site=site,
            )
            movement = (site, mapped.ipp, read.visit, body)
            found.append(
                [
                    FloorOp(site.code, mapped.ipp, _a28_op(site, mapped.ipp, mapped.patient)),
                    FloorOp(site.code, mapped.ipp, _a01_op(movement), "a01", movement),
                ]
            )
        return found

    def oru_ops(self, messages: list[tuple[Identity, Message]]) -> list[list[FloorOp]]:
        """Per message: ResultsHandler's patient and encounter searches, ten Observations
        (one group) and the DiagnosticReport by conditional update."""
        from maillage.hl7v2.results import _order_groups
        from maillage.hl7v2.results_mapping import (
            diagnostic_report,
            observation,
            read_order,
        )

        found: list[list[FloorOp]] = []
        for person, raw in messages:
            message = self._parsed(raw)
            site = self.sites.get(person.site.code)
            assert site is not None
            ((obr, results, _),) = _order_groups(message)
            order = read_order(obr, 1)
            observations = [
                observation(obx, order, n, site, {}) for n, obx in enumerate(results, 1)
            ]
            report = diagnostic_report(obr, order, site, {}, [])
            oru = (site, person.ipp, person.visit, observations, report)
            found.append([FloorOp(site.code, person.ipp, _oru_op(oru), "oru", oru)])
        return found

    async def run(self, chains: list[list[FloorOp]], tasks: int) -> dict[str, Any]:
        """``tasks`` lanes (a patient's operations in one lane, in order, ``CHAIN_LAG``
        patients apart), each taken ``BATCH`` operations per transaction as the processor
        takes its messages: one per patient, the groups first (each in a savepoint),
        then the others (a savepoint each)."""
        from maillage.security import RequestContext

        contexts = {
            site.code: RequestContext.system(f"hl7:{site.code}") for site in self.sites.sites
        }
        lanes: list[list[FloorOp]] = []
        for lane in range(tasks):
            mine = chains[lane::tasks]
            keyed = [
                (index + step * CHAIN_LAG, step, index, op)
                for index, chain in enumerate(mine)
                for step, op in enumerate(chain)
            ]
            keyed.sort(key=lambda item: item[:3])
            lanes.append([item[3] for item in keyed])

        async def batch(conn: Any, ops: list[FloorOp]) -> set[int]:
            """The positions in ``ops`` done (committed with the batch)."""
            from maillage.fhir.repository import Repository

            done: set[int] = set()
            groups: dict[tuple[str, str], list[int]] = {}
            for position, op in enumerate(ops):
                if op.group is not None:
                    groups.setdefault((op.group, op.site), []).append(position)
            units: list[tuple[list[int], str | None]] = [
                (members, key[0]) for key, members in groups.items() if len(members) > 1
            ]
            grouped = {position for members, _ in units for position in members}
            units += [([n], None) for n in range(len(ops)) if n not in grouped]
            for number, (members, group) in enumerate(units):
                # As the gateway's processor does: after a batch's first piece of work,
                # lock waits are bounded, and a busy one ends the batch (two lanes'
                # transactions would otherwise deadlock on the patient index's keys).
                if number == 1:
                    await conn.execute(f"SET LOCAL lock_timeout = '{BUSY_LOCK_TIMEOUT_MS}ms'")
                repo = Repository(self.store, contexts[ops[members[0]].site], conn)
                try:
                    async with conn.transaction():
                        if group is None:
                            await ops[members[0]].run(repo)
                        else:
                            await FLOOR_GROUPS[group](repo, [ops[n].item for n in members])
                except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
                    break
                done.update(members)
            return done

        async def worker(ops: list[FloorOp]) -> None:
            pending = list(ops)
            while pending:
                taken: list[int] = []
                seen: set[str] = set()
                for position, op in enumerate(pending):
                    if op.patient not in seen:
                        taken.append(position)
                    seen.add(op.patient)  # its later operations wait for this one
                    if len(taken) == BATCH:
                        break
                async with self.database.transaction() as conn:
                    done = await batch(conn, [pending[n] for n in taken])
                finished = {taken[n] for n in done}
                pending = [op for n, op in enumerate(pending) if n not in finished]

        count = sum(len(lane) for lane in lanes)
        postgres = _tree_cpu_s(self.postmaster) if self.postmaster else 0.0
        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker(lane) for lane in lanes))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        postgres = _tree_cpu_s(self.postmaster) - postgres if self.postmaster else 0.0
        return {
            "operations": count,
            "tasks": tasks,
            "elapsed_s": elapsed,
            "rate": count / elapsed if elapsed else 0.0,
            "cpu_us": 1e6 * cpu / max(1, count),
            "postgres_cpu_us": 1e6 * postgres / max(1, count) if self.postmaster else None,
        }


def _a28_op(site: Any, ipp: str, body: dict[str, Any]) -> Op:
    """IdentityUpdate for a new IPP: found (none) under its criteria lock, created."""

    async def run(repo: Any) -> None:
        if await repo.find_identified("Patient", site.ipp_system, ipp, lock=True):
            raise BenchError("store floor: the A28's IPP is already known")
        await repo.create(body)

    return run


def _a01_op(item: Any) -> Op:
    async def run(repo: Any) -> None:
        await _a01_group(repo, [item])

    return run


async def _a01_group(repo: Any, items: list[Any]) -> None:
    """MovementsHandler's group: the patients, the visits, the Encounters written."""
    from maillage.fhir.matching import identifier_criteria as criteria

    site = items[0][0]
    patients = await repo.find_identified_many(
        "Patient", site.ipp_system, [ipp for _, ipp, _, _ in items]
    )
    visits = await repo.find_identified_many(
        "Encounter", site.visit_number_system, [visit for _, _, visit, _ in items]
    )
    writes = []
    for _, ipp, visit, body in items:
        found = patients.get(ipp, [])
        if len(found) != 1:
            raise BenchError("store floor: the A01's patient is not (only once) known")
        if visits.get(visit):
            raise BenchError("store floor: the A01's visit is already open")
        subject = {"reference": f"Patient/{found[0].id}"}
        writes.append((criteria(site.visit_number_system, visit), {**body, "subject": subject}))
    await repo.conditional_update_many("Encounter", writes)


def _oru_op(item: Any) -> Op:
    async def run(repo: Any) -> None:
        await _oru_group(repo, [item])

    return run


async def _oru_group(repo: Any, items: list[Any]) -> None:
    """ResultsHandler's group: the patients, the visits, all the Observations, then all
    the DiagnosticReports, by conditional update."""
    from maillage.fhir.matching import identifier_criteria as criteria

    def key(resource: dict[str, Any]) -> list[tuple[str, str]]:
        first = resource["identifier"][0]
        return criteria(first["system"], first["value"])

    site = items[0][0]
    patients = await repo.find_identified_many(
        "Patient", site.ipp_system, [ipp for _, ipp, *_ in items]
    )
    visits = await repo.find_identified_many(
        "Encounter", site.visit_number_system, [visit for _, _, visit, *_ in items]
    )
    links = []
    for _, ipp, visit, _, _ in items:
        found = patients.get(ipp, [])
        if len(found) != 1:
            raise BenchError("store floor: the ORU's patient is not (only once) known")
        link: dict[str, Any] = {"subject": {"reference": f"Patient/{found[0].id}"}}
        if len(visits.get(visit, [])) == 1:
            link["encounter"] = {"reference": f"Encounter/{visits[visit][0].id}"}
        links.append(link)
    bodies = [
        {**body, **link}
        for (*_, observations, _), link in zip(items, links, strict=True)
        for body in observations
    ]
    outcomes = await repo.conditional_update_many(
        "Observation", [(key(body), body) for body in bodies]
    )
    reports = []
    for (*_, observations, report), link in zip(items, links, strict=True):
        taken, outcomes = outcomes[: len(observations)], outcomes[len(observations) :]
        results = [{"reference": f"Observation/{o.resource.id}"} for o in taken]
        reports.append({**report, **link, "result": results})
    await repo.conditional_update_many(
        "DiagnosticReport", [(key(report), report) for report in reports]
    )


FLOOR_GROUPS: dict[str, Callable[[Any, list[Any]], Awaitable[None]]] = {
    "a01": _a01_group,
    "oru": _oru_group,
}


async def store_floors(
    conninfo: str, feeds: Feeds, tasks: int, postmaster: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    floor = StoreFloor(conninfo, postmaster)
    adt = floor.adt_ops(feeds.floor_adt)
    oru = floor.oru_ops(feeds.floor_oru)
    # Warm-up, not counted: the first patients' A28, A01 and ORU (the first ORU are theirs),
    # then statistics that know Encounters and Observations, as the hub's phases will.
    warm = max(1, min(50, len(adt) // 10, len(oru) // 10))
    await floor.open()
    try:
        await floor.run(adt[:warm], tasks)
        await floor.run(oru[:warm], tasks)
        vacuum_analyze(conninfo)
        adt_result = await floor.run(adt[warm:], tasks)
        adt_result["label"] = "A28 Patient + A01 Encounter writes"
        oru_result = await floor.run(oru[warm:], tasks)
        oru_result["label"] = "ORU: DiagnosticReport + 10 Observations writes"
    finally:
        await floor.close()
    return adt_result, oru_result


# -- the hub ------------------------------------------------------------------------------
@contextmanager
def running_gateway(args: argparse.Namespace, database: str) -> Iterator[tuple[int, int]]:
    """``maillage gateway`` (or ``serve``) on 127.0.0.1: (MLLP port, pid)."""
    port = free_port()
    env = {
        **os.environ,
        "MAILLAGE_DATABASE_URL": database,
        "MAILLAGE_HL7_PORT": str(port),
        "MAILLAGE_LOG_LEVEL": "WARNING",
        "MAILLAGE_HL7_WORKERS": str(args.processors),
        "MAILLAGE_HL7_PROCESSES": str(args.hub_processes),
        "MAILLAGE_HL7_ENABLED": "true",
        "MAILLAGE_IDENTITY_INDEX_ENABLED": "true",
    }
    log_path = OUT_DIR / "logs" / f"hl7-pipeline-{args.mode}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [str(VENV_BIN / "maillage"), "gateway"]
    if args.mode == "serve":
        command = [str(VENV_BIN / "maillage"), "serve", "--no-demo", "--workers", "2"]
        command += ["--port", str(free_port())]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, process, log_path)
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Sent:
    """What the MLLP clients saw."""

    first_send: float = 0.0  # wall clock (time.time), to compare with the rows' timestamps
    last_ack: float = 0.0
    acks: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    bad_ack: str | None = None
    behind_s: float = 0.0  # paced sending: how late the last message left


async def send(port: int, lanes: Lanes, rate: float | None) -> Sent:
    """Each lane on its own connection, the next message when the ACK arrives; with
    ``rate``, message k of lane c leaves at (k·C + c) / rate after the start."""
    sent = Sent()
    connections = len(lanes)
    clock0 = time.perf_counter()

    async def client(lane_number: int, lane: list[Message]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for k, (raw, _) in enumerate(lane):
                if rate:
                    due = clock0 + (k * connections + lane_number) / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    else:
                        sent.behind_s = max(sent.behind_s, -delay)
                started = time.perf_counter()
                if not sent.first_send:
                    sent.first_send = time.time()
                writer.write(SB + raw + EB + CR)
                ack = await asyncio.wait_for(reader.readuntil(EB + CR), 30)
                sent.latencies.append(time.perf_counter() - started)
                code = ack.split(b"\rMSA|", 1)[1][:2].decode() if b"\rMSA|" in ack else "??"
                sent.codes[code] = sent.codes.get(code, 0) + 1
                if code == "AA":
                    sent.acks += 1
                elif sent.bad_ack is None:
                    sent.bad_ack = ack.strip(SB + EB + CR).decode("latin-1").replace("\r", " / ")
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(client(n, lane) for n, lane in enumerate(lanes)))
    sent.last_ack = time.time()
    return sent


_WAITING = (
    "SELECT count(*), coalesce(extract(epoch FROM now() - min(received_at)), 0),"
    " count(*) FILTER (WHERE attempts > 0) FROM hl7_message WHERE status = 'received'"
)
_FAILED = (
    "SELECT id, status, message_type, trigger_event, attempts, error, note FROM hl7_message"
    " WHERE id > %s AND status IN ('dead', 'error', 'ignored') ORDER BY id LIMIT 1"
)
_FINAL = (
    "SELECT status, count(*), extract(epoch FROM max(processed_at)),"
    " count(*) FILTER (WHERE attempts > 1),"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)),"
    " percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)),"
    " max(extract(epoch FROM processed_at - received_at))"
    " FROM hl7_message WHERE id > %s GROUP BY status"
)


def _failure(row: tuple[Any, ...]) -> str:
    message_id, status, kind, trigger, attempts, error, note = row
    return (
        f"message {message_id} ({kind}^{trigger}) is {status} after {attempts} attempt(s): "
        f"{error or note}"
    )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def phase(
    name: str,
    port: int,
    conninfo: str,
    lanes: Lanes,
    cpu_of: dict[str, Callable[[], float]],
    *,
    rate: float | None = None,
    poll_s: float = 0.2,
) -> dict[str, Any]:
    """Send the lanes, poll the store until every message is processed; the figures."""
    expected = _count(lanes)
    timeout_s = 300 + expected / 10 + (expected / rate if rate else 0)  # a fail-safe only
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        row = await (await conn.execute("SELECT coalesce(max(id), 0) FROM hl7_message")).fetchone()
        start_id = int(row[0]) if row else 0
        cpu0 = {key: read() for key, read in cpu_of.items()}
        sender = asyncio.create_task(send(port, lanes, rate))
        started = time.time()
        samples: list[tuple[float, int, float, int]] = []
        checked = started
        done_at = 0.0
        try:
            while True:
                await asyncio.sleep(poll_s)
                waiting_row = await (await conn.execute(_WAITING)).fetchone()
                assert waiting_row is not None
                waiting, age, retrying = (
                    int(waiting_row[0]),
                    float(waiting_row[1]),
                    int(waiting_row[2]),
                )
                now = time.time()
                samples.append((now - started, waiting, age, retrying))
                if now - checked >= 1.0 or sender.done():
                    checked = now
                    failed = await (await conn.execute(_FAILED, (start_id,))).fetchone()
                    if failed is not None:
                        raise BenchError(f"{name}: {_failure(failed)}")
                if sender.done() and sender.exception() is not None:
                    raise BenchError(f"{name}: an MLLP client failed: {sender.exception()!r}")
                if sender.done() and waiting == 0:
                    done_at = now
                    break
                if now - started > timeout_s:
                    raise BenchError(
                        f"{name}: not done after {timeout_s:.0f} s ({waiting} waiting, "
                        f"{retrying} of them retried after a failure)"
                    )
        finally:
            if not sender.done():
                sender.cancel()
        result: Sent = sender.result()
        cpu = {key: read() - cpu0[key] for key, read in cpu_of.items()}
        rows = await (await conn.execute(_FINAL, (start_id,))).fetchall()
    by_status = {str(r[0]): int(r[1]) for r in rows}
    processed_row = next((r for r in rows if r[0] == "processed"), None)
    if result.bad_ack is not None:
        raise BenchError(f"{name}: ACK codes {result.codes}; first not AA: {result.bad_ack}")
    if by_status != {"processed": expected} or result.acks != expected:
        raise BenchError(
            f"{name}: {expected} messages sent, {result.acks} AA, stored by status {by_status}"
        )
    assert processed_row is not None
    last_processed = float(processed_row[2])
    sending_s = result.last_ack - result.first_send
    claimed_s = last_processed - result.first_send  # the last batch's claim
    polled_s = done_at - result.first_send
    during = [s for s in samples if s[0] <= sending_s]
    return {
        "phase": name,
        "messages": expected,
        "processed": by_status["processed"],
        "retried": int(processed_row[3]),
        "end_to_end_s": polled_s,
        "rate": expected / polled_s if polled_s > 0 else 0.0,
        "claimed_s": claimed_s,
        "claimed_rate": expected / claimed_s if claimed_s > 0 else 0.0,
        "sending_s": sending_s,
        "ack_rate": expected / sending_s if sending_s > 0 else 0.0,
        "ack_p50_ms": _percentile(result.latencies, 0.5) * 1000,
        "ack_p99_ms": _percentile(result.latencies, 0.99) * 1000,
        "ack_codes": result.codes,
        "behind_s": result.behind_s,
        "drain_s": max(0.0, done_at - result.last_ack),
        "latency_p50_s": float(processed_row[4] or 0),
        "latency_p95_s": float(processed_row[5] or 0),
        "latency_max_s": float(processed_row[6] or 0),
        # the lag over the whole phase: while sending, and until the backlog is gone
        "lag_p50_s": _percentile([s[2] for s in samples], 0.5),
        "lag_p95_s": _percentile([s[2] for s in samples], 0.95),
        "lag_max_s": max((s[2] for s in samples), default=0.0),
        "lag_when_sending_stopped_s": during[-1][2] if during else 0.0,
        "waiting_max": max((s[1] for s in samples), default=0),
        "waiting_when_sending_stopped": during[-1][1] if during else 0,
        "samples": [[round(t, 2), w, round(a, 3), r] for t, w, a, r in samples],
        "hub_cpu_us": 1e6 * cpu["hub"] / expected,
        "postgres_cpu_us": 1e6 * cpu["postgres"] / expected if "postgres" in cpu else None,
        "client_cpu_us": 1e6 * cpu["client"] / expected,
        "start_id": start_id,
    }


def _postmaster(conninfo: str) -> int | None:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        stat = Path(f"/proc/{row[0] if row else 0}/stat").read_text()
    except OSError:
        return None  # a remote server
    return int(stat.rsplit(")", 1)[1].split()[1])


def _scalar(conninfo: str, query: str, params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _line(result: dict[str, Any]) -> str:
    return (
        f"  {result['phase']:<10} {result['messages']:>6} msgs  end to end "
        f"{result['rate']:7.0f}/s (last claim {result['claimed_rate']:.0f}/s)  ACK "
        f"{result['ack_rate']:6.0f}/s  hub CPU {result['hub_cpu_us']:.0f} µs/msg  "
        f"retried {result['retried']}"
    )


# -- the run ------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    print(
        f"== hl7_pipeline: {args.patients:,} identities in the index, {args.adt} ADT, "
        f"{args.oru} ORU, sustained {args.sustained_rate:.0f}/s for "
        f"{args.sustained_seconds:.0f} s; {args.connections} connections, "
        f"{args.processors} processor tasks in {args.hub_processes} processes, mode {args.mode}",
        flush=True,
    )
    people = cast(args)
    built = time.perf_counter()
    feeds_ = feeds(args, people)
    print(
        f"  generated {len(people.base):,} base identities and the feeds in "
        f"{people.generated_s + time.perf_counter() - built:.0f} s",
        flush=True,
    )
    # What is built by now lives to the end: out of the cyclic collector's full passes,
    # which would otherwise stall the in-process floors (as the hub freezes its own).
    gc.collect()
    gc.freeze()
    adt_messages = [m for lane in feeds_.adt for m in lane]
    oru_messages = [m for lane in feeds_.oru for m in lane]
    with postgres_server() as server, fresh_database(server, "hl7pipeline") as database:
        machine = machine_description(database)
        print(f"  loading the base of {len(people.base):,} identities ...", flush=True)
        setup = load_base(database, people.base)
        print(f"  {setup}", flush=True)

        print("floors (this process, before the hub starts):", flush=True)
        busy = wait_until_quiet()
        parse_adt = parse_floor(adt_messages)
        parse_oru = parse_floor(oru_messages)
        print(
            f"  (a) python-hl7 parse, one core: ADT {parse_adt['rate']:,.0f}/s, "
            f"ORU {parse_oru['rate']:,.0f}/s",
            flush=True,
        )
        postmaster = _postmaster(database)
        store_adt, store_oru = _run_loop(
            store_floors(database, feeds_, args.processors, postmaster)
        )
        print(
            f"  (b) FHIR store work alone, {args.processors} tasks: ADT "
            f"{store_adt['rate']:,.0f}/s, ORU {store_oru['rate']:,.0f}/s",
            flush=True,
        )
        vacuum_analyze(database)

        results: dict[str, dict[str, Any]] = {}
        with running_gateway(args, database) as (port, hub_pid):
            cpu_of: dict[str, Callable[[], float]] = {
                "hub": lambda: _tree_cpu_s(hub_pid),
                "client": time.process_time,
            }
            if postmaster is not None:
                cpu_of["postgres"] = lambda: _tree_cpu_s(postmaster)
            print("hub phases:", flush=True)
            warm = _run_loop(phase("warm-up", port, database, feeds_.warm, cpu_of))
            print(_line(warm), flush=True)
            busy = max(busy, wait_until_quiet())
            results["adt"] = _run_loop(phase("ADT", port, database, feeds_.adt, cpu_of))
            print(_line(results["adt"]), flush=True)
            busy = max(busy, wait_until_quiet())
            observations_before = _scalar(database, "SELECT coalesce(max(rid), 0) FROM resource")
            results["oru"] = _run_loop(phase("ORU", port, database, feeds_.oru, cpu_of))
            print(_line(results["oru"]), flush=True)
            written = _observations(database, observations_before)
            results["oru"].update(written)
            busy = max(busy, wait_until_quiet())
            results["sustained"] = _run_loop(
                phase(
                    "sustained",
                    port,
                    database,
                    feeds_.sustained,
                    cpu_of,
                    rate=args.sustained_rate,
                    poll_s=0.5,
                )
            )
            sustained = results["sustained"]
            print(_line(sustained), flush=True)
            print(
                f"  sustained: sent at {sustained['messages'] / sustained['sending_s']:.0f}/s; "
                f"lag p50 {sustained['lag_p50_s']:.2f} s, p95 {sustained['lag_p95_s']:.2f} s, "
                f"max {sustained['lag_max_s']:.2f} s (when sending stopped "
                f"{sustained['lag_when_sending_stopped_s']:.2f} s); waiting max "
                f"{sustained['waiting_max']}; "
                f"drained {sustained['drain_s']:.1f} s after the last ACK",
                flush=True,
            )
    return report(
        args,
        machine,
        setup,
        people,
        {
            "parse_adt": parse_adt,
            "parse_oru": parse_oru,
            "store_adt": store_adt,
            "store_oru": store_oru,
        },
        results,
        busy,
    )


def _observations(conninfo: str, after_rid: int) -> dict[str, Any]:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE resource_type = 'Observation'),"
            " count(*) FILTER (WHERE resource_type = 'Observation' AND content ? 'encounter'),"
            " count(*) FILTER (WHERE resource_type = 'DiagnosticReport')"
            " FROM resource WHERE rid > %s",
            (after_rid,),
        ).fetchone()
    assert row is not None
    return {"observations": int(row[0]), "with_encounter": int(row[1]), "reports": int(row[2])}


def report(
    args: argparse.Namespace,
    machine: dict[str, str],
    setup: dict[str, float],
    people: Cast,
    floors: dict[str, dict[str, Any]],
    results: dict[str, dict[str, Any]],
    busy: float,
) -> int:
    adt, oru, sustained = results["adt"], results["oru"], results["sustained"]
    expected_obs = OBX_PER_ORU * oru["messages"]
    obs_ok = oru["observations"] == expected_obs and oru["with_encounter"] == expected_obs
    adt_ok = adt["rate"] >= TARGET_ADT
    oru_ok = oru["rate"] >= TARGET_ORU and obs_ok
    sent_rate = sustained["messages"] / sustained["sending_s"] if sustained["sending_s"] else 0
    paced = sustained["behind_s"] <= PACE_SLACK_S
    bounded = sustained["lag_max_s"] <= LAG_LIMIT_S and sustained["drain_s"] <= DRAIN_LIMIT_S
    parse_adt, parse_oru = floors["parse_adt"], floors["parse_oru"]
    store_adt, store_oru = floors["store_adt"], floors["store_oru"]
    tasks = args.processors

    def cpu(result: dict[str, Any]) -> str:
        pg = result["postgres_cpu_us"]
        return (
            f"{result['hub_cpu_us']:.0f} / {pg:.0f}"
            if pg is not None
            else f"{result['hub_cpu_us']:.0f} / ?"
        )

    lines = [
        "# HL7 v2 end to end (parse, identity match, FHIR writes)",
        "",
        f"`maillage {args.mode}` on 127.0.0.1 with {tasks} processor tasks in each of "
        f"{args.hub_processes if args.mode == 'gateway' else 1} processes; "
        f"{args.connections} MLLP connections from this process; {len(people.base):,} "
        "identities already in the patient index. End to end: messages processed ÷ (the "
        "moment none is left waiting − first message sent); ACK: messages ÷ sending time "
        "(every AA after the message's row is committed). Floors measured "
        "in the same run, in-process: (a) python-hl7 parsing of the same messages, per second "
        "of one core's CPU; "
        f"(b) the same FHIR searches and writes through the hub's store, {tasks} tasks in one "
        "process, "
        f"{BATCH} per transaction grouped as the handlers group them, without HL7.",
        "",
        "| phase | messages | end to end msg/s | ACK msg/s | target | floor (a) parse, 1 core "
        f"| floor (b) FHIR store, {tasks} tasks, 1 process "
        "| hub / PostgreSQL CPU µs/msg | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| ADT (A28 + A01 with ZBE) | {adt['messages']:,} | {adt['rate']:,.0f} "
        f"(≤ {adt['claimed_rate']:,.0f}) | {adt['ack_rate']:,.0f} | ≥ {TARGET_ADT:.0f}/s "
        f"| {parse_adt['rate']:,.0f}/s | {store_adt['rate']:,.0f}/s | {cpu(adt)} "
        f"| {verdict(adt_ok)} |",
        f"| ORU^R01, {OBX_PER_ORU} OBX | {oru['messages']:,} | {oru['rate']:,.0f} "
        f"(≤ {oru['claimed_rate']:,.0f}) | {oru['ack_rate']:,.0f} | ≥ {TARGET_ORU:.0f}/s "
        f"| {parse_oru['rate']:,.0f}/s | {store_oru['rate']:,.0f}/s | {cpu(oru)} "
        f"| {verdict(oru_ok)} |",
        f"| sustained {args.sustained_rate:.0f}/s, {args.sustained_seconds:.0f} s (ADT + ORU) "
        f"| {sustained['messages']:,} | {sustained['rate']:,.0f} | sent at {sent_rate:,.0f} "
        f"| lag < {LAG_LIMIT_S:.0f} s, drained < {DRAIN_LIMIT_S:.0f} s | | | {cpu(sustained)} "
        f"| {verdict(bounded and paced)} |",
        "",
        f"Sustained lag (age of the oldest waiting message, sampled every 0.5 s from the first "
        f"message until none is waiting): p50 {sustained['lag_p50_s']:.2f} s, p95 "
        f"{sustained['lag_p95_s']:.2f} s, max {sustained['lag_max_s']:.2f} s; waiting messages "
        f"at most {sustained['waiting_max']:,}. When sending stopped: lag "
        f"{sustained['lag_when_sending_stopped_s']:.2f} s, "
        f"{sustained['waiting_when_sending_stopped']:,} waiting; backlog gone "
        f"{sustained['drain_s']:.1f} s after the last ACK. Per message, receipt to "
        f"processing: p50 {sustained['latency_p50_s']:.2f} s, "
        f"p95 {sustained['latency_p95_s']:.2f} s, max {sustained['latency_max_s']:.2f} s."
        + (
            ""
            if paced
            else f" The client fell behind the pace by up to {sustained['behind_s']:.1f} s: "
            "the hub's ACKs did not keep up."
        ),
        "",
    ]
    for label, target, rate_a, rate_b in (
        ("ADT", TARGET_ADT, parse_adt["rate"], store_adt["rate"]),
        ("ORU", TARGET_ORU, parse_oru["rate"], store_oru["rate"]),
    ):
        if rate_a < target:
            lines.append(
                f"- {label}: the parser alone ({rate_a:,.0f}/s on one core) is below the target "
                f"({target:.0f}/s): one hub process cannot meet it on this machine."
            )
        if rate_b < target:
            lines.append(
                f"- {label}: the FHIR writes alone in one process ({rate_b:,.0f}/s) are below "
                f"the target ({target:.0f}/s): one process cannot meet it over the store as "
                "it is; see the CPU line below for what the machine's cores allow."
            )
        if rate_a >= target and rate_b >= target:
            lines.append(
                f"- {label}: both floors are above the target ({target:.0f}/s): parse "
                f"{rate_a:,.0f}/s, FHIR writes {rate_b:,.0f}/s."
            )
    cores = os.cpu_count() or 1
    for label, result in (("ADT", adt), ("ORU", oru), ("sustained", sustained)):
        parts = [result["hub_cpu_us"], result["postgres_cpu_us"] or 0.0, result["client_cpu_us"]]
        total = sum(parts)
        lines.append(
            f"- {label}: CPU per message {total:,.0f} µs (hub {parts[0]:,.0f}, PostgreSQL "
            f"{parts[1]:,.0f}, MLLP client {parts[2]:,.0f}): at most "
            f"{cores * 1e6 / total if total else 0:,.0f} msg/s on this machine's {cores} cores."
        )
    for label, floor in (("ADT", store_adt), ("ORU", store_oru)):
        lines.append(
            f"- FHIR store floor, {label}: {floor['cpu_us']:,.0f} µs of this process's CPU and "
            f"{floor['postgres_cpu_us'] or 0:,.0f} µs of PostgreSQL's per message."
        )
    lines += [
        f"- End to end ÷ FHIR store floor: ADT {adt['rate'] / store_adt['rate']:.0%}, "
        f"ORU {oru['rate'] / store_oru['rate']:.0%}.",
        f"- ORU phase: {oru['observations']:,} Observations written (expected "
        f"{expected_obs:,}), {oru['with_encounter']:,} with their encounter; "
        f"{oru['reports']:,} DiagnosticReports.",
        f"- Messages retried after a failure: ADT {adt['retried']}, ORU {oru['retried']}, "
        f"sustained {sustained['retried']}; none dead, rejected or ignored (checked).",
        f"- ACK latency p50/p99: ADT {adt['ack_p50_ms']:.1f}/{adt['ack_p99_ms']:.1f} ms, ORU "
        f"{oru['ack_p50_ms']:.1f}/{oru['ack_p99_ms']:.1f} ms. Load generator CPU: ADT "
        f"{adt['client_cpu_us']:.0f} µs/msg, ORU {oru['client_cpu_us']:.0f} µs/msg (on the "
        "same cores as the hub and PostgreSQL).",
        "- End to end: until the poll (every 0.2 s) that first sees no message waiting. In "
        "brackets, the rate up to the last row's `processed_at`, the claim of its batch (the "
        "start of the processor's transaction, before the batch's work): an upper bound.",
        f"- Setup: base bulk-loaded in {setup['bulk_load_s']:.0f} s, prepared in "
        f"{setup['prepare_s']:.0f} s, filed by COPY in {setup['copy_s']:.0f} s. Other "
        f"processes' CPU share before the runs: at most {busy:.0%}.",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        "",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    write_results(
        "hl7_pipeline",
        {
            "machine": machine,
            "args": vars(args),
            "setup": setup,
            "floors": floors,
            "phases": results,
            "verdicts": {
                "adt": adt_ok,
                "oru": oru_ok,
                "sustained_bounded": bounded,
                "sustained_paced": paced,
            },
            "background_cpu": busy,
        },
        markdown,
    )
    return 0 if adt_ok and oru_ok and bounded else 1


if __name__ == "__main__":
    raise SystemExit(main())
