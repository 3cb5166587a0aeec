"""The node role without etcd: the ack gate's arithmetic on a fake clock, NOT_LEADER's
status and metadata, and which methods count as writes."""

from __future__ import annotations

import grpc
import pytest

from server.rpc.constants import ADMIN, POS, REPORT
from server.rpc.errors import RpcFailure
from server.rpc.leader import HaConfig, parse_leader
from server.rpc.role import FENCED, PRIMARY, STANDBY, Leader, NodeRole, is_mutating


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_gate_closes_margin_before_the_lease_counted_from_the_request():
    clock = Clock()
    role = NodeRole("a", "127.0.0.1:1", margin_s=0.5, clock=clock)
    assert not role.may_acknowledge()  # a standby never acknowledges
    role.become_primary(3, lease_sent_at=100.0, ttl_s=2.0)
    clock.t = 101.49
    assert role.may_acknowledge()
    role.check_writable()
    clock.t = 101.5  # sent_at + ttl - margin: closed, though etcd holds the lease 0.5 s more
    assert not role.may_acknowledge()
    with pytest.raises(RpcFailure) as e:
        role.check_writable()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE and e.value.reason == "NOT_LEADER"
    # A keepalive sent at 101.2 that came back renews from 101.2, not from its answer.
    role.lease_renewed(101.2, 2.0)
    assert role.may_acknowledge() and role.lease_time_left_s() == pytest.approx(1.2)
    # An older renewal answered late never moves the deadline back.
    role.lease_renewed(100.5, 2.0)
    assert role.lease_time_left_s() == pytest.approx(1.2)


def test_fenced_and_standby_refuse_with_the_leaders_address():
    role = NodeRole("b", "127.0.0.1:2", margin_s=0.5, clock=Clock())
    role.become_standby(Leader("a", "127.0.0.1:1", 7))
    assert role.state == STANDBY and role.epoch == 7
    with pytest.raises(RpcFailure) as e:
        role.check_writable()
    assert e.value.metadata["leader"] == "127.0.0.1:1"
    assert e.value.metadata["leader_name"] == "a" and e.value.metadata["epoch"] == "7"
    role.become_primary(8, 100.0, 2.0)
    assert role.state == PRIMARY
    role.fence()
    assert role.state == FENCED and not role.may_acknowledge()
    with pytest.raises(RpcFailure) as e:
        role.check_writable()
    assert "leader" not in e.value.metadata  # no leader known: the client tries the others


def test_single_node_is_always_primary():
    role = NodeRole.single("127.0.0.1:1")
    assert role.may_acknowledge()
    role.check_writable()


def test_writes_are_the_methods_with_client_ids_and_the_session_calls():
    assert is_mutating(POS, "Swipe") and is_mutating(POS, "SwipeStream")
    assert is_mutating(POS, "BulkRecharge") and is_mutating(POS, "Refund")
    assert not is_mutating(POS, "GetCard")
    assert is_mutating(ADMIN, "IssueCards") and is_mutating(ADMIN, "Login")
    assert not is_mutating(ADMIN, "ShowCard") and not is_mutating(ADMIN, "GetCardJournal")
    assert is_mutating(ADMIN, "ImportMembers") and is_mutating(ADMIN, "AckNotices")
    assert not is_mutating(ADMIN, "PullNotices") and not is_mutating(ADMIN, "ExportMembers")
    assert not is_mutating(REPORT, "Sales")


def test_ha_config_is_validated():
    cfg = HaConfig.from_dict({"etcd": ["127.0.0.1:2379"], "name": "a", "lease_ttl_s": 2})
    assert cfg.prefix == b"/mms/mms/" and cfg.margin_s == 0.5
    for bad in ({"etcd": [], "name": "a"}, {"etcd": ["x:1"], "name": ""},
                {"etcd": ["x:1"], "name": "a", "lease_ttl_s": 1},
                {"etcd": ["x:1"], "name": "a", "colour": "red"}):
        with pytest.raises(ValueError):
            HaConfig.from_dict(bad)
    assert parse_leader(b'{"name": "a", "address": "h:1", "epoch": 2}') == Leader("a", "h:1", 2)
    assert parse_leader(b"not json") is None
