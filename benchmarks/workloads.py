"""The benchmark workloads: which method, which request body, what load shape, how to count.

Request bodies are gRPC length-prefixed messages (1 byte "compressed" flag, 4 bytes big-endian
length, the protobuf bytes) built with the project's own betterproto classes, written to files
that h2load posts as the HTTP/2 request body of each call.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import betterproto

from greet_service import HelloRequest, NamesList, NoParam

__all__ = ["WORKLOADS", "Workload", "grpc_frame", "write_body"]

SERVICE_PATH = "/greet_service.GreetService/"
MESSAGES_PER_STREAM = 1_000


def grpc_frame(message: betterproto.Message) -> bytes:
    """One gRPC length-prefixed message (uncompressed)."""
    payload = bytes(message)
    return struct.pack(">?I", False, len(payload)) + payload


def names(count: int) -> list[str]:
    return [f"name-{index:04d}" for index in range(count)]


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

    @property
    def path(self) -> str:
        return SERVICE_PATH + self.method

    @property
    def in_flight(self) -> int:
        return self.connections * self.streams_per_connection

    def body(self) -> bytes:
        """The whole request body of one call."""
        messages: Iterable[betterproto.Message]
        if self.method == "SayHello":
            messages = [NoParam()]
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
    )
}  # fmt: skip


def write_body(workload: Workload, directory: Path) -> Path:
    path = directory / f"{workload.key}.body"
    path.write_bytes(workload.body())
    return path
