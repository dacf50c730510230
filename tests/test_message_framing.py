"""MessageFramer (greet.transport._wire): gRPC message bodies cut out of DATA however the DATA is
split, and the prefixes it refuses before keeping a byte of the body."""

from __future__ import annotations

import itertools

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from greet.transport._wire import CompressedBody, MessageFramer


def framed(body: bytes, compressed: bool = False) -> bytes:
    return bytes([compressed]) + len(body).to_bytes(4, "big") + body


BODIES = [b"", b"a", b"hello", b"", bytes(range(256)) * 3, b"xyz"]
STREAM = b"".join(framed(body, compressed=index == 2) for index, body in enumerate(BODIES))


def fed(chunks: list[bytes], limit: int = 1 << 20) -> MessageFramer:
    framer = MessageFramer(limit)
    for chunk in chunks:
        framer.feed(chunk)
    return framer


def test_whole_messages_in_one_data_frame() -> None:
    framer = fed([STREAM])
    assert list(framer.messages) == BODIES
    assert [type(body) is CompressedBody for body in framer.messages] == [
        index == 2 for index in range(len(BODIES))
    ]
    assert not framer.inside_message


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5, 6, 7, 64, 1000])
def test_any_split_gives_the_same_messages(step: int) -> None:
    for offset in range(min(step, 16)):
        cuts = [0, *range(offset or step, len(STREAM), step), len(STREAM)]
        chunks = [STREAM[a:b] for a, b in itertools.pairwise(cuts)]
        framer = fed(chunks)
        assert list(framer.messages) == BODIES, (step, offset)
        assert type(framer.messages[2]) is CompressedBody
        assert type(framer.messages[1]) is bytes
        assert not framer.inside_message


def test_a_message_over_many_frames_and_the_next_one_after_it() -> None:
    big = bytes(range(251)) * 4000  # about 1 MB
    data = framed(big) + framed(b"next") + framed(b"after")[:3]
    framer = fed([data[i : i + 16384] for i in range(0, len(data), 16384)])
    assert list(framer.messages) == [big, b"next"]
    assert framer.inside_message  # a prefix has begun
    framer.feed(framed(b"after")[3:])
    assert list(framer.messages) == [big, b"next", b"after"]
    assert not framer.inside_message


def test_inside_message_and_untouched() -> None:
    framer = MessageFramer(100)
    assert framer.untouched
    assert not framer.inside_message
    framer.feed(framed(b"abc")[:2])
    assert framer.inside_message
    assert not framer.untouched
    framer.feed(framed(b"abc")[2:6])
    assert framer.inside_message
    framer.feed(framed(b"abc")[6:])
    assert not framer.inside_message
    assert list(framer.messages) == [b"abc"]
    framer.messages.clear()
    assert framer.untouched
    framer.feed(framed(b"abcdef")[:7])
    framer.clear()
    assert framer.untouched
    assert not framer.inside_message
    framer.feed(framed(b"q"))
    assert list(framer.messages) == [b"q"]


def test_a_message_over_the_limit_is_refused_at_its_prefix() -> None:
    framer = MessageFramer(10)
    with pytest.raises(GRPCError) as raised:
        framer.feed(framed(b"x" * 11)[:5])
    assert raised.value.status is Status.RESOURCE_EXHAUSTED
    assert "11 bytes" in (raised.value.message or "")
    framer = MessageFramer(10)
    framer.feed(framed(b"x" * 10)[:3])
    framer.feed(framed(b"x" * 10)[3:])
    assert list(framer.messages) == [b"x" * 10]


def test_a_prefix_flag_other_than_0_or_1_is_internal() -> None:
    framer = MessageFramer(10)
    framer.feed(framed(b"ok"))
    with pytest.raises(GRPCError) as raised:
        framer.feed(b"\x02" + framed(b"x")[1:])
    assert raised.value.status is Status.INTERNAL
    split = MessageFramer(10)
    split.feed(b"\x02\x00")
    with pytest.raises(GRPCError):
        split.feed(b"\x00\x00\x01x")
