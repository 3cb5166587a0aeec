"""A real three-member etcd and mms nodes with [ha] on loopback, for the leadership and
failover tests. etcd is Debian's `etcd-server` (/usr/bin/etcd; .ci/run installs it).

The etcd launcher and the node wrapper are server/tools/cluster.py's (`mms cluster demo`
uses the same ones). Every wait here is on an observable event (a node's log line, a
call's answer) with a bound, never a fixed sleep.

Until replication (issue 14 items 1-2) is merged, each node serves its own data
directory; `seed_nodes` gives every node an identical copy of one seeded directory so a
write that lands on whichever node leads finds the same cards there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable, Iterator

import grpc
import pytest

from server.client import CHANNEL_OPTIONS, auth, error_info
from server.mms_pb import pos_pb2, pos_pb2_grpc
from server.rpc.leader import DUMP_END, DUMP_TASKS_SIGNAL, DUMP_THREADS_SIGNAL
from server.tools.cluster import (
    TAKEOVER_TIMEOUT_S,
    EtcdCluster,
    Node,
    etcd_binary,
    leader_of,
    wait_for,
)
from server.tools.launch import ChildServer, TerminalSpec, issue_and_fund
from tests.engine.test_replication import dump_dir

LEASE_TTL_S = 2
TERMINALS = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 5, "pos")]
CARDS = list(range(9_000, 9_016))
FUND_FEN = 100_000

__all__ = ["CARDS", "FUND_FEN", "LEASE_TTL_S", "TAKEOVER_TIMEOUT_S", "TERMINALS", "balance",
           "dumps_at_one_frame", "etcd_cluster", "leader_of", "not_leader_of", "nodes_on",
           "restart", "resume_fenced", "seeded_data", "seed_nodes", "show_tails", "start_nodes", "wait_for"]


def require_etcd() -> None:
    if etcd_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("etcd is missing: .ci/run installs etcd-server")
        pytest.skip("etcd is not installed (apt-get install etcd-server)")


def etcd_cluster(workdir: str, members: int = 3) -> EtcdCluster:
    require_etcd()
    os.makedirs(workdir, exist_ok=True)
    return EtcdCluster(workdir, members).start()


def seeded_data(workdir: str) -> str:
    """One data directory with CARDS issued and funded (by a server without [ha]): a
    single server's store, as a chain has it before it becomes a cluster."""
    os.makedirs(workdir, exist_ok=True)
    child = ChildServer(workdir, TERMINALS).start()
    try:
        async def go():
            from server.client import aio_channel, stubs

            async with aio_channel(child.target) as ch:
                p, a = stubs(ch)
                await issue_and_fund(a, p, child.token("admin"), child.token("pos"), CARDS,
                                     FUND_FEN)
        asyncio.run(go())
    finally:
        assert child.terminate() == 0, "\n".join(child.output)
    return child.data


def seed_nodes(workdir: str, names: list[str]) -> dict[str, str]:
    """Each name's node directory, holding a copy of one seeded data directory."""
    data = seeded_data(os.path.join(workdir, "seed"))
    out = {}
    for name in names:
        d = os.path.join(workdir, name)
        os.makedirs(d, exist_ok=True)
        shutil.copytree(data, os.path.join(d, "data"))
        out[name] = d
    return out


# On a failure: this many of each node's last lines, then its threads' and tasks' stacks.
TAIL_LINES = 200
# ... and this many of its own lines ('mms: ...', ERROR): a standby retrying its primary
# every 0.5 s fills 200 lines in 100 s, and the leadership lines go with them.
SAID_LINES = 100
# How long a node gets to write its stacks (a bound; a node whose loop is stuck never
# writes the task dump's end line, its threads' stacks come from the signal handler).
DUMP_WAIT_S = 10.0


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("T", "t")
    except OSError:
        return False


def _status_now(node: Node) -> str:
    """The node's replication Status (role, epoch, frame, ...), or why there is none."""
    from server.rpc.replication import status_of
    from server.tools.cluster import REPLICATION_TOKEN

    proc = node.child.proc
    if proc is None or proc.poll() is not None or _stopped(proc.pid):
        return "(not running)"
    try:
        return repr(status_of(node.address, REPLICATION_TOKEN, timeout_s=5))
    except grpc.RpcError as e:
        return f"(no answer: {e.code().name})"


def dump_stacks(node: Node) -> list[str]:
    """The live node's threads' stacks and asyncio tasks (SIGUSR2, ending with DUMP_END;
    the threads alone by SIGUSR1 when its loop does not answer), as it wrote them to its
    log (server/rpc/leader.py's install_stack_dumps); [] for a node that is dead or
    stopped (SIGSTOP: it cannot answer)."""
    import time

    proc = node.child.proc
    if proc is None or proc.poll() is not None or _stopped(proc.pid):
        return []
    start = len(node.child.output)
    proc.send_signal(DUMP_TASKS_SIGNAL)
    deadline = time.monotonic() + DUMP_WAIT_S
    while time.monotonic() < deadline and not any(
            DUMP_END in x for x in node.child.output[start:]):
        time.sleep(0.05)
    if not any(DUMP_END in x for x in node.child.output[start:]):
        # Its event loop does not run: the threads' stacks, from the signal handler.
        proc.send_signal(DUMP_THREADS_SIGNAL)
        seen, deadline = -1, time.monotonic() + DUMP_WAIT_S
        while time.monotonic() < deadline and len(node.child.output) != seen:
            seen = len(node.child.output)
            time.sleep(0.5)
    return list(node.child.output[start:])


