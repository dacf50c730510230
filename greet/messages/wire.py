"""The protobuf wire format: wire types, field-number bounds, varints, and `MalformedMessage`."""

from __future__ import annotations

from typing import Final

__all__ = ["MalformedMessage"]


class MalformedMessage(ValueError):
    """The bytes are not a valid protobuf encoding of the expected message."""


_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LEN, _WIRE_FIXED32 = 0, 1, 2, 5
_WIRE_NAMES: Final = {0: "0 (varint)", 1: "1 (64-bit)", 2: "2 (length-delimited)", 5: "5 (32-bit)"}
_MAX_FIELD_NUMBER: Final = (1 << 29) - 1
_MAX_KEY: Final = 0xFFFF_FFFF  # (_MAX_FIELD_NUMBER << 3) | 7

_SMALL_VARINTS: Final = tuple(bytes((value,)) for value in range(0x80))


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint starting at `data[pos]` (which must be before `end`) and the position after."""
    start = pos
    result = 0
    shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        if shift == 63:  # the 10th byte holds bit 63 only
            if byte & 0x80:
                raise MalformedMessage(f"the varint at byte {start} is longer than 10 bytes")
            if byte > 1:
                raise MalformedMessage(f"the varint at byte {start} is larger than 64 bits")
            return result | (byte << 63), pos
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise MalformedMessage(f"truncated message: the varint at byte {start} runs past the end")


def _varint_bytes(value: int) -> bytes:
    """betterproto's `encode_varint`: negative values as their 64-bit two's complement."""
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    if value < 0:
        if value < -(1 << 63):
            raise ValueError("a negative value below -2**63 does not fit in a 64-bit varint")
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)
