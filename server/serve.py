"""`mms serve`: open the engine, serve gRPC and metrics, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from core import Engine, EngineConfig, RulesConfig
from server.app import MmsServer
from server.auth import Registry
from server.config import ServeConfig
from server.metrics import Metrics

log = logging.getLogger("mms.serve")


async def serve(data: str, cfg: ServeConfig, *, out=sys.stdout, started=None) -> int:
    metrics = Metrics()
    rules = RulesConfig.from_dict(cfg.rules) if cfg.rules is not None else None
    engine = Engine(data, config=EngineConfig(**cfg.engine), rules=rules, observer=metrics)
    try:
        if cfg.terminals_file is None:
            raise ValueError("a terminals file is required (--terminals or terminals_file)")
        registry = Registry.from_file(cfg.terminals_file)
        srv = MmsServer(engine, registry, metrics, listen=cfg.listen or "127.0.0.1:7000",
                        metrics_listen=cfg.metrics, tls=cfg.tls,
                        inflight_ops_max=cfg.inflight_ops_max)
        await srv.start()
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
        if started is not None:
            started(srv)
        await stop.wait()
        print("mms: stopping: draining in-flight calls", file=out, flush=True)
        await srv.stop(cfg.shutdown_grace_s)
    finally:
        engine.close()
    print("mms: stopped; every accepted op is committed", file=out, flush=True)
    return 0
