"""Server reflection (grpc.reflection.v1 and v1alpha): reflection clients can list GreetService,
fetch its file descriptor, and describe and call every method from it alone.

Clients: grpcio with grpclib's reflection messages (both versions), and grpcio-reflection's
`ProtoReflectionDescriptorDatabase`, the way grpcurl-style tools work. grpcio-reflection runs in a
child process: its reflection.proto declares the same message names as grpclib's, and one
process's google.protobuf pool refuses the second copy of a name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorProto, MethodDescriptorProto
from grpclib.const import Status
from grpclib.reflection.v1 import reflection_pb2 as v1
from grpclib.reflection.v1alpha import reflection_pb2 as v1alpha
from reflection_client import describe_and_call

from greet.server import GreetServer


@dataclass(frozen=True)
class ReflectionVersion:
    path: str
    request: Callable[..., Any]
    response_from_bytes: Callable[[bytes], Any]


VERSIONS = {
    "v1": ReflectionVersion(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        v1.ServerReflectionRequest,
        v1.ServerReflectionResponse.FromString,
    ),
    "v1alpha": ReflectionVersion(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        v1alpha.ServerReflectionRequest,
        v1alpha.ServerReflectionResponse.FromString,
    ),
}

# name -> (client streaming, server streaming, input, output): the wire contract
GREET_METHODS = {
    "SayHello": (False, False, ".greet_service.NoParam", ".greet_service.HelloResponse"),
    "SayHelloServerStreaming": (
        False,
        True,
        ".greet_service.NamesList",
        ".greet_service.HelloResponse",
    ),
    "SayHelloClientStreaming": (
        True,
        False,
        ".greet_service.HelloRequest",
        ".greet_service.MessagesList",
    ),
    "SayHelloBidirectionalStreaming": (
        True,
        True,
        ".greet_service.HelloRequest",
        ".greet_service.HelloResponse",
    ),
}


def reflect(target: str, version: ReflectionVersion, requests: list[dict[str, str]]) -> list[Any]:
    """One ServerReflectionInfo stream with grpcio: send `requests`, return the responses."""
    with grpc.insecure_channel(target) as channel:
        info: grpc.StreamStreamMultiCallable[Any, Any] = channel.stream_stream(
            version.path,
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=version.response_from_bytes,
        )
        return list(info(iter([version.request(**r) for r in requests]), timeout=10))


def file_descriptors(response: Any) -> list[FileDescriptorProto]:
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
    return [
        FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]


def method_shape(method: MethodDescriptorProto) -> tuple[bool, bool, str, str]:
    return (
        method.client_streaming,
        method.server_streaming,
        method.input_type,
        method.output_type,
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_list_services_names_greet_and_health(server: GreetServer, version: str) -> None:
    [response] = await asyncio.to_thread(
        reflect, server.target, VERSIONS[version], [{"list_services": ""}]
    )
    names = {service.name for service in response.list_services_response.service}
    assert {"greet_service.GreetService", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("version", VERSIONS)
async def test_file_containing_service_describes_every_method(
    server: GreetServer, version: str
) -> None:
    responses = await asyncio.to_thread(
        reflect,
        server.target,
        VERSIONS[version],
        [
            {"file_containing_symbol": "greet_service.GreetService"},
            {"file_containing_symbol": "greet_service.HelloRequest"},
            # a method, as `grpcurl describe greet_service.GreetService.SayHello` asks
            {"file_containing_symbol": "greet_service.GreetService.SayHello"},
            {"file_by_filename": "greet.proto"},
        ],
    )
    files = [file_descriptors(response) for response in responses]
    assert all(found == files[0] for found in files)
    [greet_file] = files[0]
    assert greet_file.name == "greet.proto"
    assert greet_file.package == "greet_service"
    [service] = greet_file.service
    assert service.name == "GreetService"
    assert {method.name: method_shape(method) for method in service.method} == GREET_METHODS
    assert {message.name for message in greet_file.message_type} == {
        "NoParam",
        "HelloRequest",
        "HelloResponse",
        "NamesList",
        "MessagesList",
    }


async def test_health_service_can_be_described(server: GreetServer) -> None:
    [response] = await asyncio.to_thread(
        reflect,
        server.target,
        VERSIONS["v1"],
        [{"file_containing_symbol": "grpc.health.v1.Health"}],
    )
    [health_file] = file_descriptors(response)
    assert [service.name for service in health_file.service] == ["Health"]


async def test_unknown_symbol_is_not_found_and_the_stream_goes_on(server: GreetServer) -> None:
    responses = await asyncio.to_thread(
        reflect,
        server.target,
        VERSIONS["v1"],
        [{"file_containing_symbol": "no.such.Service"}, {"list_services": ""}],
    )
    assert responses[0].error_response.error_code == Status.NOT_FOUND.value
    assert responses[1].list_services_response.service


async def test_grpcurl_like_client_describes_and_calls_every_method(server: GreetServer) -> None:
    requests: dict[str, list[dict[str, Any]]] = {
        "SayHello": [{}],
        "SayHelloServerStreaming": [{"names": ["Akhil", "Alice"]}],
        "SayHelloClientStreaming": [{"name": "Akhil"}, {"name": "Alice"}],
        "SayHelloBidirectionalStreaming": [{"name": "Akhil"}, {"name": "Bob"}],
    }
    out = await describe_and_call(server.target, "greet_service.GreetService", requests)
    assert "greet_service.GreetService" in out["services"]
    assert out["file"] == "greet.proto"
    assert out["calls"] == {
        "SayHello": {"streaming": [False, False], "replies": [{"message": "Hello"}]},
        "SayHelloServerStreaming": {
            "streaming": [False, True],
            "replies": [{"message": "Hello Akhil"}, {"message": "Hello Alice"}],
        },
        "SayHelloClientStreaming": {
            "streaming": [True, False],
            "replies": [{"messages": ["Hello Akhil", "Hello Alice"]}],
        },
        "SayHelloBidirectionalStreaming": {
            "streaming": [True, True],
            "replies": [{"message": "Hello Akhil"}, {"message": "Hello Bob"}],
        },
    }
