"""Reflection: `grpc.reflection.v1` and `v1alpha`, so grpcurl-style tools can list, describe and
call every method without a copy of proto/greet.proto.

grpclib's `ServerReflection` answers from a google.protobuf descriptor pool, but betterproto's
generated code never registers anything there. So this module builds a pool of its own from the
FileDescriptorSet that codegen writes beside the generated code (`greet.binpb`), plus grpclib's
health.proto so that the health service can be described too.

`ReflectionPool` also answers method symbols (`greet_service.GreetService.SayHello`, what
`grpcurl describe` of a method asks for, and what grpc-go's reflection answers):
google.protobuf's `DescriptorPool.FindFileContainingSymbol` knows messages, fields, enums and
services, but not methods, so grpclib would say NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import Collection
from importlib import resources

from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from google.protobuf.descriptor_pool import DescriptorPool
from grpclib._typing import IServable
from grpclib.health.v1 import health_pb2
from grpclib.reflection.service import ServerReflection

__all__ = [
    "DESCRIPTOR_SET",
    "ReflectionPool",
    "descriptor_pool",
    "load_descriptor_set",
    "with_reflection",
]

DESCRIPTOR_SET = ("greet_service", "greet.binpb")
"""(package, file name) of the FileDescriptorSet that `nox -s codegen` writes."""


def load_descriptor_set() -> FileDescriptorSet:
    """The FileDescriptorSet of proto/, as codegen wrote it."""
    package, name = DESCRIPTOR_SET
    descriptor_set = FileDescriptorSet()
    descriptor_set.ParseFromString(resources.files(package).joinpath(name).read_bytes())
    return descriptor_set


def descriptor_pool() -> DescriptorPool:
    """A fresh pool holding greet's proto files and health.proto (not the process-wide pool)."""
    pool = DescriptorPool()
    health_file = FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(health_file)
    pool.Add(health_file)
    for file in load_descriptor_set().file:
        pool.Add(file)
    return pool


class ReflectionPool:
    """What grpclib's ServerReflection looks things up in: a DescriptorPool, plus methods."""

    def __init__(self, pool: DescriptorPool) -> None:
        self.pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:
        try:
            return self.pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method_name = symbol.rpartition(".")
            service = self.pool.FindServiceByName(service_name)  # KeyError: not found either
            if method_name not in service.methods_by_name:
                raise
            return service.file

    def FindFileByName(self, name: str) -> FileDescriptor:
        return self.pool.FindFileByName(name)

    def FindMessageTypeByName(self, name: str) -> Descriptor:
        return self.pool.FindMessageTypeByName(name)

    def FindExtensionByNumber(self, message: Descriptor, number: int) -> FieldDescriptor:
        return self.pool.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Descriptor) -> list[FieldDescriptor]:
        return list(self.pool.FindAllExtensions(message))


def with_reflection(services: Collection[IServable]) -> list[IServable]:
    """`services` plus reflection v1 and v1alpha, which list them and describe them."""
    return ServerReflection.extend(services, pool=ReflectionPool(descriptor_pool()))
