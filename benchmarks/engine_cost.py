"""Per-exchange CPU cost of greet's HTTP/2 engines (greet.transport._engines), in memory.

    python benchmarks/engine_cost.py [--engines h2 nghttp2] [--calls 20000] [--rounds 5]

A client engine and a server engine of the same kind exchange unary calls through
`Http2Engine` as greet's connections drive it: the client sends request headers and one
5-byte message that ends the stream; the server, when the message arrives, acknowledges it and
answers with greet's response headers, a message and OK trailers; the client acknowledges the reply.
No sockets, no event loop, no grpclib: the engine and its HTTP/2 library only (the same work
/work/shared/tools/h2_engine_microbench.py measures for bare h2 and ngh2, plus the engine's own
adapter code).

Printed per engine: microseconds of CPU time (time.process_time) per exchange, server side alone
and both sides together; the median of `--rounds` rounds of `--calls` exchanges (after warm-up).
`--streaming N` adds a server-streaming row: one call whose reply is N messages, per message.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from greet.transport._engine import (
    EngineLimits,
    EngineName,
    Headers,
    Http2Engine,
    new_engine,
)
from greet.transport._wire import OK_TRAILERS, RESPONSE_HEADERS

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/greet_service.GreetService/SayHello"),
    (b":authority", b"127.0.0.1:8080"),
    (b"te", b"trailers"),
    (b"content-type", b"application/grpc"),
    (b"user-agent", b"grpc-python-greet/0.1"),
    (b"grpc-accept-encoding", b"gzip,deflate,identity"),
]
REQUEST_BODY = b"\x00\x00\x00\x00\x00"
REPLY_BODY = b"\x00\x00\x00\x00\x07\n\x05Hello"


class Peer:
    """EngineEvents of one side: what greet's connection does, reduced to the engine calls."""

    engine: Http2Engine

    def __init__(self, server: bool, stream_messages: int = 0) -> None:
        self.server = server
        self.stream_messages = stream_messages
        self.closed = 0
        self.received = 0  # body bytes

    def on_request(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        pass

    def on_response(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        pass

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        engine = self.engine
        engine.acknowledge(stream_id, len(data))
        self.received += len(data)
        if self.server and end_stream:
            engine.send_headers(stream_id, RESPONSE_HEADERS)
            for _ in range(self.stream_messages or 1):
                engine.send_data(stream_id, REPLY_BODY)
            engine.send_trailers(stream_id, OK_TRAILERS)

    def on_trailers(self, stream_id: int, headers: Headers) -> None:
        pass

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        pass

    def on_stream_closed(self, stream_id: int, error_code: int) -> None:
        self.closed += 1

    def on_window_update(self, stream_id: int) -> None:
        pass

    def on_ping(self) -> None:
        pass

    def on_ping_ack(self, payload: bytes) -> None:
        pass

    def on_settings(self) -> None:
        pass

    def on_goaway(self, last_stream_id: int, error_code: int, debug: bytes) -> None:
        pass

    def on_connection_closed(self, error_code: int) -> None:
        pass


def peers(name: EngineName, stream_messages: int = 0) -> tuple[Peer, Peer]:
    """A connected (client, server) pair of one engine, after the SETTINGS exchange."""
    limits = EngineLimits()
    client_peer, server_peer = Peer(False), Peer(True, stream_messages)
    client = client_peer.engine = new_engine(name, client=True, limits=limits, events=client_peer)
    server = server_peer.engine = new_engine(name, client=False, limits=limits, events=server_peer)
    client.initiate()
    server.initiate()
    for _ in range(3):
        server.receive(client.data_to_send())
        client.receive(server.data_to_send())
    return client_peer, server_peer


def pair(name: EngineName, stream_messages: int = 0) -> tuple[Http2Engine, Http2Engine]:
    client, server = peers(name, stream_messages)
    return client.engine, server.engine


def exchanges(client: Http2Engine, server: Http2Engine, calls: int) -> tuple[float, float]:
    """(CPU seconds of both sides, of the server side) for `calls` exchanges."""
    clock = time.process_time
    server_time = 0.0
    started = clock()
    for _ in range(calls):
        stream_id = client.send_request(REQUEST)
        client.send_data(stream_id, REQUEST_BODY, end_stream=True)
        request = client.data_to_send()
        t0 = clock()
        server.receive(request)
        reply = server.data_to_send()
        server_time += clock() - t0
        client.receive(reply)
        ack = client.data_to_send()
        if ack:
            t0 = clock()
            server.receive(ack)
            server.data_to_send()
            server_time += clock() - t0
    return clock() - started, server_time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", nargs="+", default=["h2", "nghttp2"])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2000, help="exchanges before measuring")
    parser.add_argument("--streaming", type=int, default=0, metavar="N")
    args = parser.parse_args()
    print(f"us of CPU per unary exchange, median of {args.rounds} x {args.calls}")
    print("| engine | server side | both sides |")
    print("|---|---|---|")
    for name in args.engines:
        client, server = pair(name)
        exchanges(client, server, args.warmup)
        both: list[float] = []
        alone: list[float] = []
        for _ in range(args.rounds):
            total, server_side = exchanges(client, server, args.calls)
            both.append(total / args.calls * 1e6)
            alone.append(server_side / args.calls * 1e6)
        print(f"| {name} | {statistics.median(alone):.1f} | {statistics.median(both):.1f} |")
    if args.streaming:
        print(f"\nus of CPU per message of one {args.streaming}-message server stream")
        for name in args.engines:
            runs = []
            for _ in range(args.rounds):
                client, server = pair(name, args.streaming)
                total, _ = exchanges(client, server, 1)
                runs.append(total / args.streaming * 1e6)
            print(f"| {name} | {statistics.median(runs):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
