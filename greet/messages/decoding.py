"""`decode`: strict parsing of a simple message class (`MalformedMessage` for bad input)."""

from __future__ import annotations

import struct
from typing import Any, Final

from betterproto import PLACEHOLDER

from greet.messages import plans
from greet.messages.plans import (
    _BOOL,
    _BYTES,
    _ENUM,
    _FIXED,
    _INT32,
    _INT64,
    _NOT_COMPILED,
    _PACKED_FIXED,
    _PACKED_VARINT,
    _SINT32,
    _SINT64,
    _STRING,
    _UINT32,
    _UINT64,
    MessageT,
    _compile,
    _object_getattribute,
    _object_new,
    _Plan,
)
from greet.messages.wire import (
    _MAX_FIELD_NUMBER,
    _MAX_KEY,
    _WIRE_FIXED64,
    _WIRE_LEN,
    _WIRE_NAMES,
    _WIRE_VARINT,
    MalformedMessage,
    _read_varint,
)

_plans: Final = plans._plans  # assigned, not imported by name: see plans._plans

__all__ = ["decode"]


def decode(cls: type[MessageT], data: bytes) -> MessageT:
    """Parse `data` as a `cls`; strictly (MalformedMessage) when the class is simple."""
    plan = _plans.get(cls, _NOT_COMPILED)
    if plan is _NOT_COMPILED:
        plan = _compile(cls)
    if plan is None:
        return cls.FromString(data)
    message: MessageT = _object_new(cls)
    state = _object_getattribute(message, "__dict__")
    state.update(plan.decoded_template)
    if data:
        if type(data) is not bytes:
            data = bytes(data)
        single = plan.single_string
        if (  # the shortcut: exactly one occurrence of the one string field, ASCII, < 128 bytes
            single is not None
            and data[0] == single[1]
            and len(data) >= 2
            and data[1] == len(data) - 2
            and data[1] < 0x80
            and data.isascii()
        ):
            state[single[0]] = data[2:].decode("ascii")
            state["_group_current"] = {}
            return message
        unknown = _decode_fields(plan, data, state)
        if unknown:
            state["_unknown_fields"] = unknown
    state["_group_current"] = {}
    return message


def _decode_fields(plan: _Plan, data: bytes, state: dict[str, Any]) -> bytes:
    """Store the known fields of `data` in `state` (an instance dict, from `decoded_template`);
    return the unknown fields' bytes."""
    size = len(data)
    by_key = plan.by_key
    unknown: list[bytes] | None = None
    text: str | None = None  # `data` as str if it is all ASCII, made when a run needs it
    ascii_checked = False
    pos = 0
    while pos < size:
        start = pos
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos, size)
        entry = by_key.get(key)
        if entry is None:
            pos = _skip_unknown(plan, data, start, key, pos, size)
            if unknown is None:
                unknown = []
            unknown.append(data[start:pos])
            continue
        name, kind, repeated, extra = entry
        if kind <= _BYTES and repeated:
            current = state[name]
            if current is PLACEHOLDER:
                current = state[name] = []
            if not ascii_checked and key < 0x80 and _run_continues(data, pos, size, key):
                ascii_checked = True  # once per message: a scan per run could be quadratic
                text = data.decode("ascii") if data.isascii() else None
            pos = _decode_run(plan, data, start, pos, size, key, kind, current, text)
            continue
        if kind <= _BYTES or kind >= _PACKED_VARINT:  # length-delimited
            if pos >= size:
                raise _truncated(plan, key, start, "its length")
            length = data[pos]
            if length < 0x80:
                pos += 1
            else:
                length, pos = _read_varint(data, pos, size)
            end = pos + length
            if end > size:
                raise _truncated(plan, key, start, f"its {length} bytes ({size - pos} are left)")
            if kind == _STRING:
                try:
                    value: Any = data[pos:end].decode()
                except UnicodeDecodeError as error:
                    raise _not_utf8(plan, key, start, error) from None
            elif kind == _BYTES:
                value = data[pos:end]
            else:
                chunk = _decode_packed(plan, key, start, data, pos, end, kind, extra)
                current = state[name]
                if current is PLACEHOLDER:
                    state[name] = chunk
                else:
                    current.extend(chunk)
                pos = end
                continue
            pos = end
        elif kind == _FIXED:
            end = pos + extra.size
            if end > size:
                raise _truncated(plan, key, start, f"its {extra.size} bytes")
            value = extra.unpack_from(data, pos)[0]
            pos = end
        else:
            if pos >= size:
                raise _truncated(plan, key, start, "its varint value")
            value = data[pos]
            if value < 0x80:
                pos += 1
            else:
                value, pos = _read_varint(data, pos, size)
            if kind != _UINT64:
                value = _convert_varint(kind, value, extra)
        if repeated:
            current = state[name]
            if current is PLACEHOLDER:
                state[name] = [value]
            else:
                current.append(value)
        else:
            state[name] = value
    return b"".join(unknown) if unknown is not None else b""


