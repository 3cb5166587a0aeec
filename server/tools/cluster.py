"""`mms cluster demo`: a real three-member etcd and three mms nodes on loopback; the
primary is killed and another node takes over, live.

`EtcdCluster` starts etcd members (Debian's `etcd-server`, /usr/bin/etcd) in a temporary
directory on free loopback ports; the tests' harness (tests/etcd_harness.py) uses it too.

The demo's nodes replicate in sync mode: the standbys follow the primary, the new
leader has what the old one acknowledged (the demo reads a card issued before the kill
from it), and the killed node could rejoin as a standby. A new leader whose standby has
not yet followed it falls back to async after 2 s (`on_standby_lost = "async"`), as a
chain that prefers its tills answering would run it; with "wait" the demo's write after
the takeover waited for the other standby to resubscribe, which once took longer than
the write's 10 s deadline in CI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from server.tools.launch import ChildServer, TerminalSpec

ETCD_BINARY = "/usr/bin/etcd"
ETCD_START_TIMEOUT_S = 30.0
ETCD_STOP_TIMEOUT_S = 10.0
# How long a node may take to become leader, or a failover to complete, before the demo
# (or a test) gives up: several lease TTLs, far above the expected takeover time.
TAKEOVER_TIMEOUT_S = 30.0
CLUSTER_MEMBERS_MAX = 7
# The replication token of a demo or test cluster (loopback only).
REPLICATION_TOKEN = "mms-cluster-demo-token"


def etcd_binary() -> str | None:
    found = shutil.which("etcd")
    if os.path.exists(ETCD_BINARY):
        return ETCD_BINARY
    return found


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdCluster:
    """A real etcd cluster of `members` members on loopback, in workdir."""

    def __init__(self, workdir: str, members: int = 3) -> None:
        if not 1 <= members <= CLUSTER_MEMBERS_MAX:
            raise ValueError(f"1..{CLUSTER_MEMBERS_MAX} members")
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("etcd is not installed (Debian: apt-get install etcd-server)")
        self.binary = binary
        self.workdir = workdir
        ports = free_ports(2 * members)
        self.client_ports = ports[:members]
        self.peer_ports = ports[members:]
        self.names = [f"etcd{i}" for i in range(members)]
        self.procs: list[subprocess.Popen] = []
        self.logs: list[str] = []

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def start(self) -> EtcdCluster:
        initial = ",".join(f"{n}=http://127.0.0.1:{p}"
                           for n, p in zip(self.names, self.peer_ports, strict=True))
        token = f"mms-{os.getpid()}-{time.monotonic_ns()}"
        for name, cport, pport in zip(self.names, self.client_ports, self.peer_ports,
                                      strict=True):
            log_path = os.path.join(self.workdir, f"{name}.log")
            self.logs.append(log_path)
            with open(log_path, "w") as log:
                self.procs.append(subprocess.Popen(
                    [self.binary, "--name", name,
                     "--data-dir", os.path.join(self.workdir, name),
                     "--listen-client-urls", f"http://127.0.0.1:{cport}",
                     "--advertise-client-urls", f"http://127.0.0.1:{cport}",
                     "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                     "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                     "--initial-cluster", initial, "--initial-cluster-state", "new",
                     "--initial-cluster-token", token],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + ETCD_START_TIMEOUT_S
        for port, proc in zip(self.client_ports, self.procs, strict=True):
            while not self._healthy(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("etcd did not start:\n" + self.tail())
                time.sleep(0.05)
        return self

    @staticmethod
    def _healthy(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    def tail(self, lines: int = 20) -> str:
        out = []
        for path in self.logs:
            try:
                with open(path) as f:
                    out += [f"{os.path.basename(path)}: {x.rstrip()}"
                            for x in f.readlines()[-lines:]]
            except OSError:
                pass
        return "\n".join(out)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(ETCD_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Node:
    """One mms node of the cluster: `mms serve` with [ha] in its config."""

    def __init__(self, workdir: str, name: str, endpoints: list[str], terminals, *,
                 lease_ttl_s: int = 2, cluster: str = "demo", port: int | None = None,
                 replication: dict | None = None, engine: dict | None = None,
                 rules: dict | None = None) -> None:
        """replication: the node's [replication] table (mode, ...); with it the nodes
        share REPLICATION_TOKEN (a token file beside the config) and follow the leader."""
        self.name = name
        self.workdir, self.endpoints, self.terminals = workdir, list(endpoints), terminals
        self.lease_ttl_s, self.cluster = lease_ttl_s, cluster
        self.replication, self.engine, self.rules = replication, engine, rules
        self.port = port or free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        os.makedirs(workdir, exist_ok=True)
        extra = {"ha": {"etcd": endpoints, "name": name, "advertise": self.address,
                        "cluster": cluster, "lease_ttl_s": lease_ttl_s}}
        if replication is not None:
            token_file = os.path.join(workdir, "replication.token")
            with open(token_file, "w") as f:
                f.write(REPLICATION_TOKEN + "\n")
            extra["replication"] = {"token_file": "replication.token", **replication}
        self.child = ChildServer(workdir, terminals, listen=self.address, extra=extra,
                                 engine=engine, rules=rules)

    def start(self) -> Node:
        self.child.start()
        return self

    def lines(self, marker: str) -> list[str]:
        return [x for x in list(self.child.output) if marker in x]

    def is_leader(self) -> bool:
        return bool(self.lines("mms: leadership: leader"))

    def leader_epoch(self) -> int | None:
        got = self.lines("mms: leadership: leader")
        if not got:
            return None
        return int(got[-1].split("epoch=")[1].split()[0])

    def signal(self, sig: int) -> None:
        assert self.child.proc is not None
        self.child.proc.send_signal(sig)

    def kill(self) -> None:
        self.child.kill()

    def stop(self) -> None:
        if self.child.proc is not None and self.child.proc.poll() is None:
            self.child.proc.send_signal(signal.SIGCONT)
        self.child.terminate()


# The demo's [replication] table (see the module's docstring).
DEMO_REPLICATION = {"mode": "sync", "on_standby_lost": "async", "timeout_s": 2.0}


def bound_s(seconds: float) -> float:
    """A bound on a wait (never a measure of speed), stretched by how busy the host is
    now: seconds times the load average per core, when that is above 1. On a 2-core host
    at load 7 a takeover bound of 30 s becomes 105 s: the processes a test starts get a
    third of the CPU they would alone, and their events come that much later. The one
    place the tests' bounds on waits are scaled (wait_for applies it)."""
    try:
        per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        per_core = 1.0
    return seconds * max(1.0, per_core)


