"""`mms serve`: open the engine, serve gRPC and metrics, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile

from core import Engine, Feed, RulesConfig
from core.domain.chain import Chain, ChainConfig, new_token
from core.domain.members import MemberStore
from core.domain.members.validate import DB_MEMBERS as MEMBERS_DB
from server.rpc.app import MmsServer
from server.rpc.auth import Registry
from server.rpc.config import ServeConfig
from server.rpc.metrics import Metrics
from server.rpc.replication import (
    TOKEN_ENV,
    ReplicatedNode,
    ReplicationService,
    Standby,
    StandbyService,
)

log = logging.getLogger("mms.serve")

# The one-time secret that Bootstrap asks for, in the data directory: only someone who
# can read the server's files may create the chain's first admin.
BOOTSTRAP_TOKEN_FILE = "bootstrap.token"


def bootstrap_token(data: str, chain: Chain) -> str | None:
    """A fresh bootstrap token written 0600 to <data>/bootstrap.token while the chain
    has no HQ; once it has one, the file is removed and Bootstrap is refused."""
    path = os.path.join(data, BOOTSTRAP_TOKEN_FILE)
    if chain.bootstrapped():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return None
    token = new_token()
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(path + ".tmp", path)
    return token


def replication_token(repl: dict) -> str | None:
    """The token replication calls carry: MMS_REPLICATION_TOKEN, else the token file's."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    if repl.get("token_file"):
        with open(repl["token_file"]) as f:
            return f.read().strip() or None
    return None


def _open_engine(data: str, cfg: ServeConfig, rules, metrics):
    """(engine, standby or None, replication servicer or None, ReplicatedNode or None):
    with [ha] and a replication token, a node whose side leadership decides (it starts
    as an idle standby); a standby with --standby-of; a primary with a Feed when a
    replication token is configured."""
    repl = cfg.replication
    token = replication_token(repl)
    if cfg.ha is not None and token:
        if repl.get("standby_of") or "epoch" in repl:
            raise ValueError("[ha] with replication: leadership gives the epoch and names the "
                             "primary; drop replication.epoch / standby_of (--epoch, --standby-of)")
        node = ReplicatedNode(data, token=token, config=cfg.engine,
                              name=str(cfg.ha.get("name", "")), observer=metrics,
                              mode=repl.get("mode", "async"),
                              on_standby_lost=repl.get("on_standby_lost", "wait"),
                              timeout_s=float(repl.get("timeout_s", 2.0)),
                              lag_records_max=int(repl.get("campaign_lag_records_max", 0)),
                              rules=rules)
        return node.engine, node.standby, node.router, node
    if repl.get("standby_of"):
        if not token:
            raise ValueError("a standby needs the replication token (replication.token_file, "
                             f"--replication-token-file or {TOKEN_ENV})")
        standby = Standby(data, repl["standby_of"], token=token,
                          config=cfg.engine, observer=metrics)
        return standby.engine, standby, StandbyService(standby, token), None
    feed = None
    if token:
        feed = Feed(int(repl.get("epoch", 1)), mode=repl.get("mode", "async"),
                    on_standby_lost=repl.get("on_standby_lost", "wait"),
                    timeout_s=float(repl.get("timeout_s", 2.0)))
    engine = Engine(data, config=cfg.engine, rules=rules, observer=metrics,
                    feed=feed)
    return engine, None, (ReplicationService(engine, token) if feed is not None else None), None


def _follow_in_memory(standby: Standby, chain: Chain, members: MemberStore) -> None:
    """A standby's in-memory views follow the frames it applies: the chain's operators,
    sessions and terminals, and the members' search index."""
    chain_dbs = {n for n in standby.engine.store.db if n.startswith("chain_")}

    def applied(frame, names) -> None:
        if names & chain_dbs:
            chain._load()
        if MEMBERS_DB in names:
            members.apply_replicated(frame.puts(MEMBERS_DB))

    standby.replica.add_listener(applied)


def _position(node: ReplicatedNode) -> str:
    st = node.status()
    if st["role"] == "standby":
        return (f"applied frame {st['applied_frame']} seq {st['applied_seq']} epoch "
                f"{st['epoch']}")
    return f"epoch {st.get('epoch')} frame {st.get('last_frame')} seq {st.get('last_seq')}"


