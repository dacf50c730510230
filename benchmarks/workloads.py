"""The benchmark workloads: which method, which request body, what load shape, how to count.

Request bodies are gRPC length-prefixed messages (1 byte "compressed" flag, 4 bytes big-endian
length, the protobuf bytes) built with the project's own betterproto classes, written to files
that h2load posts as the HTTP/2 request body of each call. The bodies are deterministic, so the
files are the same wherever they are written:

    python benchmarks/workloads.py /tmp/greet-bodies

writes one `KEY.body` per workload there, for running a figure of benchmarks/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import betterproto

from greet_service import HelloRequest, NamesList, NoParam

__all__ = [
    "BODY_DIR",
    "LONG_NAME_CHARS",
    "TARGET_WORKLOADS",
    "WORKLOADS",
    "Workload",
    "grpc_frame",
    "long_names",
    "write_bodies",
    "write_body",
]

SERVICE_PATH = "/greet_service.GreetService/"
MESSAGES_PER_STREAM = 1_000
LONG_NAME_CHARS = 1_024
"""Length of each name of the compressed workload: its replies ("Hello " + name) are above greet's
1 KiB compression threshold, so that every server compresses every reply."""
BODY_DIR = "/tmp/greet-bodies"
"""Where the printed commands of RESULTS.md expect the bodies (`python benchmarks/workloads.py`)."""
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")

# Words for the long names: text that compresses about as well as prose does.
WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "amber", "basalt", "cedar", "dune",
    "ember", "fjord", "glacier", "harbor", "island", "jasper", "kelp", "lagoon", "meadow",
    "nectar", "orchard", "prairie", "quartz", "river", "summit", "tundra", "upland", "valley",
    "willow", "yarrow", "zephyr",
)  # fmt: skip


def grpc_frame(message: betterproto.Message) -> bytes:
    """One gRPC length-prefixed message (uncompressed)."""
    payload = bytes(message)
    return struct.pack(">?I", False, len(payload)) + payload


def names(count: int) -> list[str]:
    return [f"name-{index:04d}" for index in range(count)]


def long_names(count: int, chars: int = LONG_NAME_CHARS) -> list[str]:
    """`count` names of exactly `chars` characters of words (seeded: the same every time)."""
    result = []
    for index in range(count):
        pick = random.Random(index)
        text = f"{index:04d}"
        while len(text) < chars:
            text += " " + pick.choice(WORDS)
        result.append(text[:chars])
    return result


@dataclass(frozen=True)
class Workload:
    """One row of the results table."""

    key: str
    title: str
    method: str
    connections: int
    streams_per_connection: int
    messages_per_call: int  # messages counted per completed call (for msg/s)
    unit: str
    compressed: bool = False  # the servers compress replies; h2load accepts gzip

    @property
    def path(self) -> str:
        return SERVICE_PATH + self.method

    @property
    def in_flight(self) -> int:
        return self.connections * self.streams_per_connection

    @property
    def headers(self) -> tuple[str, ...]:
        """The request headers h2load sends (besides the pseudo-headers)."""
        return GRPC_HEADERS + (("grpc-accept-encoding: gzip",) if self.compressed else ())

    def body(self) -> bytes:
        """The whole request body of one call."""
        messages: Iterable[betterproto.Message]
        if self.method == "SayHello":
            messages = [NoParam()]
        elif self.compressed:
            messages = [NamesList(names=long_names(MESSAGES_PER_STREAM))]
        elif self.method == "SayHelloServerStreaming":
            messages = [NamesList(names=names(MESSAGES_PER_STREAM))]
        else:
            messages = [HelloRequest(name=name) for name in names(MESSAGES_PER_STREAM)]
        return b"".join(grpc_frame(message) for message in messages)


WORKLOADS: dict[str, Workload] = {
    workload.key: workload
    for workload in (
        Workload("unary128", "unary, 128 in flight (4 conns x 32 streams)", "SayHello", 4, 32, 1,
                 "req/s"),
        Workload("unary1", "unary, 1 in flight", "SayHello", 1, 1, 1, "req/s"),
        Workload("server_stream", "server stream, 1,000 names per call",
                 "SayHelloServerStreaming", 1, 4, MESSAGES_PER_STREAM, "msg/s"),
        Workload("client_stream", "client stream, 1,000 messages per call",
                 "SayHelloClientStreaming", 1, 4, MESSAGES_PER_STREAM, "msg/s"),
        Workload("bidi", "bidi, 1,000 messages per call (whole body sent at once)",
                 "SayHelloBidirectionalStreaming", 1, 4, MESSAGES_PER_STREAM, "msg/s"),
        Workload("server_stream_gzip",
                 f"server stream, 1,000 names of {LONG_NAME_CHARS:,} chars, gzip replies",
                 "SayHelloServerStreaming", 1, 4, MESSAGES_PER_STREAM, "msg/s", compressed=True),
    )
}  # fmt: skip

TARGET_WORKLOADS = ("unary128", "unary1", "server_stream", "client_stream", "bidi")
"""The five workloads issue 8's per-core target (>= 2.0x grpcio) is about."""


def write_body(workload: Workload, directory: Path) -> Path:
    path = directory / f"{workload.key}.body"
    path.write_bytes(workload.body())
    return path


def write_bodies(directory: Path, keys: Sequence[str] = tuple(WORKLOADS)) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return {key: write_body(WORKLOADS[key], directory) for key in keys}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the request body of every workload")
    parser.add_argument("directory", type=Path, nargs="?", default=Path(BODY_DIR))
    args = parser.parse_args(argv)
    for path in write_bodies(args.directory).values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
