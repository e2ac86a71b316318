"""The gateway logs message ids, never names, birth dates or identifiers (at info level)."""

from __future__ import annotations

import logging

import pytest

from tests.hl7v2.conftest import MllpConnection, RunningGateway, ack_code, rows, wait_for
from tests.hl7v2.messages import FAMILY, GIVEN, message


def test_receipt_rejection_and_processing_log_no_patient_data(
    hl7_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="maillage")
    running = RunningGateway(hl7_database).start()
    try:
        with MllpConnection(running.port) as client:
            assert ack_code(client.exchange(message(control_id="PRIV-1", ipp="IPP77341"))) == "AA"
            assert ack_code(client.exchange(message(control_id="PRIV-1", ipp="IPP77341"))) == "AA"
            unknown = message(control_id="PRIV-2", ipp="IPP77341").replace(
                b"CH_MAILLEBOURG|", b"CH_X|"
            )
            assert ack_code(client.exchange(unknown)) == "AR"
            broken = message(control_id="PRIV-3", ipp="IPP77341", charset="UNICODE UTF-8")
            assert ack_code(client.exchange(broken.replace("é".encode(), b"\xe9"))) == "AE"
        wait_for(lambda: rows(hl7_database)[0][1] == "ignored", what="processed")
    finally:
        running.stop()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "PRIV-1" in logged, "the gateway logged nothing: the check would prove nothing"
    for secret in (FAMILY, GIVEN, "IPP77341", "19610714", "Quenouill"):
        assert secret not in logged
