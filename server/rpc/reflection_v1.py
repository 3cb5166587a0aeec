"""gRPC server reflection v1 (`grpc.reflection.v1.ServerReflection`) beside v1alpha.

grpcio-reflection ships only v1alpha. The v1 protocol is the same messages under another
package (grpc/reflection/v1/reflection.proto is v1alpha's file renamed), so v1 here is
v1alpha's file descriptor with its package renamed, added to the default pool (so that
reflection can describe itself in either version), and served by v1alpha's servicer:
the two versions' messages are the same bytes on the wire.
"""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2

V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"
V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
METHOD = "ServerReflectionInfo"


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto()
    v1alpha_pb2.DESCRIPTOR.CopyToProto(fdp)
    fdp.name, fdp.package = V1_FILE, V1_PACKAGE
    fdp.options.Clear()
    old, new = f".{V1ALPHA_PACKAGE}.", f".{V1_PACKAGE}."
    for msg in fdp.message_type:
        for f in msg.field:
            if f.type_name.startswith(old):
                f.type_name = new + f.type_name[len(old):]
    for svc in fdp.service:
        for m in svc.method:
            m.input_type = new + m.input_type[len(old):]
            m.output_type = new + m.output_type[len(old):]
    return fdp


def register_v1_descriptor() -> None:
    """Add the v1 file to the default pool once (the reflection servicer reads it)."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.Add(_v1_file())


def add_v1_servicer(servicer, server) -> None:
    """Serve servicer (a v1alpha ReflectionServicer) as v1 too, on server (anything with
    add_generic_rpc_handlers, such as the guard's GuardedServer, which serves every
    method through generic handlers: server/rpc/guard.py says why)."""
    register_v1_descriptor()
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=v1alpha_pb2.ServerReflectionRequest.FromString,
        response_serializer=v1alpha_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, {METHOD: handler}),))