def show_tails(nodes: list[Node], lines: int = TAIL_LINES, stacks: bool = True) -> None:
    """What each node said last and, if it is alive, where each of its threads and tasks
    waits now (pytest shows it with the failure)."""
    dumps = {n.name: dump_stacks(n) if stacks else [] for n in nodes}
    for n in nodes:
        out = list(n.child.output)
        dump = dumps[n.name]
        path = keep_output(n)
        said = [x for x in out[:len(out) - len(dump)] if x.startswith("mms: ") or " ERROR " in x]
        print(f"--- node {n.name} ({n.address}): its whole output in {path}; its last "
              f"{SAID_LINES} 'mms:' and ERROR lines:")
        print("\n".join(said[-SAID_LINES:]))
        print(f"--- node {n.name} ({n.address}): its replication Status now: {_status_now(n)}")
        print(f"--- node {n.name} ({n.address}), its last {lines} lines:")
        print("\n".join(out[:len(out) - len(dump)][-lines:]))
        if dump:
            print(f"--- node {n.name}: its threads and tasks now:")
            print("\n".join(dump))


@contextlib.contextmanager
def nodes_on(etcd: EtcdCluster) -> Iterator[list[Node]]:
    """The list a test puts the nodes it starts on etcd into: on a failure each node's
    last lines are shown; at the end every node and etcd are stopped."""
    nodes: list[Node] = []
    try:
        yield nodes
    except BaseException:
        show_tails(nodes)
        raise
    finally:
        for n in nodes:
            n.stop()
        etcd.stop()


def dumps_at_one_frame(nodes: list[Node], same_frame: Callable[[], int | None]) -> dict:
    """Each node's databases (name -> dump), taken while same_frame() (the frame every
    node is at, None while they differ) says one frame before and after: the dumps are
    of one state. Waits for it up to TAKEOVER_TIMEOUT_S."""
    def dumps():
        before = same_frame()
        if before is None:
            return None
        got = {n.name: dump_dir(n.child.data) for n in nodes}
        return got if same_frame() == before else None

    return wait_for(dumps, TAKEOVER_TIMEOUT_S, "every node at the leader's frame", step_s=0.05)


def start_nodes(dirs: dict[str, str], etcd: EtcdCluster, cluster: str) -> list[Node]:
    nodes = []
    try:
        for name, d in dirs.items():
            nodes.append(Node(d, name, etcd.endpoints, TERMINALS, lease_ttl_s=LEASE_TTL_S,
                              cluster=cluster).start())
    except BaseException:
        for n in nodes:
            n.stop()
        raise
    return nodes


def keep_output(node: Node) -> str:
    """Write the node's whole output so far to its directory (a file per process, the
    killed ones' kept for a failure's post-mortem); its path."""
    pid = node.child.proc.pid if node.child.proc is not None else 0
    path = os.path.join(node.workdir, f"node-output-{pid}.txt")
    with open(path, "w") as f:
        f.write("\n".join(list(node.child.output)) + "\n")
    return path


def restart(node: Node) -> Node:
    """The same node (name, port, data directory, config) started again after it died
    (what the dead process wrote is kept beside it, keep_output)."""
    keep_output(node)
    return Node(node.workdir, node.name, node.endpoints, node.terminals,
                lease_ttl_s=node.lease_ttl_s, cluster=node.cluster, port=node.port,
                replication=node.replication, engine=node.engine, rules=node.rules).start()


def resume_fenced(old: Node, new: Node) -> tuple[float, list[str]]:
    """SIGCONT a primary stopped past its lease; wait until it has fenced itself and
    follows new. Returns when it was resumed (time.monotonic) and its fencing lines."""
    import signal
    import time

    t_cont = time.monotonic()
    old.signal(signal.SIGCONT)
    fenced = wait_for(lambda: old.lines("mms: leadership: fenced"), TAKEOVER_TIMEOUT_S,
                      "the old primary to fence itself")
    wait_for(lambda: old.lines(f"leader={new.name}"), TAKEOVER_TIMEOUT_S,
             "the old primary to follow the new leader")
    return t_cont, fenced


def not_leader_of(target: str, card_no: int, client_id: bytes) -> tuple[grpc.StatusCode, str,
                                                                           dict[str, str]]:
    """A Recharge sent to target: its status code, ErrorInfo reason and metadata."""
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as ch:
        stub = pos_pb2_grpc.PosServiceStub(ch)
        try:
            stub.Recharge(pos_pb2.RechargeRequest(client_id=client_id, card_no=card_no,
                                                  amount_fen=100),
                          metadata=auth(TERMINALS[1].token), timeout=10)
        except grpc.RpcError as e:
            reason, meta = error_info(e)
            return e.code(), reason, meta
    return grpc.StatusCode.OK, "", {}


def balance(target: str, card_no: int) -> int:
    """A card's balance as the node at target serves it (any node serves reads)."""
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as ch:
        stub = pos_pb2_grpc.PosServiceStub(ch)
        r = stub.GetCard(pos_pb2.GetCardRequest(card_no=card_no),
                         metadata=auth(TERMINALS[1].token), timeout=10)
        return int(r.card.principal_fen) + int(r.card.bonus_fen)
