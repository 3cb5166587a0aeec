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
    reason, _meta = error_info(err)
    return reason or err.code().name


# --- following the leader ---------------------------------------------------------------

# How long one call follows the leader, retries and pauses included, when it gives no
# timeout of its own (one it gives is then the whole call's deadline, and each try gets
# what is left of it); counted from its first refusal. A
# failover takes one to a few lease TTLs (2-10 s), during which the standbys still name
# the dead leader and a new one is promoting. Before, the bound was 16 tries: a
# takeover that bounced a call between a dead node and a promoting one spent them in
# about 6 s, and a till saw UNAVAILABLE for an op it could have had answered.
LEADER_FOLLOW_S = 30.0
# A bound on tries whatever the time (64 tries at the pauses below outlast 30 s).
LEADER_ATTEMPTS_MAX = 64
# Pause before retrying when no node names a leader (an election under way), doubling
# up to the cap.
LEADER_RETRY_PAUSE_S = 0.1
LEADER_RETRY_PAUSE_MAX_S = 1.0
NOT_LEADER = "NOT_LEADER"


def error_info(err: grpc.RpcError) -> tuple[str, dict[str, str]]:
    """The ErrorInfo reason and metadata of a failed call ("" and {} without one)."""
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
                    return info.reason, dict(info.metadata)
    return "", {}


def leader_of_error(err: grpc.RpcError) -> str | None:
    """For a NOT_LEADER refusal, the leader's address it names ("" while none is known);
    None for any other error."""
    reason, meta = error_info(err)
    if reason != NOT_LEADER:
        return None
    return meta.get("leader", "")


class _Following:
    """What one call does after each refusal, for LeaderFollower and the blocking helper
    alike: UNAVAILABLE naming a leader goes there at once (unless that one did not
    answer: the others name it until its lease runs out); UNAVAILABLE naming none, or
    from a node that did not answer, pauses (doubling, capped) and tries the next node.
    Any other error, the deadline, or LEADER_ATTEMPTS_MAX ends the call with the error."""

    def __init__(self, timeout: float | None) -> None:
        import time

        self._clock = time.monotonic
        # A call that gives no timeout (a long stream) has none per try either; its
        # retries then get LEADER_FOLLOW_S from the first refusal.
        self.deadline = None if timeout is None else self._clock() + timeout
        self.pause = LEADER_RETRY_PAUSE_S
        self.unreachable: set[str] = set()
        self.attempts = 0
        self._start = self._clock()
        # Each refusal, for a post-mortem: "+elapsed_s target CODE reason leader=...".
        self.tries: list[str] = []

    def remaining(self) -> float | None:
        """The timeout of the next try: what is left of the call's (None without one)."""
        return None if self.deadline is None else max(0.0, self.deadline - self._clock())

    def after(self, err: grpc.RpcError, target: str) -> tuple[str | None, float]:
        """(the leader to try next, or None for the next node in turn; seconds to pause
        first), or err raised when the call should end with it."""
        self.attempts += 1
        named = leader_of_error(err)
        self.tries.append(f"+{self._clock() - self._start:.2f}s {target} {err.code().name} "
                          f"{error_info(err)[0] or '-'} leader={named!r}")
        if err.code() != grpc.StatusCode.UNAVAILABLE or self.attempts >= LEADER_ATTEMPTS_MAX:
            raise err
        if named is None:
            self.unreachable.add(target)
        elif named:
            self.unreachable.discard(target)
        wait = 0.0
        if not named or named in self.unreachable:
            named, wait = None, self.pause
            self.pause = min(2 * self.pause, LEADER_RETRY_PAUSE_MAX_S)
        if self.deadline is None:
            self.deadline = self._clock() + LEADER_FOLLOW_S
        if wait >= self.deadline - self._clock():
            raise err
        return named, wait


