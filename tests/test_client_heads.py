"""The client's header blocks (greet.transport._wire): request heads built once per method, and
the quick reads of the usual replies, including grpc-go's OK trailers with an empty grpc-message."""

from __future__ import annotations

import asyncio

import pytest
from grpclib.metadata import USER_AGENT, Deadline

from greet.transport._wire import RequestHeads, plain_ok

TAIL = [
    (b"te", b"trailers"),
    (b"content-type", b"application/grpc"),
    (b"user-agent", USER_AGENT.encode()),
    (b"grpc-accept-encoding", b"gzip,deflate,identity"),
]


def test_a_request_head_without_deadline_is_built_once_per_method() -> None:
    heads = RequestHeads(b"http", b"example:50051", None)
    first = heads("/pkg.Service/Call", None)
    assert list(first) == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/pkg.Service/Call"),
        (b":authority", b"example:50051"),
        *TAIL,
    ]
    assert heads("/pkg.Service/Call", None) is first
    other = heads("/pkg.Service/Other", None)
    assert other[2] == (b":path", b"/pkg.Service/Other")
    assert other[3:] == first[3:]


def test_a_deadline_adds_grpc_timeout_before_te_and_the_encoding_comes_last() -> None:
    heads = RequestHeads(b"https", b"host:443", "gzip")
    block = heads("/pkg.Service/Call", Deadline.from_timeout(5))
    names = [name for name, _ in block]
    assert names == [
        b":method", b":scheme", b":path", b":authority", b"grpc-timeout",
        b"te", b"content-type", b"user-agent", b"grpc-accept-encoding", b"grpc-encoding",
    ]  # fmt: skip
    timeout = dict(block)[b"grpc-timeout"]
    assert timeout[-1:] in (b"m", b"u", b"S")
    assert int(timeout[:-1]) > 0
    assert dict(block)[b"grpc-encoding"] == b"gzip"
    assert heads("/pkg.Service/Call", None)[-1] == (b"grpc-encoding", b"gzip")


def test_a_deadline_that_passed_is_a_timeout_before_anything_is_sent() -> None:
    heads = RequestHeads(b"http", b"h:1", None)
    with pytest.raises(asyncio.TimeoutError, match=r"^before the call was sent$"):
        heads("/pkg.Service/Call", Deadline.from_timeout(-1))


def test_the_cache_starts_again_past_its_limit() -> None:
    heads = RequestHeads(b"http", b"h:1", None)
    kept = heads("/s/m0", None)
    for index in range(1, RequestHeads.LIMIT + 1):
        heads(f"/s/m{index}", None)
    again = heads("/s/m0", None)
    assert again == kept
    assert again is not kept


@pytest.mark.parametrize(
    ("trailers", "expected"),
    [
        (((b"grpc-status", b"0"),), True),
        (((b"grpc-status", b"0"), (b"grpc-message", b"")), True),  # grpc-go's
        (((b"grpc-status", b"0"), (b"grpc-message", b"fine")), False),
        (((b"grpc-status", b"0"), (b"x-trailer", b"")), False),
        (((b"grpc-status", b"1"), (b"grpc-message", b"")), False),
        (((b"grpc-message", b""), (b"grpc-status", b"0")), False),
        ((), False),
    ],
)
def test_plain_ok_is_an_ok_status_with_nothing_to_read(
    trailers: tuple[tuple[bytes, bytes], ...], expected: bool
) -> None:
    assert plain_ok(trailers) is expected
