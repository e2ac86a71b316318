"""The HL7 v2 gateway: MLLP listener, store-then-ACK, ordered processing from the store.

``framing`` (MLLP bytes), ``charset`` (MSH-18 read before decoding), ``parsing``
(python-hl7), ``intake`` (what a received message is: accepted or rejected, and why),
``acks`` (AA/AE/AR with ERR), ``sites`` (senders), ``store`` (the ``hl7_message`` table),
``processing`` (handlers by message type, in order per patient, retries, dead letters),
``server`` (asyncio MLLP), ``metrics`` (per-site gauges), ``service`` (the facade);
conversions: ``results`` (ORU^R01 → DiagnosticReport + Observations, mapped by
``results_mapping``).
"""