def _run_continues(data: bytes, pos: int, size: int, key: int) -> bool:
    """Is the length-delimited field whose length starts at `pos` followed by `key` again?"""
    if pos >= size:
        return False
    length = data[pos]
    end = pos + 1 + length
    return length < 0x80 and end < size and data[end] == key


def _decode_run(
    plan: _Plan,
    data: bytes,
    start: int,
    pos: int,
    size: int,
    key: int,
    kind: int,
    out: list[Any],
    text: str | None,
) -> int:
    """Append a run of one repeated string or bytes field (one-byte `key`) to `out`.

    `start` is where the first element's key is and `pos` where its length is; the run goes on
    while the next byte is `key`. With `text` (all of `data` decoded as ASCII: every length is
    then a one-byte varint and every string valid) elements are slices of it; otherwise each is
    checked and decoded on its own. Returns the position after the run.
    """
    append = out.append
    if text is not None and key < 0x80:
        # All ASCII: keys and lengths are one byte each. `payload` is where an element's bytes
        # start (its length is the byte before); the run ends where the next byte is not `key`,
        # or, through IndexError, at the end of `data`.
        source: str | bytes = text if kind == _STRING else data
        payload = pos + 1
        end = pos
        try:
            while True:
                end = payload + data[payload - 1]
                append(source[payload:end])
                if data[end] != key:
                    return end
                payload = end + 2
        except IndexError:
            if payload - 1 >= size:  # the last byte is `key`: its length is missing
                raise _truncated(plan, key, payload - 2, "its length") from None
            if end > size:
                left = size - payload
                raise _truncated(
                    plan, key, payload - 2, f"its {end - payload} bytes ({left} are left)"
                ) from None
            return end
    while True:
        if pos >= size:
            raise _truncated(plan, key, start, "its length")
        length = data[pos]
        if length < 0x80:
            pos += 1
        else:
            length, pos = _read_varint(data, pos, size)
        end = pos + length
        if end > size:
            raise _truncated(plan, key, start, f"its {length} bytes ({size - pos} are left)")
        if kind == _STRING:
            try:
                append(data[pos:end].decode())
            except UnicodeDecodeError as error:
                raise _not_utf8(plan, key, start, error) from None
        else:
            append(data[pos:end])
        if key < 0x80 and end < size and data[end] == key:
            start = end
            pos = end + 1
        else:
            return end


def _convert_varint(kind: int, value: int, enum_cls: Any) -> Any:
    """A varint's value as the field's type reads it (protobuf's rules for each type)."""
    if kind in (_INT32, _ENUM):
        value &= 0xFFFF_FFFF
        if value & 0x8000_0000:
            value -= 1 << 32
        return enum_cls.try_value(value) if kind == _ENUM else value
    if kind == _INT64:
        return value - (1 << 64) if value & (1 << 63) else value
    if kind == _UINT32:
        return value & 0xFFFF_FFFF
    if kind == _SINT32:
        value &= 0xFFFF_FFFF
        return (value >> 1) ^ -(value & 1)
    if kind == _SINT64:
        return (value >> 1) ^ -(value & 1)
    if kind == _BOOL:
        return value != 0
    return value  # uint64


