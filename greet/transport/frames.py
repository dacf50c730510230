"""The few HTTP/2 frames greet writes itself (RFC 9113 section 6), and a filter for their ACKs.

An engine stays the owner of its connection's byte stream, with two exceptions that need raw
frames:
- `goaway_frame`: after an engine has failed (libnghttp2 refuses all output once a flood limit
  trips), the connection still owes the peer a GOAWAY with the error code before it closes;
- `settings_frame`: MAX_CONCURRENT_STREAMS is advertised in a SETTINGS frame of greet's own, sent
  right after the engine's first SETTINGS, so that the engine does not enforce it. Both engines
  close the whole connection when a peer goes over a limit they enforce (h2: TooManyStreamsError;
  libnghttp2: GOAWAY PROTOCOL_ERROR), while RFC 9113 section 5.1.2 asks for a stream error; the
  connection refuses each stream over the limit with REFUSED_STREAM instead.
  libnghttp2 treats a SETTINGS ACK it did not ask for as a protocol error, so `SettingsAckFilter`
  takes the peer's ACK of greet's SETTINGS frame out of the bytes before they reach it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = [
    "CLIENT_PREFACE",
    "SETTINGS_MAX_CONCURRENT_STREAMS",
    "SettingsAckFilter",
    "goaway_frame",
    "settings_frame",
]

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = struct.Struct(">I B B I")  # 24-bit length in the int's low bytes; see below
TYPE_SETTINGS = 0x4
TYPE_GOAWAY = 0x7
FLAG_ACK = 0x1
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
STREAM_ID_MASK = 0x7FFFFFFF


def frame(frame_type: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """One serialized frame."""
    header = FRAME_HEADER.pack(len(payload), frame_type, flags, stream_id & STREAM_ID_MASK)
    return header[1:] + payload  # the length field is 24 bits: drop the int's high byte


def settings_frame(settings: Mapping[int, int]) -> bytes:
    """A SETTINGS frame (not an ACK) with the given identifiers and values."""
    payload = b"".join(struct.pack(">HI", key, value) for key, value in settings.items())
    return frame(TYPE_SETTINGS, 0, 0, payload)


def goaway_frame(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    """A GOAWAY frame."""
    payload = struct.pack(">II", last_stream_id & STREAM_ID_MASK, error_code) + debug
    return frame(TYPE_GOAWAY, 0, 0, payload)


class SettingsAckFilter:
    """Removes the peer's ACK of one SETTINGS frame greet sent itself from received bytes.

    The peer acknowledges SETTINGS frames in the order it got them (RFC 9113 section 6.5.3):
    `skip_acks` is how many ACKs belong to the engine's SETTINGS sent before greet's frame, and
    the ACK after them is greet's (a malformed ACK, with a payload, is left for the engine to
    refuse). Until that ACK has passed, the filter walks frame headers
    (9 bytes each, payloads are not copied or parsed); afterwards `done` is True and the
    connection feeds bytes to the engine directly. A server's filter first skips the 24-byte
    client preface.
    """

    __slots__ = ("_carry", "_preface", "_remaining", "_skip_acks", "done")

    def __init__(self, *, skip_acks: int = 1, server: bool = True) -> None:
        self._skip_acks = skip_acks
        self._preface = len(CLIENT_PREFACE) if server else 0
        self._remaining = 0  # bytes of the current frame's payload still to pass through
        self._carry = b""  # an incomplete frame header
        self.done = False

    def __call__(self, data: bytes) -> bytes:
        """The bytes to give the engine (everything but greet's SETTINGS ACK)."""
        if self.done:
            return data
        if self._carry:
            data = self._carry + data
            self._carry = b""
        out: list[bytes] = []
        pos = 0
        end = len(data)
        if self._preface:
            taken = min(self._preface, end)
            self._preface -= taken
            pos = taken
        start = 0  # start of the bytes not yet copied to `out`
        while pos < end and not self.done:
            if self._remaining:
                step = min(self._remaining, end - pos)
                self._remaining -= step
                pos += step
                continue
            if end - pos < 9:
                out.append(data[start:pos])
                self._carry = data[pos:]
                return b"".join(out)
            length = int.from_bytes(data[pos : pos + 3], "big")
            frame_type = data[pos + 3]
            flags = data[pos + 4]
            if frame_type == TYPE_SETTINGS and flags & FLAG_ACK and length == 0:
                if self._skip_acks:
                    self._skip_acks -= 1
                else:  # greet's: leave it out
                    out.append(data[start:pos])
                    pos += 9
                    start = pos
                    self.done = True
                    break
            pos += 9
            self._remaining = length
        out.append(data[start:])
        return b"".join(out) if len(out) > 1 else out[0]
