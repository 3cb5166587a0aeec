"""Client helpers shared by the demo, the replay tool and the benchmark."""

from __future__ import annotations

import grpc
import numpy as np

from server.mms_pb import admin_pb2_grpc, pos_pb2_grpc
from server.rpc.constants import MESSAGE_BYTES_MAX

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
                   ("grpc.max_send_message_length", MESSAGE_BYTES_MAX)]


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def aio_channel(target: str, ca_file: str | None = None) -> grpc.aio.Channel:
    if ca_file:
        with open(ca_file, "rb") as f:
            creds = grpc.ssl_channel_credentials(f.read())
        return grpc.aio.secure_channel(target, creds, options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


def stubs(channel) -> tuple[pos_pb2_grpc.PosServiceStub, admin_pb2_grpc.AdminServiceStub]:
    return pos_pb2_grpc.PosServiceStub(channel), admin_pb2_grpc.AdminServiceStub(channel)


def result_names(codes) -> np.ndarray:
    return np.asarray(codes, dtype=np.uint8)


def error_reason(err: grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call (sync or aio), or its status code name."""
    from google.rpc import error_details_pb2, status_pb2

    try:
        md = err.trailing_metadata() or ()
    except Exception:
        md = ()
    for key, value in md:
        if key == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(value)
            for d in st.details:
                if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    d.Unpack(info)
                    return info.reason
    return err.code().name
