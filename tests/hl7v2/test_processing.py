"""Processing from the store: in order per patient under concurrency, retries then the
dead letter with its reason, and replay."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import defaultdict

from maillage.demo.senders import demo_senders
from maillage.hl7v2 import parsing
from maillage.hl7v2.processing import (
    PROCESSED,
    HandlerRegistry,
    MessageContext,
    Outcome,
    PermanentFailure,
)
from tests.hl7v2.conftest import (
    MllpConnection,
    RunningGateway,
    ack_code,
    gateway_settings,
    rows,
    wait_for,
)
from tests.hl7v2.messages import message


def test_messages_of_one_patient_are_processed_one_at_a_time_in_arrival_order(
    hl7_database: str,
) -> None:
    """4 senders, 12 patients, 4 processor tasks: patients run side by side, a patient's
    messages one at a time and in the order they were sent."""
    in_flight: dict[str, int] = defaultdict(int)
    order: dict[str, list[int]] = defaultdict(list)
    overlaps: list[str] = []
    most_concurrent = [0]
    rng = random.Random(7)

    async def slow(context: MessageContext) -> Outcome:
        ipp = parsing.value(context.message, "PID", 3, 1)
        in_flight[ipp] += 1
        most_concurrent[0] = max(most_concurrent[0], sum(in_flight.values()))
        if in_flight[ipp] > 1:
            overlaps.append(ipp)
        # slower than the senders (even on a busy machine), so that a backlog forms and
        # several patients are in flight together
        await asyncio.sleep(rng.uniform(0.005, 0.015))
        order[ipp].append(context.id)
        in_flight[ipp] -= 1
        return PROCESSED

    settings = gateway_settings(hl7_workers=4)
    running = RunningGateway(hl7_database, settings=settings, handlers=HandlerRegistry(slow))
    running.start()
    try:

        def sender(number: int) -> None:
            with MllpConnection(running.port) as client:
                for k in range(40):
                    # a patient's messages come from one sender, one at a time (the next
                    # after the ACK): arrival order is the sending order
                    raw = message(control_id=f"O{number}-{k}", ipp=f"IPP{number}{k % 3}")
                    assert ack_code(client.exchange(raw)) == "AA"

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        wait_for(lambda: sum(len(ids) for ids in order.values()) == 160, timeout=60, what="all")
        # the handler ran; its batch commits the statuses just after: wait for that too
        # (stopping first would roll the last batch back)
        wait_for(
            lambda: {row[1] for row in rows(hl7_database)} == {"processed"},
            timeout=30,
            what="the last batch committed",
        )
    finally:
        running.stop()
    assert not overlaps, f"two messages of one patient ran together: {overlaps[:5]}"
    for ipp, ids in order.items():
        assert ids == sorted(ids), f"{ipp} processed out of arrival order"
    assert most_concurrent[0] > 1, "the workers never ran concurrently: the test proves nothing"
    statuses = {row[1] for row in rows(hl7_database)}
    assert statuses == {"processed"}


def test_failures_are_retried_then_dead_lettered_with_the_reason(hl7_database: str) -> None:
    attempts: dict[str, int] = defaultdict(int)
    broken = {"yes": True}

    async def flaky(context: MessageContext) -> Outcome:
        control = parsing.value(context.message, "MSH", 10)
        attempts[control] += 1
        if control == "FLAKY-1" and attempts[control] < 2:
            raise RuntimeError("the identity service timed out")
        if control == "BROKEN-1" and broken["yes"]:
            raise RuntimeError("the FHIR store refused the Patient")
        if control == "POISON-1":
            raise PermanentFailure("PID-3 has no IPP of the site")
        return PROCESSED

    running = RunningGateway(hl7_database, handlers=HandlerRegistry(flaky)).start()
    try:
        with MllpConnection(running.port) as client:
            for control, ipp in (
                ("FLAKY-1", "P1"),
                ("BROKEN-1", "P2"),
                ("AFTER-BROKEN", "P2"),
                ("POISON-1", "P3"),
            ):
                assert ack_code(client.exchange(message(control_id=control, ipp=ipp))) == "AA"

        def status(control: str) -> tuple[str, int, str | None]:
            found = rows(
                hl7_database,
                "SELECT status, attempts, error FROM hl7_message WHERE control_id = %s",
                (control,),
            )
            return found[0][0], found[0][1], found[0][2]

        wait_for(lambda: status("BROKEN-1")[0] == "dead", what="dead letter")
        assert status("FLAKY-1")[:2] == ("processed", 2)
        dead = status("BROKEN-1")
        assert dead[1] == 3
        assert dead[2] and "dead after 3 attempts" in dead[2] and "refused the Patient" in dead[2]
        # the dead letter released its patient's next message
        wait_for(lambda: status("AFTER-BROKEN")[0] == "processed", what="next message")
        assert status("POISON-1")[0] == "dead" and attempts["POISON-1"] == 1
        assert "no IPP" in (status("POISON-1")[2] or "")

        # replay after the cause is fixed
        broken["yes"] = False
        assert running.gateway is not None
        report = running.call(running.gateway.replay(message_id=_id(hl7_database, "BROKEN-1")))
        assert report.requeued == 1
        wait_for(lambda: status("BROKEN-1")[0] == "processed", what="replayed")
        assert attempts["BROKEN-1"] == 4
    finally:
        running.stop()


def test_replay_by_status_reanalyses_what_was_rejected_at_receipt(hl7_database: str) -> None:
    """A site missing from the configuration: its messages are rejected and kept; once
    it is configured, replaying the errors accepts and processes them."""
    without_cha = tuple(site for site in demo_senders() if site.code != "CHA")
    first = RunningGateway(hl7_database, sites=without_cha).start()
    try:
        with MllpConnection(first.port) as client:
            assert ack_code(client.exchange(message(site="CHA", control_id="R-1"))) == "AR"
            assert ack_code(client.exchange(message(site="CHA", control_id="R-2"))) == "AR"
    finally:
        first.stop()
    assert [row[1] for row in rows(hl7_database)] == ["error", "error"]

    second = RunningGateway(hl7_database).start()
    try:
        with MllpConnection(second.port) as client:
            # the sender resent R-2 meanwhile
            assert ack_code(client.exchange(message(site="CHA", control_id="R-2"))) == "AA"
        assert second.gateway is not None
        report = second.call(second.gateway.replay(statuses=("error",)))
        assert report.requeued == 1 and len(report.duplicates) == 1
        wait_for(
            lambda: sorted(row[1] for row in rows(hl7_database)) == ["ignored"] * 3,
            what="all handled",
        )
        notes = [row[4] for row in rows(hl7_database)]
        assert "duplicate" in (notes[1] or "")
    finally:
        second.stop()


def _id(conninfo: str, control: str) -> int:
    return int(rows(conninfo, "SELECT id FROM hl7_message WHERE control_id = %s", (control,))[0][0])
