"""The replication router (server/rpc/replication.py's ReplicationRouter), over real gRPC
on loopback: a subscription served by a side the node has since replaced ends, so that
its standby subscribes again, to the new side."""

from __future__ import annotations

import asyncio
import queue
import threading

import grpc

from server.mms_pb import replication_pb2, replication_pb2_grpc
from server.rpc.replication import ReplicationRouter, _reason
from server.tools.cluster import bound_s

WAIT_S = 20.0  # a bound on each wait, far above what it takes


class Side:
    """A side whose Subscribe accepts (one chunk) and then sends nothing, as a primary's
    ReplicationService does over the feed of an engine that was closed meanwhile."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.accepted = threading.Event()

    async def Subscribe(self, request_iterator, context):  # noqa: N802
        self.accepted.set()
        yield replication_pb2.FrameChunk(primary_seq=7)
        await asyncio.Event().wait()  # no frame ever comes


def _serve(router: ReplicationRouter, ready: threading.Event, port: list, stop: threading.Event):
    async def main():
        server = grpc.aio.server()
        replication_pb2_grpc.add_ReplicationServiceServicer_to_server(router, server)
        port.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await server.stop(0)
    asyncio.run(main())


def test_a_subscription_of_a_replaced_side_ends_and_the_next_one_reaches_the_new_side():
    old, new = Side("old"), Side("new")
    router = ReplicationRouter(old)
    ready, stop, port = threading.Event(), threading.Event(), []
    server = threading.Thread(target=_serve, args=(router, ready, port, stop))
    server.start()
    try:
        assert ready.wait(bound_s(WAIT_S))
        with grpc.insecure_channel(f"127.0.0.1:{port[0]}") as ch:
            stub = replication_pb2_grpc.ReplicationServiceStub(ch)
            requests: queue.Queue = queue.Queue()

            def reqs():
                yield replication_pb2.SubscribeRequest(after_frame=1, epoch=1, standby="s")
                while (item := requests.get()) is not None:
                    yield item

            call = stub.Subscribe(reqs(), timeout=bound_s(WAIT_S))
            assert next(call).primary_seq == 7 and old.accepted.is_set()
            router.target = new  # the node changed engine (from another thread)
            try:
                next(call)
                raise AssertionError("the old side's subscription sent another chunk")
            except grpc.RpcError as e:
                # Ended by the router, long before the call's own deadline.
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                assert _reason(e) == "ROLE_CHANGED", e
            finally:
                requests.put(None)
            assert not new.accepted.is_set()
            again = stub.Subscribe(iter([replication_pb2.SubscribeRequest(after_frame=1)]),
                                   timeout=bound_s(WAIT_S))
            assert next(again).primary_seq == 7 and new.accepted.is_set()
            again.cancel()
    finally:
        stop.set()
        server.join(bound_s(WAIT_S))