class LeaderFollower:
    """aio channels to the nodes of a pair or trio, sending each call to the leader.

    A call refused with UNAVAILABLE / NOT_LEADER is sent again, the same request object
    (so the same client ids: a write the old node did apply is answered from its first
    result, never applied twice) to the node the refusal names; while no node names a
    leader it tries the known nodes in turn with a bounded, doubling pause. A call that
    fails with UNAVAILABLE for another reason (the node died) is retried the same way on
    the other nodes. All of it within the call's timeout (LEADER_FOLLOW_S without one),
    each try given what is left of it (_Following).

    For a stream, `call` takes a factory of fresh request iterators over the same
    messages (call("pos", "BulkRecharge", lambda: chunks(...))).
    """

    def __init__(self, targets: list[str] | str, ca_file: str | None = None) -> None:
        given = [targets] if isinstance(targets, str) else list(targets)
        self.targets = list(dict.fromkeys(given))  # each node once, in the order given
        if not self.targets:
            raise ValueError("at least one target")
        self.ca_file = ca_file
        self.target = self.targets[0]
        self.redirects = 0
        # The refusals of the last call (_Following.tries), for a post-mortem.
        self.tries: list[str] = []
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stubs_of(self, target: str):
        ch = self._channels.get(target)
        if ch is None:
            ch = self._channels[target] = aio_channel(target, self.ca_file)
        return dict(zip(("pos", "admin"), stubs(ch), strict=True))

    def _next_target(self, named: str | None) -> str:
        if named:
            if named not in self.targets:
                self.targets.append(named)
            return named
        i = self.targets.index(self.target) if self.target in self.targets else -1
        return self.targets[(i + 1) % len(self.targets)]  # targets are distinct

    def skip_target(self) -> None:
        """The node last tried did not answer in time (DEADLINE_EXCEEDED: stopped, or cut
        off): the next call starts at the next node. The caller retries with the same
        client ids, so an op that node did apply is answered as a replay, never twice."""
        self.target = self._next_target(None)

    async def call(self, service: str, method: str, request, **kw):
        """stub.<method>(request, **kw) on the leader; request may be a factory of
        request iterators (for client-streaming methods)."""
        import asyncio

        following = _Following(kw.pop("timeout", None))
        self.tries = following.tries
        while True:
            fn = getattr(self.stubs_of(self.target)[service], method)
            try:
                return await fn(request() if callable(request) else request,
                                timeout=following.remaining(), **kw)
            except grpc.RpcError as e:
                named, wait = following.after(e, self.target)
                if wait:
                    await asyncio.sleep(wait)
                self.target = self._next_target(named)
                self.redirects += 1

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    async def __aenter__(self) -> LeaderFollower:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class FollowingStub:
    """A stub-like view of one service through a LeaderFollower: `await s.Swipe(req,
    metadata=md)` goes to the leader. Drop-in for the unary calls of the tools."""

    def __init__(self, follower: LeaderFollower, service: str) -> None:
        self._follower = follower
        self._service = service

    def __getattr__(self, method: str):
        async def call(request, **kw):
            return await self._follower.call(self._service, method, request, **kw)

        return call


def sync_call_following_leader(targets: list[str], make_call, timeout: float | None = None):
    """For blocking clients: make_call(target, timeout) is tried on the leader, following
    NOT_LEADER (and a dead node's UNAVAILABLE) like LeaderFollower, all within timeout
    (LEADER_FOLLOW_S without one; each try is given what is left); make_call must send
    the same client ids every time. Returns (result, target)."""
    import time

    targets = list(dict.fromkeys(targets))
    target = targets[0]
    following = _Following(timeout)
    while True:
        try:
            return make_call(target, following.remaining()), target
        except grpc.RpcError as e:
            named, wait = following.after(e, target)
            if wait:
                time.sleep(wait)
            if named:
                if named not in targets:
                    targets.append(named)
                target = named
            else:
                target = targets[(targets.index(target) + 1) % len(targets)]


def split_targets(target: str) -> list[str]:
    """`--target a:7000,b:7000,c:7000`: the nodes of a pair or trio, any of them first."""
    return [t.strip() for t in target.split(",") if t.strip()]


async def resolve_leader(follower: LeaderFollower, token: str) -> str:
    """The leader's address, found without writing anything: a Swipe of 0 fen is refused
    by the leader's engine (AMOUNT_NOT_POSITIVE, which applies nothing and claims no id)
    but by a standby first, with NOT_LEADER, which the follower follows. For streams,
    which cannot be re-sent halfway, opened once on the leader."""
    import os

    from server.mms_pb import pos_pb2

    try:
        await follower.call("pos", "Swipe", pos_pb2.SwipeRequest(
            client_id=os.urandom(16), card_no=0, amount_fen=0), metadata=auth(token), timeout=30)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAVAILABLE:
            raise
    return follower.target


class SyncFollowingStub:
    """The blocking counterpart of FollowingStub (for `mms replay`): each call goes to the
    leader through sync_call_following_leader. A streamed request (an iterator of
    messages) is kept as a list so that a retry sends the same messages, ids and all."""

    def __init__(self, targets: list[str], service: str = "pos",
                 ca_file: str | None = None) -> None:
        self.targets = list(targets)
        self.service = service
        self.ca_file = ca_file
        self._channels: dict[str, grpc.Channel] = {}
        self.target = self.targets[0]

    def _stub(self, target: str):
        ch = self._channels.get(target)
        if ch is None:
            if self.ca_file:
                with open(self.ca_file, "rb") as f:
                    creds = grpc.ssl_channel_credentials(f.read())
                ch = grpc.secure_channel(target, creds, options=CHANNEL_OPTIONS)
            else:
                ch = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
            self._channels[target] = ch
        return dict(zip(("pos", "admin"), stubs(ch), strict=True))[self.service]

    def __getattr__(self, method: str):
        from google.protobuf.message import Message

        def call(request, **kw):
            messages = request if isinstance(request, Message) else list(request)

            timeout = kw.pop("timeout", None)

            def once(target: str, left: float):
                body = messages if isinstance(messages, Message) else iter(messages)
                return getattr(self._stub(target), method)(body, timeout=left, **kw)

            out, self.target = sync_call_following_leader([self.target, *self.targets], once,
                                                          timeout)
            return out

        return call

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
