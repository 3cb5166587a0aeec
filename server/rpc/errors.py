"""Errors as clients see them: a gRPC status with an ErrorInfo reason and metadata,
the status of every engine Result, and the checks of request values shared by services."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from core import NotLeader
from core.records import (
    Result,
)
from server.mms_pb import (
    types_pb2,
)
from server.rpc.constants import ERROR_MESSAGE_BYTES_MAX, ERROR_METADATA_VALUE_BYTES_MAX

log = logging.getLogger("mms.server")

ERROR_DOMAIN = "mms.v1"

_CODE_OF_RESULT = {
    Result.CARD_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Result.CARD_LOST: grpc.StatusCode.FAILED_PRECONDITION,
    Result.CARD_FROZEN: grpc.StatusCode.FAILED_PRECONDITION,
    Result.CARD_CANCELLED: grpc.StatusCode.FAILED_PRECONDITION,
    Result.CARD_DORMANT: grpc.StatusCode.FAILED_PRECONDITION,
    Result.CARD_EXPIRED: grpc.StatusCode.FAILED_PRECONDITION,
    Result.INSUFFICIENT_BALANCE: grpc.StatusCode.FAILED_PRECONDITION,
    Result.BALANCE_LIMIT: grpc.StatusCode.FAILED_PRECONDITION,
    Result.AMOUNT_NOT_POSITIVE: grpc.StatusCode.INVALID_ARGUMENT,
    Result.AMOUNT_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Result.OP_TYPE_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Result.CLIENT_ID_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Result.CARD_NO_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Result.CARD_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Result.RECHARGE_NOT_ALLOWED: grpc.StatusCode.PERMISSION_DENIED,
    # Malformed input is the client's error; everything else (PIN, points, uses,
    # coupons, refunds) is the state of the card or the swipe: FAILED_PRECONDITION.
    Result.ITEMS_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Result.OFFSET_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Result.COUPONS_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    # The generic results of admin ops' own refusals (with a reason of the core op).
    Result.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Result.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Result.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Result.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}
# docs/api.md's result table lists every Result with this status (tests/unit/test_docs.py).


def result_status(code: int) -> grpc.StatusCode:
    """The gRPC status of a rejected op's engine Result."""
    return _CODE_OF_RESULT.get(Result(int(code)), grpc.StatusCode.FAILED_PRECONDITION)


def result_reason(code: int) -> str:
    """The ErrorInfo reason for an engine Result: its proto enum name."""
    try:
        return types_pb2.Result.Name(int(code))
    except ValueError:
        return f"RESULT_{int(code)}"


# Prefixes a reason carries that the message of the domain error it came from lacks:
# MemberError("PHONE_TAKEN", ...) is reason MEMBER_PHONE_TAKEN, Result.CARD_FROZEN is
# RESULT_CARD_FROZEN.
_REASON_PREFIXES = ("MEMBER_", "RESULT_")


def message_without_reason(message: str, reason: str) -> str:
    """The message of a status without the reason it repeats: the domain errors write
    "PHONE_TAKEN: phone 138****8000 belongs to member 2", and the reason is in ErrorInfo
    already, so a client that prints both would say it twice. A message that is only
    the reason becomes the reason in words ("card frozen")."""
    names = {reason} | {reason[len(p):] for p in _REASON_PREFIXES if reason.startswith(p)}
    names.discard("")
    changed = True
    while changed:  # "RESULT_X: X: text" has it twice
        changed = False
        for name in names:
            if message.startswith(name + ": "):
                message = message[len(name) + 2:].lstrip()
                changed = True
    if message in names or not message:
        words = reason
        for p in _REASON_PREFIXES:
            words = words.removeprefix(p)
        return words.replace("_", " ").lower()
    return message


def clipped(text: str, max_bytes: int) -> str:
    """text, cut to at most max_bytes of UTF-8 (at a character) with an ellipsis when it
    was longer: a refusal that quotes a long hostile value still fits the trailers."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes - 3].decode("utf-8", "ignore") + "\u2026"


class RpcFailure(Exception):
    """A request-level failure: a status code plus a machine-readable reason. The
    message is what people read; it never repeats the reason (message_without_reason)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str,
                 metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}

    @property
    def message(self) -> str:
        return clipped(message_without_reason(self._message, self.reason),
                       ERROR_MESSAGE_BYTES_MAX)

    @message.setter
    def message(self, value: str) -> None:
        self._message = value

    @classmethod
    def of_result(cls, code: int, message: str = "", **metadata: str) -> RpcFailure:
        reason = result_reason(code)
        return cls(result_status(code), reason, message or reason, metadata)

    def trailing_metadata(self):
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN,
            metadata={k: clipped(str(v), ERROR_METADATA_VALUE_BYTES_MAX)
                      for k, v in self.metadata.items()})
        detail = any_pb2.Any()
        detail.Pack(info)
        st = status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])
        return rpc_status.to_status(st).trailing_metadata


NODE_CHANGING_ROLE = "NODE_CHANGING_ROLE"


def store_closed(exc: BaseException) -> RpcFailure | None:
    """A read that met the store closed under it: the node is changing role (leadership
    reopens its store as a primary or a standby, server/rpc/replication.py
    ReplicatedNode), or it is stopping. UNAVAILABLE: the call may be sent again."""
    if type(exc).__module__ == "lmdb" and "closed" in str(exc):
        return RpcFailure(grpc.StatusCode.UNAVAILABLE, NODE_CHANGING_ROLE,
                          "this node's store is being reopened (a change of role, or a "
                          "stop); send the call again")
    return None


def engine_closed(exc: Exception) -> RpcFailure:
    """An engine that takes no ops: UNAVAILABLE with reason NOT_LEADER (a standby; the
    leader's address in metadata "leader" when known) or SHUTTING_DOWN."""
    if isinstance(exc, NotLeader):
        return RpcFailure(grpc.StatusCode.UNAVAILABLE, "NOT_LEADER", str(exc),
                          {"leader": exc.leader} if exc.leader else {})
    return RpcFailure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", str(exc))


def invalid(reason: str, message: str, **metadata: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, reason, message, metadata)


# Journal sequences are int64 (a century of commits at a million a second stays far
# below); a cursor past this names no record and is refused before it is used.
SEQ_MAX = 2**63 - 1


def seq_cursor(value: int, field: str) -> int:
    """A journal cursor from a request (since_seq, after_seq): 0..SEQ_MAX."""
    if not 0 <= int(value) <= SEQ_MAX:
        raise invalid("VALUE_OUT_OF_RANGE", f"{field}: {value} is outside 0..{SEQ_MAX}",
                      field=field)
    return int(value)


def page_limit(value: int, default: int, maximum: int, field: str = "limit") -> int:
    """The page size of a list call: 0 asks for the default, and a value past the
    maximum is refused (LIMIT_INVALID), never silently cut: a caller who asked for more
    than it got would take a short page for the end of the list."""
    limit = int(value) or default
    if not 1 <= limit <= maximum:
        raise invalid("LIMIT_INVALID", f"{field}: {value} is outside 1..{maximum} (0 for "
                      f"{default}); read further pages instead", field=field,
                      limit_max=str(maximum))
    return limit


