"""The node's role in a pair or trio: primary, standby or fenced; its epoch; who leads.

Only the primary takes writes, and only while its lease in etcd is surely still held:
`check_writable()` refuses every mutating call on any other node (or on a primary whose
lease may have run out) with UNAVAILABLE / NOT_LEADER and the leader's address in the
ErrorInfo metadata, so a client can send the same request, with the same client ids, to
the node named there. The instrumentation layer (`rpc_method`) calls it for every
mutating method, before the handler and again before the answer leaves, so one place
covers the POS and admin services alike.

`may_acknowledge` is the ack gate (Engine.set_ack_gate takes it): true while this node is
primary and the monotonic clock is before `lease_valid_until - margin`. The lease's
validity is counted from *before* the keepalive request that renewed it was sent (see
server/rpc/leader.py and docs/operating.md, "Leadership and failover"), so etcd cannot
have expired the lease before this node stops acknowledging.

A node started without [ha] is primary for good (`NodeRole.single()`): nothing changes
for a single server.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from server.mms_pb import admin_pb2, campaign_pb2, pos_pb2, segment_pb2
from server.rpc.constants import ADMIN, CAMPAIGN, POS, SEGMENT
from server.rpc.errors import RpcFailure
from server.rpc.guard import takes_client_ids

PRIMARY = "primary"
STANDBY = "standby"
FENCED = "fenced"
STATES = (PRIMARY, STANDBY, FENCED)

# The ErrorInfo reason of a write sent to a node that does not lead, and its metadata keys.
NOT_LEADER = "NOT_LEADER"
LEADER_ADDRESS_KEY = "leader"
LEADER_NAME_KEY = "leader_name"
EPOCH_KEY = "epoch"

# Methods that change state although their requests carry no client id (sessions are
# kept in LMDB, so a login is a write; an import is keyed by its file id).
_MUTATING_WITHOUT_IDS = {(ADMIN, "Login"), (ADMIN, "Logout"), (ADMIN, "ImportMembers")}
_SERVICES = {POS: pos_pb2, ADMIN: admin_pb2, SEGMENT: segment_pb2, CAMPAIGN: campaign_pb2}


def is_mutating(service: str, method: str) -> bool:
    """Whether a method of the POS, admin, segment or campaign service writes (and so needs the leader):
    every method whose request carries client ids, and the few listed above. Reads
    (GetCard, ShowCard, the journal, reports) are served by every node."""
    if service not in _SERVICES:
        return False
    return takes_client_ids(service, method) or (service, method) in _MUTATING_WITHOUT_IDS


@dataclass(frozen=True)
class Leader:
    """Who leads, as etcd's leader key says: a name, the address clients use, the epoch."""
    name: str
    address: str
    epoch: int


class NodeRole:
    """The role of this node, shared by the event loop (handlers), the leadership task
    and the engine's committer thread (the ack gate): every field is replaced whole
    under a lock, and the gate reads two of them without one (a float and a str)."""

    def __init__(self, name: str, address: str, *, margin_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, state: str = STANDBY) -> None:
        if state not in STATES:
            raise ValueError(f"state is one of {STATES}")
        self.name = name
        self.address = address
        self.margin_s = margin_s
        self._clock = clock
        self._lock = threading.Lock()
        self.state = state
        self.epoch = 0
        self.leader: Leader | None = None
        # Monotonic time before which this node may acknowledge, margin already taken off.
        self._ack_until = math.inf if state == PRIMARY else -math.inf
        self._lease_until = -math.inf

    @classmethod
    def single(cls, address: str = "") -> NodeRole:
        """A node without leadership: primary for good, every ack allowed."""
        role = cls("single", address, state=PRIMARY)
        role.leader = Leader("single", address, 0)
        return role

    # --- transitions (the leadership task) ------------------------------------------

    def lease_renewed(self, sent_at: float, ttl_s: float) -> None:
        """A keepalive (or the grant) sent at monotonic time sent_at came back with
        ttl_s: etcd keeps the lease at least until sent_at + ttl_s, by this clock."""
        with self._lock:
            until = sent_at + ttl_s - self.margin_s
            if self.state == PRIMARY and until > self._ack_until:
                self._ack_until = until
            self._lease_until = until

    def become_primary(self, epoch: int, lease_sent_at: float, ttl_s: float) -> None:
        with self._lock:
            self.epoch = epoch
            self.state = PRIMARY
            self.leader = Leader(self.name, self.address, epoch)
            self._ack_until = lease_sent_at + ttl_s - self.margin_s

    def become_standby(self, leader: Leader | None) -> None:
        with self._lock:
            self.state = STANDBY
            self._ack_until = -math.inf
            self.leader = leader
            if leader is not None:
                self.epoch = max(self.epoch, leader.epoch)

    def fence(self) -> None:
        """This node led and may no longer: it acknowledges nothing from now on."""
        with self._lock:
            self.state = FENCED
            self._ack_until = -math.inf
            if self.leader is not None and self.leader.name == self.name:
                self.leader = None

    # --- checks (handlers, the committer) -------------------------------------------

    def may_acknowledge(self) -> bool:
        """The ack gate: primary, and the lease surely still held."""
        return self.state == PRIMARY and self._clock() < self._ack_until

    @property
    def ack_until(self) -> float:
        """The monotonic time at which the gate closes (or closed)."""
        return self._ack_until

    def lease_time_left_s(self) -> float:
        """How long this node may still acknowledge (negative: it may not)."""
        return self._ack_until - self._clock()

    def not_leader(self) -> RpcFailure:
        leader = self.leader
        meta = {EPOCH_KEY: str(self.epoch), "node": self.name, "state": self.state}
        if leader is not None and leader.name != self.name:
            meta[LEADER_ADDRESS_KEY] = leader.address
            meta[LEADER_NAME_KEY] = leader.name
            meta[EPOCH_KEY] = str(leader.epoch)
            where = f"the leader is {leader.name} at {leader.address}"
        else:
            where = "no leader is known yet (an election is under way); retry shortly"
        return RpcFailure(grpc.StatusCode.UNAVAILABLE, NOT_LEADER,
                          f"this node ({self.name}, {self.state}) does not take writes: "
                          f"{where}; send the same request, with the same client ids, there",
                          meta)

    def check_writable(self) -> None:
        """Raise NOT_LEADER unless this node is the primary with its lease surely held."""
        if not self.may_acknowledge():
            raise self.not_leader()

    def describe(self) -> dict:
        leader = self.leader
        return {"name": self.name, "address": self.address, "state": self.state,
                "epoch": self.epoch, "leader": None if leader is None else leader.address,
                "lease_time_left_s": self.lease_time_left_s()}
