"""MLLP framing, fed bytes directly: no sockets."""

from __future__ import annotations

from maillage.hl7v2.framing import Frame, FrameDecoder, Stray, frame

MESSAGE = b"MSH|^~\\&|GAM|CH_MAILLEBOURG|||20260115||ADT^A28|1|P|2.5\rPID|1\r"


def test_a_frame_split_at_every_position_comes_out_whole() -> None:
    framed = frame(MESSAGE) + frame(MESSAGE + b"X")
    for cut in range(len(framed) + 1):
        decoder = FrameDecoder(1024)
        events = decoder.feed(framed[:cut]) + decoder.feed(framed[cut:])
        assert events == [Frame(MESSAGE), Frame(MESSAGE + b"X")], cut
        assert not decoder.pending


def test_bytes_byte_by_byte() -> None:
    decoder = FrameDecoder(1024)
    events = []
    for byte in frame(MESSAGE) * 3:
        events += decoder.feed(bytes([byte]))
    assert events == [Frame(MESSAGE)] * 3


def test_end_block_without_carriage_return_is_tolerated() -> None:
    decoder = FrameDecoder(1024)
    assert decoder.feed(b"\x0b" + MESSAGE + b"\x1c\x0b" + MESSAGE + b"\x1c") == [
        Frame(MESSAGE),
        Frame(MESSAGE),
    ]


def test_bytes_outside_a_frame_are_a_stray_and_the_next_frame_still_comes() -> None:
    decoder = FrameDecoder(1024)
    events = decoder.feed(b"\r\nGARBAGE" + frame(MESSAGE))
    assert events == [
        Stray(b"\r\nGARBAGE", "bytes outside an MLLP frame (no start block)"),
        Frame(MESSAGE),
    ]
    # blank lines between frames are not strays
    assert decoder.feed(b"\r\n" + frame(MESSAGE)) == [Frame(MESSAGE)]


def test_a_frame_interrupted_by_a_new_start_block() -> None:
    decoder = FrameDecoder(1024)
    events = decoder.feed(b"\x0bMSH|half" + frame(MESSAGE))
    assert isinstance(events[0], Stray) and events[0].data == b"MSH|half"
    assert events[1] == Frame(MESSAGE)


def test_an_oversized_frame_is_cut_and_the_stream_resynchronises() -> None:
    decoder = FrameDecoder(64)
    big = b"MSH|" + b"x" * 200
    events = decoder.feed(frame(big)[:100])
    assert len(events) == 1 and isinstance(events[0], Stray)
    assert events[0].data == big[:64] and "larger than 64" in events[0].reason
    assert decoder.feed(frame(big)[100:] + frame(MESSAGE[:60])) == [Frame(MESSAGE[:60])]


def test_flush_returns_a_truncated_frame() -> None:
    decoder = FrameDecoder(1024)
    assert decoder.feed(b"\x0b" + MESSAGE[:20]) == []
    assert decoder.pending
    events = decoder.flush("connection closed")
    assert events == [Stray(MESSAGE[:20], "truncated MLLP frame: connection closed")]
    assert not decoder.pending and decoder.flush("again") == []
