"""Reflection: `grpc.reflection.v1` and `v1alpha`, so grpcurl-style tools can list, describe and
call every method of every service served, without a copy of its .proto.

grpclib's `ServerReflection` answers from a google.protobuf descriptor pool, but betterproto's
generated code never registers anything there. So this module builds a pool of its own from the
FileDescriptorSet that codegen (greet.codegen, `nox -s codegen`) writes into each generated
package (`descriptor_set.binpb`), found next to the generated base class of each servicer, plus
grpclib's health.proto so that the health service can be described too. A servicer whose set is
elsewhere is described from `descriptor_sets` given to the server.

`ReflectionPool` also answers method symbols (`inventory.v1.InventoryService.GetItem`, what
`grpcurl describe` of a method asks for, and what grpc-go's reflection answers):
google.protobuf's `DescriptorPool.FindFileContainingSymbol` knows messages, fields, enums and
services, but not methods, so grpclib would say NOT_FOUND.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Collection, Iterable
from importlib import resources
from pathlib import Path

from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from google.protobuf.descriptor_pool import DescriptorPool
from grpclib._typing import IServable
from grpclib.health.v1 import health_pb2
from grpclib.reflection.service import ServerReflection

from greet.codegen import DESCRIPTOR_SET_FILE
from greet.server.services import service_names

__all__ = [
    "DESCRIPTOR_SET_FILE",
    "ReflectionPool",
    "descriptor_pool",
    "descriptor_set_of",
    "load_descriptor_set",
    "with_reflection",
]

log = logging.getLogger("greet.server")


def load_descriptor_set(path: Path) -> FileDescriptorSet:
    """A serialized FileDescriptorSet (`protoc --descriptor_set_out`) read from `path`."""
    return FileDescriptorSet.FromString(path.read_bytes())


def descriptor_set_of(servicer: IServable) -> FileDescriptorSet | None:
    """The FileDescriptorSet codegen wrote into the generated package of `servicer`'s class or
    of one of its bases (the generated `...Base`); None if there is none."""
    for cls in type(servicer).__mro__:
        module = sys.modules.get(cls.__module__)
        if module is None or not hasattr(module, "__path__"):  # generated code is a package
            continue
        resource = resources.files(cls.__module__).joinpath(DESCRIPTOR_SET_FILE)
        if resource.is_file():
            return FileDescriptorSet.FromString(resource.read_bytes())
    return None


def descriptor_pool(descriptor_sets: Iterable[FileDescriptorSet]) -> DescriptorPool:
    """A fresh pool (not the process-wide one) holding health.proto and every file of
    `descriptor_sets`, each file once (by name: the first set that holds it wins)."""
    pool = DescriptorPool()
    health_file = FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(health_file)
    pool.Add(health_file)
    added = {health_file.name}
    for descriptor_set in descriptor_sets:
        for file in descriptor_set.file:
            if file.name not in added:
                pool.Add(file)
                added.add(file.name)
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


def with_reflection(
    services: Collection[IServable], descriptor_sets: Iterable[FileDescriptorSet] = ()
) -> list[IServable]:
    """`services` plus reflection v1 and v1alpha, which list them and describe them from
    `descriptor_sets` and the set found for each servicer (`descriptor_set_of`).

    A service found in no set is still listed and served; describing it answers NOT_FOUND (a
    warning says so at start-up)."""
    sets = list(descriptor_sets)
    sets += [found for service in services if (found := descriptor_set_of(service)) is not None]
    pool = descriptor_pool(sets)
    for service in services:
        for name in service_names(service):
            try:
                pool.FindServiceByName(name)
            except KeyError:
                log.warning(
                    "reflection cannot describe %s: no %s beside its generated code "
                    "(python -m greet.codegen writes one) and none given",
                    name,
                    DESCRIPTOR_SET_FILE,
                )
    return ServerReflection.extend(services, pool=ReflectionPool(pool))