async def serve(data: str, cfg: ServeConfig, *, out=sys.stdout, started=None) -> int:
    metrics = Metrics()
    rules = RulesConfig.from_dict(cfg.rules) if cfg.rules is not None else None
    engine, standby, replication, node = _open_engine(data, cfg, rules, metrics)
    fronts = front_dir = None
    try:
        chain_cfg = ChainConfig(**cfg.chain)
        chain_cfg.validate()
        chain = Chain(engine, chain_cfg)
        members = MemberStore(engine)
        registry = Registry.from_file(cfg.terminals_file) if cfg.terminals_file else Registry([])
        token = bootstrap_token(data, chain) if standby is None else None
        if standby is not None:
            _follow_in_memory(standby, chain, members)
        role = leadership = None
        if cfg.ha is not None:
            from server.rpc.leader import HaConfig, Leadership, NodeAdapter
            from server.rpc.role import NodeRole

            ha = HaConfig.from_dict(cfg.ha)
            if not ha.advertise and (cfg.listen or "127.0.0.1:7000").rpartition(":")[0] in (
                    "", "0.0.0.0", "[::]", "::"):
                raise ValueError("[ha] advertise = HOST:PORT is required when the server "
                                 "listens on all interfaces: clients are sent there")
            role = NodeRole(ha.name, ha.advertise, margin_s=ha.margin_s)

            def on_event(kind: str, detail: str) -> None:
                # Tools and tests wait on these lines (server/tools/cluster.py).
                print(f"mms: leadership: {kind} {detail}", file=out, flush=True)

            leadership = Leadership(ha, role, NodeAdapter(engine, replica=node),
                                    on_event=on_event)
        if cfg.front_ends < 0:
            raise ValueError("front_ends is 0 (one process) or the number of front ends")
        # With front ends, this process's own gRPC server listens on a private unix
        # socket (what the front ends forward to); they hold the listen port.
        front_dir = (tempfile.mkdtemp(prefix="mms-front-", dir="/dev/shm" if os.path.isdir(
            "/dev/shm") else None) if cfg.front_ends else None)
        private = f"unix:{os.path.join(front_dir, 'writer.sock')}" if front_dir else None
        srv = MmsServer(engine, registry, metrics, listen=private or cfg.listen or "127.0.0.1:7000",
                        metrics_listen=cfg.metrics, tls=None if private else cfg.tls,
                        inflight_ops_max=cfg.inflight_ops_max, chain=chain, members=members,
                        bootstrap_token=token, role=role, replication=replication, node=node,
                        forwarded=private is not None)
        if node is not None:
            def on_engine(new) -> None:
                srv.swap_engine(new)
                if node.standby is not None and node.standby.engine is new:
                    _follow_in_memory(node.standby, chain, members)
                elif srv.admin is not None and not srv.admin.bootstrap_token:
                    # A new cluster's first leader: Bootstrap takes this node's token file.
                    srv.admin.bootstrap_token = bootstrap_token(data, chain)
                print(f"mms: replication: serving as {'standby' if node.standby else 'primary'} "
                      f"{_position(node)}", file=out, flush=True)

            node.on_engine = on_engine
        await srv.start()
        if private:
            from server.rpc.front import FrontEnds
            from server.rpc.ring import WriterRings

            fronts = FrontEnds(cfg.front_ends, WriterRings(srv.bridge, metrics, role),
                               listen=cfg.listen or "127.0.0.1:7000", writer=private,
                               workdir=front_dir, slots=srv.bridge.batch_ops_max,
                               pending_max=max(1, cfg.inflight_ops_max // cfg.front_ends),
                               grace_s=cfg.shutdown_grace_s, terminals_file=cfg.terminals_file,
                               tls=cfg.tls, out=out)
            srv.port = await fronts.start()  # the port the front ends share
        if leadership is not None:
            if not role.address:  # the listen host (checked above) and the bound port
                role.address = f"{(cfg.listen or '127.0.0.1:7000').rpartition(':')[0]}:{srv.port}"
            await leadership.start()
        st = engine.stats()
        # Tools and tests read this line too: how much journal this start replayed.
        print(f"mms: recovered {st['recovered_records']} journal records; checkpoint at seq "
              f"{st['checkpoint_seq']} of {st['last_seq']}", file=out, flush=True)
        # Everything made at start-up (the member index, protobuf descriptors, grpc)
        # lives as long as the server: out of the collector's sight, a full collection
        # walks only what requests create, so it no longer pauses the loop for long.
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Tools and tests read this line to learn the bound ports (port 0 = any free).
        host = (cfg.listen or "127.0.0.1:7000").rpartition(":")[0]
        mhost = (cfg.metrics or "").rpartition(":")[0]
        print(f"mms: serving grpc={host}:{srv.port} metrics="
              f"{f'http://{mhost}:{srv.metrics_port}/metrics' if srv.metrics_port else 'off'}",
              file=out, flush=True)
        if standby is not None:
            st = standby.status()
            print(f"mms: standby of {st['primary']}: applied frame {st['applied_frame']} "
                  f"seq {st['applied_seq']} epoch {st['epoch']}; writes answer NOT_LEADER",
                  file=out, flush=True)
        elif engine.feed is not None:
            print(f"mms: replication primary: epoch {engine.feed.epoch}, mode "
                  f"{engine.feed.mode}", file=out, flush=True)
        if not cfg.terminals_file:
            print("mms: no terminals file: the chain's terminal tokens only "
                  "(`mms terminal add --store-id S`)", file=out, flush=True)
        if token is not None:
            print(f"mms: the chain is empty; `mms chain bootstrap` takes the token in "
                  f"{os.path.join(data, BOOTSTRAP_TOKEN_FILE)}", file=out, flush=True)
        if started is not None:
            started(srv)
        await stop.wait()
        if fronts is not None:
            fronts.stopping()  # one that ends from now on is not started again
        srv.mark_draining()  # /readyz is 503 before the line below says so
        if cfg.drain_delay_s > 0:
            # The load balancer sees /readyz 503 and stops sending new calls while the
            # port still takes them; a second SIGTERM/SIGINT ends the wait at once.
            stop.clear()
            print(f"mms: stopping: /readyz is 503, still serving for drain_delay_s="
                  f"{cfg.drain_delay_s:g}", file=out, flush=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), cfg.drain_delay_s)
        print("mms: stopping: draining in-flight calls", file=out, flush=True)
        if fronts is not None:
            await fronts.stop()  # their calls answered, while this process serves the rings
        await srv.stop(cfg.shutdown_grace_s)
        if leadership is not None:
            await leadership.stop()  # resign: another node may win without waiting the TTL
    finally:
        if fronts is not None:
            await fronts.stop()
        if front_dir is not None:
            shutil.rmtree(front_dir, ignore_errors=True)
        if node is not None:
            node.close()
        elif standby is not None:
            standby.close()
        else:
            engine.close()
    print("mms: stopped; every accepted op is committed", file=out, flush=True)
    return 0
