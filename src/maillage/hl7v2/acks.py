"""Acknowledgements (original mode): AA, or AE/AR with an ERR segment that says which
field is wrong and why.

ERR (v2.5): ERR-2 error location (ERL: segment^sequence^field^repetition^component),
ERR-3 HL7 error code (table 0357), ERR-4 severity (table 0516: E, W, I), ERR-8 the
message for a person. ACKs use the standard separators whatever the message used (a
message with broken separators must still get an answer its sender can read).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime

# HL7 table 0357 (message error condition codes).
ERROR_CODES: dict[int, str] = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}
ACK_APPLICATION = "MAILLAGE"
_ACK_IDS = itertools.count(1)
_ACK_PREFIX = f"{time.time_ns() // 1_000_000 % 10**10:010d}"


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    segment: str
    field: int | None = None
    component: int | None = None

    def erl(self) -> str:
        """ERR-2 as ``segment^1^field^1^component`` (sequence and repetition: the first)."""
        parts = [self.segment, "1"]
        if self.field is not None:
            parts += [str(self.field), "1"]
            if self.component is not None:
                parts.append(str(self.component))
        return "^".join(parts)

    def __str__(self) -> str:
        text = self.segment if self.field is None else f"{self.segment}-{self.field}"
        return text if self.component is None else f"{text}.{self.component}"


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    location: ErrorLocation
    code: int
    text: str
    severity: str = "E"

    def __str__(self) -> str:
        where = str(self.location)
        # a text that names its field already (the mappings' messages) is not prefixed
        said = self.text if self.text.startswith(where) else f"{where}: {self.text}"
        return f"{said} (HL7 0357 {self.code} {ERROR_CODES[self.code]})"


@dataclass(frozen=True, slots=True)
class AckContext:
    """What the ACK echoes from the message (empty when it could not be read)."""

    sending_application: str = ""
    sending_facility: str = ""
    receiving_facility: str = ""
    trigger_event: str = ""
    control_id: str = ""
    processing_id: str = "P"
    charset: str | None = None


def escape(value: str) -> str:
    """HL7 escapes for the standard separators; control characters dropped."""
    value = (
        value.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )
    return "".join(char for char in value if char >= " ")


def build_ack(code: str, context: AckContext, error: ErrorDetail | None = None) -> str:
    """The ACK message text (segments separated by CR)."""
    timestamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    control = f"MAILLAGE{_ACK_PREFIX}{next(_ACK_IDS)}"
    msh = [
        "MSH",
        "^~\\&",
        ACK_APPLICATION,
        escape(context.receiving_facility) or ACK_APPLICATION,
        escape(context.sending_application),
        escape(context.sending_facility),
        timestamp,
        "",
        f"ACK^{escape(context.trigger_event)}^ACK" if context.trigger_event else "ACK",
        control,
        escape(context.processing_id) or "P",
        "2.5",
    ]
    if context.charset:
        msh += ["", "", "", "", "", escape(context.charset)]
    segments = ["|".join(msh)]
    msa = ["MSA", code, escape(context.control_id)]
    if error is not None:
        msa.append(escape(error.text)[:80])
    segments.append("|".join(msa))
    if error is not None:
        segments.append(
            "|".join(
                [
                    "ERR",
                    "",
                    error.location.erl(),
                    f"{error.code}^{ERROR_CODES[error.code]}^HL70357",
                    error.severity,
                    "",
                    "",
                    "",
                    escape(error.text),
                ]
            )
        )
    return "\r".join(segments) + "\r"
