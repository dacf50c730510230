"""Typed grpcio callables for GreetService methods (grpcio clients in the tests)."""

from __future__ import annotations

import grpc

from greet_service import HelloResponse, NoParam

__all__ = ["SAY_HELLO", "say_hello"]

SAY_HELLO = "/greet_service.GreetService/SayHello"


def serialize(message: NoParam) -> bytes:
    return bytes(message)


def say_hello(
    channel: grpc.aio.Channel,
) -> grpc.aio.UnaryUnaryMultiCallable[NoParam, HelloResponse]:
    """SayHello on a grpcio asyncio channel."""
    return channel.unary_unary(
        SAY_HELLO, request_serializer=serialize, response_deserializer=HelloResponse.FromString
    )
