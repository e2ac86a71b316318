"""MLLP framing: ``<SB> payload <EB><CR>``, decoded incrementally from a byte stream.

The decoder never raises and never drops bytes silently: whatever is not a well-formed
frame comes out as a ``Stray`` (with why), so that the gateway can answer AR and keep it.
Tested by feeding bytes, without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

START_BLOCK = 0x0B
END_BLOCK = 0x1C
CARRIAGE_RETURN = 0x0D
_BLANK = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete frame's payload."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Stray:
    """Bytes that are not a well-formed frame, kept with the reason."""

    data: bytes
    reason: str


Event = Frame | Stray


def frame(payload: bytes) -> bytes:
    return bytes((START_BLOCK,)) + payload + bytes((END_BLOCK, CARRIAGE_RETURN))


class FrameDecoder:
    """Feed it what the socket read; it returns the frames (and strays) completed so far."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._inside = False
        # After an oversized frame: drop bytes up to its end block.
        self._discarding = False
        # The CR after an end block may come in the next read.
        self._skip_cr = False

    @property
    def pending(self) -> bool:
        """True when bytes wait for the rest of their frame."""
        return self._inside or self._discarding or bool(self._buffer.strip(_BLANK))

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        while self._buffer:
            if self._skip_cr:
                self._skip_cr = False
                if self._buffer[0] == CARRIAGE_RETURN:
                    del self._buffer[0]
                    continue
            if self._discarding:
                end = self._buffer.find(END_BLOCK)
                if end < 0:
                    self._buffer.clear()
                    break
                del self._buffer[: end + 1]
                self._discarding = False
                self._skip_cr = True
            elif self._inside:
                if not self._take_frame(events):
                    break
            elif not self._take_start(events):
                break
        return events

    def flush(self, reason: str) -> list[Event]:
        """What is left when the connection closes or stalls: a truncated frame or stray
        bytes. The decoder starts afresh."""
        events: list[Event] = []
        if self._inside and self._buffer:
            events.append(Stray(bytes(self._buffer), f"truncated MLLP frame: {reason}"))
        elif self._inside:
            events.append(Stray(b"", f"empty truncated MLLP frame: {reason}"))
        elif self._buffer.strip(_BLANK):
            events.append(Stray(bytes(self._buffer), f"bytes outside an MLLP frame: {reason}"))
        self._buffer.clear()
        self._inside = self._discarding = self._skip_cr = False
        return events

    def _take_start(self, events: list[Event]) -> bool:
        start = self._buffer.find(START_BLOCK)
        if start < 0:
            if len(self._buffer) > self.max_bytes:
                events.append(Stray(bytes(self._buffer[: self.max_bytes]), "no MLLP start block"))
                self._buffer.clear()
            return False
        prefix = bytes(self._buffer[:start])
        if prefix.strip(_BLANK):
            events.append(Stray(prefix, "bytes outside an MLLP frame (no start block)"))
        del self._buffer[: start + 1]
        self._inside = True
        return True

    def _take_frame(self, events: list[Event]) -> bool:
        end = self._buffer.find(END_BLOCK)
        restart = self._buffer.find(START_BLOCK, 0, end if end >= 0 else len(self._buffer))
        if restart >= 0:
            # The sender started over: what came before is a frame cut short.
            events.append(
                Stray(bytes(self._buffer[:restart]), "MLLP frame interrupted by a start block")
            )
            del self._buffer[: restart + 1]
            return True
        if end < 0:
            if len(self._buffer) > self.max_bytes:
                events.append(
                    Stray(
                        bytes(self._buffer[: self.max_bytes]),
                        f"MLLP frame larger than {self.max_bytes} bytes",
                    )
                )
                self._buffer.clear()
                self._inside = False
                self._discarding = True
            return False
        payload = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._inside = False
        self._skip_cr = True
        if len(payload) > self.max_bytes:
            events.append(
                Stray(payload[: self.max_bytes], f"MLLP frame larger than {self.max_bytes} bytes")
            )
        else:
            events.append(Frame(payload))
        return True
