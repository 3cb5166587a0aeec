"""A node that bootstraps from a primary that stopped answering (SIGSTOP, a partition)
still follows the next leader: rejoin_as_standby cancels the hot copy that hangs
instead of waiting for the node's lock behind it (leadership awaits that rejoin, so a
wait there was a standby that never followed the new leader, and a sync leader with
on_standby_lost = "wait" held its writes). The stopped primary is a real gRPC server
whose HotCopy enters and never answers until the test ends: the hang is the handler's,
not a guess about timing."""

from __future__ import annotations

import asyncio
import threading
from concurrent import futures

import grpc

from server.mms_pb import replication_pb2_grpc
from server.rpc.replication import ReplicatedNode, status_of
from server.tools.cluster import TAKEOVER_TIMEOUT_S, bound_s, wait_for
from tests.rpc.test_replication_rpc import TOKEN, _primary, _setup


class _Hanging(replication_pb2_grpc.ReplicationServiceServicer):
    """A primary whose HotCopy is entered and then answers nothing until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def HotCopy(self, request, context):  # noqa: N802 (gRPC's name)
        self.entered.set()
        self.release.wait()
        yield from ()


def test_a_bootstrap_hanging_on_a_stopped_primary_does_not_keep_the_node_from_the_next(tmp_path):
    hanging = _Hanging()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    replication_pb2_grpc.add_ReplicationServiceServicer_to_server(hanging, server)
    stopped = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    primary = _primary(tmp_path, mode="async")
    node = ReplicatedNode(str(tmp_path / "node"), token=TOKEN, name="n")
    try:
        asyncio.run(_setup(primary.target, primary.token("admin"), primary.token("pos")))
        # An empty store: following the stopped primary means a hot copy from it.
        node.rejoin_as_standby(stopped)
        assert hanging.entered.wait(bound_s(TAKEOVER_TIMEOUT_S)), "the bootstrap asked for a hot copy"
        wait_for(lambda: node._connecting, TAKEOVER_TIMEOUT_S, "the hot copy call known")
        rejoin = threading.Thread(target=node.rejoin_as_standby, args=(primary.target,))
        rejoin.start()
        rejoin.join(bound_s(TAKEOVER_TIMEOUT_S))
        assert not rejoin.is_alive(), "rejoin_as_standby waited behind the hanging hot copy"
        assert hanging.entered.is_set() and not hanging.release.is_set()
        target = status_of(primary.target, TOKEN)["frame"]
        wait_for(lambda: (st := node.standby) is not None and st.primary == primary.target
                 and st.replica.applied_frame >= target and not st.error,
                 TAKEOVER_TIMEOUT_S, "the node to follow the live primary")
    finally:
        hanging.release.set()
        node.close()
        server.stop(0)
        assert primary.terminate() == 0