def wait_for(pred, timeout_s: float, what: str, step_s: float = 0.02):
    """Until pred() is truthy (its value is returned) or bound_s(timeout_s): the
    observable event a demo or test waits on, never a fixed sleep."""
    timeout_s = bound_s(timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(step_s)


def leader_of(nodes: list[Node], exclude: tuple[str, ...] = ()) -> Node | None:
    live = [n for n in nodes if n.name not in exclude and n.is_leader()]
    return live[-1] if live else None


def _demo_write(via: Node, admin_token: str, card_no: int) -> str:
    """Issue card card_no with a request sent to node via, following NOT_LEADER to the
    leader with the same client id: says where it applied and after how many redirects."""
    from core.records import new_client_id
    from server.client import LeaderFollower, auth
    from server.mms_pb import admin_pb2

    async def go() -> str:
        async with LeaderFollower([via.address]) as f:
            await f.call("admin", "IssueCards", admin_pb2.IssueCardsRequest(
                client_id=new_client_id(), card_nos=[card_no], member_ids=[card_no]),
                metadata=auth(admin_token), timeout=10)
            return f"applied on {f.target} after {f.redirects} NOT_LEADER redirect(s)"

    return asyncio.run(go())


def _demo_read(node: Node, pos_token: str, card_no: int) -> str:
    import grpc

    from server.client import CHANNEL_OPTIONS, auth
    from server.mms_pb import pos_pb2, pos_pb2_grpc

    with grpc.insecure_channel(node.address, options=CHANNEL_OPTIONS) as ch:
        try:
            r = pos_pb2_grpc.PosServiceStub(ch).GetCard(pos_pb2.GetCardRequest(card_no=card_no),
                                                        metadata=auth(pos_token), timeout=10)
        except grpc.RpcError as e:
            return f"not found ({e.code().name})"
    return "found" if r.card.card_no == card_no else "not found"


def main_cluster_demo(args) -> int:
    out = sys.stdout
    ttl = int(args.lease_ttl_s)
    with tempfile.TemporaryDirectory(prefix="mms-cluster-") as tmp:
        etcd = EtcdCluster(os.path.join(tmp, "etcd"), 3)
        os.makedirs(etcd.workdir)
        print(f"starting a three-member etcd: {', '.join(etcd.endpoints)}", file=out, flush=True)
        etcd.start()
        terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 5, "pos")]
        nodes = [Node(os.path.join(tmp, n), n, etcd.endpoints, terms, lease_ttl_s=ttl,
                      replication=DEMO_REPLICATION) for n in ("a", "b", "c")]
        try:
            for n in nodes:
                n.start()
                print(f"node {n.name} serving at {n.address}", file=out, flush=True)
            first = wait_for(lambda: leader_of(nodes), TAKEOVER_TIMEOUT_S, "a leader")
            print(f"node {first.name} leads at epoch {first.leader_epoch()}", file=out,
                  flush=True)
            others = [n for n in nodes if n is not first]
            print(f"IssueCards sent to standby {others[0].name}: "
                  f"{_demo_write(others[0], terms[0].token, 1)}", file=out, flush=True)
            t0 = time.monotonic()
            first.kill()
            print(f"killed node {first.name} (SIGKILL)", file=out, flush=True)
            second = wait_for(lambda: leader_of(others), TAKEOVER_TIMEOUT_S, "a new leader")
            took = time.monotonic() - t0
            print(f"node {second.name} leads at epoch {second.leader_epoch()}, "
                  f"{took:.2f} s after the kill (lease TTL {ttl} s)", file=out, flush=True)
            standby = next(n for n in others if n is not second)
            # The standby learns the new leader from etcd (its watch); then it names it.
            wait_for(lambda: standby.lines(f"leader={second.name}"), TAKEOVER_TIMEOUT_S,
                     "the other standby to follow the new leader")
            print(f"IssueCards sent to {standby.name}: "
                  f"{_demo_write(standby, terms[0].token, 2)}", file=out, flush=True)
            print(f"card 1, issued through node {first.name} before the kill: "
                  f"{_demo_read(second, terms[1].token, 1)} on node {second.name}, the new "
                  "leader (sync replication: what the old leader acknowledged, the new one "
                  "has)", file=out, flush=True)
        finally:
            for n in nodes:
                n.stop()
            etcd.stop()
    return 0
