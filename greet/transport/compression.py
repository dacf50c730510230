"""Message compression (gRPC's doc/compression.md): gzip and deflate, both ways.

A compressed message has the compressed flag set in its 5-byte prefix and is encoded with the
stream's `grpc-encoding`; each side lists what it can decode in `grpc-accept-encoding`. What a
receiver does with a compressed message:

    grpc-encoding it supports      decompress it, at most max_message_bytes of output: a small
                                   message that inflates to more (a decompression bomb) is
                                   RESOURCE_EXHAUSTED after reading at most the limit
    grpc-encoding it does not      UNIMPLEMENTED (the answer carries grpc-accept-encoding)
    no grpc-encoding, or identity  INTERNAL: the flag says compressed, the stream says not
    data that does not decompress  INTERNAL

`deflate` is the zlib format (RFC 1950), as gRPC's C core writes it; `gzip` is RFC 1952. A
sender compresses a message only when it is at least `threshold` bytes (smaller ones would grow,
and cost CPU for nothing) and the peer accepts the encoding.
"""

from __future__ import annotations

import zlib

from grpclib.const import Status
from grpclib.exceptions import GRPCError

__all__ = [
    "ACCEPT_ENCODING",
    "ENCODINGS",
    "accepted",
    "compress",
    "decompress",
]

WINDOW_BITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
ENCODINGS = frozenset(WINDOW_BITS)
"""Encodings greet decodes (besides identity)."""
ACCEPT_ENCODING = b"gzip,deflate,identity"
"""greet's grpc-accept-encoding value."""


def accepted(header: bytes | None) -> frozenset[str]:
    """The encodings a grpc-accept-encoding value lists (identity always counts)."""
    if not header:
        return frozenset({"identity"})
    names = {part.strip().lower() for part in header.decode("latin-1").split(",")}
    return frozenset(names | {"identity"})


def compress(data: bytes, encoding: str) -> bytes:
    """`data` compressed with `encoding` (gzip or deflate)."""
    compressor = zlib.compressobj(wbits=WINDOW_BITS[encoding])
    return compressor.compress(data) + compressor.flush()


def decompress(data: bytes, encoding: str | None, limit: int, *, side: str = "request") -> bytes:
    """Decompress one message of a stream whose grpc-encoding is `encoding`, with at most `limit`
    bytes of output; GRPCError with the status the gRPC spec gives otherwise (module docstring).
    """
    if encoding is None or encoding == "identity":
        raise GRPCError(
            Status.INTERNAL,
            f"a compressed {side} message on a stream without grpc-encoding",
        )
    bits = WINDOW_BITS.get(encoding)
    if bits is None:
        raise GRPCError(
            Status.UNIMPLEMENTED,
            f"grpc-encoding {encoding!r} is not supported; use one of {ACCEPT_ENCODING.decode()}",
        )
    inflater = zlib.decompressobj(wbits=bits)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as error:
        raise GRPCError(
            Status.INTERNAL, f"the {side} message does not decompress as {encoding}: {error}"
        ) from None
    if len(out) > limit:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"{side} message is more than {limit} bytes once decompressed; the limit "
            "(--max-message-bytes) applies to the decompressed size",
        )
    if not inflater.eof:
        raise GRPCError(
            Status.INTERNAL, f"the {side} message is cut short: its {encoding} data does not end"
        )
    return out
