"""A grpcurl-like reflection client: everything it knows about a service comes from the server's
reflection (grpcio-reflection's ProtoReflectionDescriptorDatabase), no generated code, no .proto.

It runs in a child process: grpcio-reflection's reflection.proto declares the same message names
as grpclib's, and one process's google.protobuf pool refuses the second copy of a name.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["GRPCURL_LIKE_CLIENT", "describe_and_call"]

GRPCURL_LIKE_CLIENT = r"""
import json
import sys

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

target, service_name, requests = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with grpc.insecure_channel(target) as channel:
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = DescriptorPool(database)
    service = pool.FindServiceByName(service_name)
    out = {"services": sorted(database.get_services()), "file": service.file.name, "calls": {}}
    for method in service.methods:
        request_class = GetMessageClass(method.input_type)
        reply_class = GetMessageClass(method.output_type)
        kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
                (True, False): channel.stream_unary, (True, True): channel.stream_stream}[
            (method.client_streaming, method.server_streaming)]
        call = kind(f"/{service.full_name}/{method.name}",
                    request_serializer=lambda message: message.SerializeToString(),
                    response_deserializer=reply_class.FromString)
        messages = [json_format.ParseDict(r, request_class()) for r in requests[method.name]]
        argument = iter(messages) if method.client_streaming else messages[0]
        replies = call(argument, timeout=10)
        replies = list(replies) if method.server_streaming else [replies]
        out["calls"][method.name] = {
            "streaming": [method.client_streaming, method.server_streaming],
            "replies": [json_format.MessageToDict(reply) for reply in replies],
        }
print(json.dumps(out))
"""
"""argv: target, service name, JSON {method: [request as JSON, ...]}; prints JSON: the services
listed, the service's file name and each method's streaming flags and replies."""


async def describe_and_call(
    target: str, service: str, requests: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, Any]:
    """Run GRPCURL_LIKE_CLIENT against `target` and return what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        GRPCURL_LIKE_CLIENT,
        target,
        service,
        json.dumps(requests),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    out: dict[str, Any] = json.loads(stdout)
    return out
