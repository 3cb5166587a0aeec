"""The chains the rpc tests set up over test_admin_rpc.Env: stores under a region, and
operators created and logged in."""

from __future__ import annotations

from common import cid
from test_admin_rpc import PW

from server.mms_pb import admin_pb2


def region_with_stores(e, stores, name: str = "North", store_name: str = "Store {}",
                       node_id: int = 0) -> int:
    """A region under the chain (node_id, or the next free id) with the given stores in it
    (store_name.format(store id)); its node id."""
    region = e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=cid(), kind=admin_pb2.NODE_KIND_REGION, parent_id=1, name=name,
        node_id=node_id)).node
    for sid in stores:
        e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
            client_id=cid(), kind=admin_pb2.NODE_KIND_STORE, parent_id=region.node_id,
            name=store_name.format(sid), node_id=sid))
    return region.node_id


def operators(e, rows, login: bool = True) -> None:
    """Root creates an operator of each (login, role, home store); each logs in."""
    for name, role, store in rows:
        e.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
            client_id=cid(), login=name, password=PW, role=role, home_store_id=store))
        if login:
            e.login(name)
