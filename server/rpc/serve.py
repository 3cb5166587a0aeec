"""`mms serve`: open the engine, serve gRPC and metrics, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys

from core import Engine, EngineConfig, RulesConfig
from core.domain.chain import Chain, ChainConfig, new_token
from core.domain.members import MemberStore
from server.rpc.app import MmsServer
from server.rpc.auth import Registry
from server.rpc.config import ServeConfig
from server.rpc.metrics import Metrics

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


async def serve(data: str, cfg: ServeConfig, *, out=sys.stdout, started=None) -> int:
    metrics = Metrics()
    rules = RulesConfig.from_dict(cfg.rules) if cfg.rules is not None else None
    engine = Engine(data, config=EngineConfig(**cfg.engine), rules=rules, observer=metrics)
    try:
        chain_cfg = ChainConfig(**cfg.chain)
        chain_cfg.validate()
        chain = Chain(engine, chain_cfg)
        members = MemberStore(engine)
        registry = Registry.from_file(cfg.terminals_file) if cfg.terminals_file else Registry([])
        token = bootstrap_token(data, chain)
        srv = MmsServer(engine, registry, metrics, listen=cfg.listen or "127.0.0.1:7000",
                        metrics_listen=cfg.metrics, tls=cfg.tls,
                        inflight_ops_max=cfg.inflight_ops_max, chain=chain, members=members,
                        bootstrap_token=token)
        await srv.start()
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
        if not cfg.terminals_file:
            print("mms: no terminals file: the chain's terminal tokens only "
                  "(`mms terminal add --store-id S`)", file=out, flush=True)
        if token is not None:
            print(f"mms: the chain is empty; `mms chain bootstrap` takes the token in "
                  f"{os.path.join(data, BOOTSTRAP_TOKEN_FILE)}", file=out, flush=True)
        if started is not None:
            started(srv)
        await stop.wait()
        srv.mark_draining()  # /readyz is 503 before the line below says so
        print("mms: stopping: draining in-flight calls", file=out, flush=True)
        await srv.stop(cfg.shutdown_grace_s)
    finally:
        engine.close()
    print("mms: stopped; every accepted op is committed", file=out, flush=True)
    return 0