def _decode_packed(
    plan: _Plan,
    key: int,
    start: int,
    data: bytes,
    pos: int,
    end: int,
    kind: int,
    extra: tuple[int, Any],
) -> list[Any]:
    element_kind, element_extra = extra
    if kind == _PACKED_FIXED:
        width = element_extra.size
        count, rest = divmod(end - pos, width)
        if rest:
            rule = plan.rules[key >> 3]
            raise MalformedMessage(
                f"field {rule.number} ({rule.name}) at byte {start}: packed {rule.proto_type} "
                f"data of {end - pos} bytes is not a whole number of {width}-byte values"
            )
        return list(struct.unpack_from(f"<{count}{element_extra.format[1:]}", data, pos))
    chunk: list[Any] = []
    while pos < end:
        value = data[pos]
        if value < 0x80:
            pos += 1
        else:
            value, pos = _read_varint(data, pos, end)  # the chunk's end bounds its varints
        if element_kind != _UINT64:
            value = _convert_varint(element_kind, value, element_extra)
        chunk.append(value)
    return chunk


def _skip_unknown(plan: _Plan, data: bytes, start: int, key: int, pos: int, size: int) -> int:
    """Check a field that is not in `by_key` and return where it ends (or raise)."""
    number = key >> 3
    wire_type = key & 7
    if number == 0:
        raise MalformedMessage(f"field number 0 (at byte {start}) is not valid")
    if key > _MAX_KEY:
        raise MalformedMessage(
            f"field number {number} (at byte {start}) is above the maximum, {_MAX_FIELD_NUMBER}"
        )
    label = _field_label(plan, key)
    if wire_type in (3, 4):
        raise MalformedMessage(
            f"{label} at byte {start} uses wire type {wire_type} (a group), "
            "which proto3 does not support"
        )
    if wire_type in (6, 7):
        raise MalformedMessage(f"{label} at byte {start} has invalid wire type {wire_type}")
    rule = plan.rules.get(number)
    if rule is not None:
        allowed = _WIRE_NAMES[rule.wire_type]
        if rule.packable:
            allowed += " or 2 (packed)"
        raise MalformedMessage(
            f"{label} at byte {start} has wire type {_WIRE_NAMES[wire_type]}, but "
            f"{'repeated ' * rule.repeated}{rule.proto_type} fields use wire type {allowed}"
        )
    if wire_type == _WIRE_VARINT:
        if pos >= size:
            raise _truncated(plan, key, start, "its varint value")
        _, pos = _read_varint(data, pos, size)
        return pos
    if wire_type == _WIRE_LEN:
        if pos >= size:
            raise _truncated(plan, key, start, "its length")
        length, pos = _read_varint(data, pos, size)
        if pos + length > size:
            raise _truncated(plan, key, start, f"its {length} bytes ({size - pos} are left)")
        return pos + length
    width = 8 if wire_type == _WIRE_FIXED64 else 4
    if pos + width > size:
        raise _truncated(plan, key, start, f"its {width} bytes")
    return pos + width


def _field_label(plan: _Plan, key: int) -> str:
    rule = plan.rules.get(key >> 3)
    return f"field {key >> 3}" + (f" ({rule.name})" if rule is not None else "")


def _truncated(plan: _Plan, key: int, start: int, what: str) -> MalformedMessage:
    return MalformedMessage(
        f"truncated message: {_field_label(plan, key)} at byte {start} is missing {what}"
    )


def _not_utf8(plan: _Plan, key: int, start: int, error: UnicodeDecodeError) -> MalformedMessage:
    return MalformedMessage(
        f"{_field_label(plan, key)} at byte {start} is not valid UTF-8: {error.reason} "
        f"at offset {error.start} of the string"
    )
