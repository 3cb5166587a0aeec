"""The ceiling of `mms bench grpc --unary --ceiling`: a grpc.aio server on mms's own stubs
whose Swipe answers OK with an empty SwipeResponse at once (no credentials, no engine, no
metrics), with the same server options as `mms serve` (server/rpc/app.py). What a unary
Swipe costs a Python gRPC server that does nothing: the rate mms is measured against.

Run as a child process (`python -m server.tools.noop_server --listen 127.0.0.1:0`) so it
has a process and an event loop of its own, as `mms serve` has; it prints
`mms-noop: serving grpc=HOST:PORT` once it listens and stops on SIGTERM or SIGINT.

`--reuseport` sets SO_REUSEPORT on its port, so that several of them serve one port, one
process and one event loop each, the kernel spreading the connections among them
(NoopGroup, `mms bench grpc --ceiling-processes N`): the ceiling of several front-end
processes on one port (docs/benchmarks.md, the model for several front ends).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import threading

import grpc

from server.mms_pb import pos_pb2, pos_pb2_grpc
from server.rpc.front import server_options

SERVING = re.compile(r"^mms-noop: serving grpc=(\S+)")
# How long a child may take to listen, and to stop once asked.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# The most no-op servers a group runs (`mms bench grpc --ceiling-processes`): a process
# and an event loop each, so more than a few per core only crowd the cores they measure.
NOOP_PROCESSES_MAX = 32


class NoopPos(pos_pb2_grpc.PosServiceServicer):
    async def Swipe(self, request, context):
        return pos_pb2.SwipeResponse()


async def serve(listen: str, reuseport: bool = False) -> None:
    server = grpc.aio.server(options=server_options(reuseport))
    pos_pb2_grpc.add_PosServiceServicer_to_server(NoopPos(), server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise SystemExit(f"mms-noop: cannot listen on {listen}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = listen.rsplit(":", 1)[0]
    print(f"mms-noop: serving grpc={host}:{port}", flush=True)
    await stop.wait()
    await server.stop(None)


class NoopChild:
    """The no-op server in a child process: `with NoopChild() as c: ... c.target`."""

    def __init__(self, listen: str = "127.0.0.1:0", reuseport: bool = False) -> None:
        self.listen = listen
        self.reuseport = reuseport
        self.target = ""
        self.proc: subprocess.Popen | None = None
        self._pump: threading.Thread | None = None

    def __enter__(self) -> NoopChild:
        from server.tools.launch import ROOT  # the tree the child imports from

        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "server.tools.noop_server",
                                      "--listen", self.listen,
                                      *(["--reuseport"] if self.reuseport else [])],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, cwd=ROOT, env=env)
        ready = threading.Event()
        lines: list[str] = []

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.append(line.rstrip("\n"))
                m = SERVING.match(line)
                if m:
                    self.target = m.group(1)
                    ready.set()
            ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not ready.wait(START_TIMEOUT_S) or not self.target:
            self.__exit__(None, None, None)
            raise RuntimeError("the no-op server did not start: " + "\n".join(lines[-20:]))
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._pump is not None:
            self._pump.join(STOP_TIMEOUT_S)  # it ends at the pipe's end, the child's exit
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


class NoopGroup:
    """processes no-op servers on one port (SO_REUSEPORT), each a NoopChild: the first
    picks the port, the others bind to it. One process is a lone NoopChild as before
    (SO_REUSEPORT off)."""

    def __init__(self, processes: int = 1, listen: str = "127.0.0.1:0") -> None:
        if not 1 <= processes <= NOOP_PROCESSES_MAX:
            raise ValueError(f"a group holds 1 to {NOOP_PROCESSES_MAX} no-op servers")
        self.processes = processes
        self.listen = listen
        self.children: list[NoopChild] = []
        self.target = ""

    def __enter__(self) -> NoopGroup:
        many = self.processes > 1
        try:
            first = NoopChild(self.listen, reuseport=many).__enter__()
            self.children.append(first)
            self.target = first.target
            for _ in range(self.processes - 1):
                child = NoopChild(self.target, reuseport=True).__enter__()
                self.children.append(child)
                if child.target != self.target:
                    raise RuntimeError(f"a no-op server listened on {child.target}, "
                                       f"not on the group's {self.target}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for child in reversed(self.children):
            child.__exit__(None, None, None)
        self.children = []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m server.tools.noop_server",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--reuseport", action="store_true",
                    help="SO_REUSEPORT: share the port with other no-op servers")
    a = ap.parse_args(argv)
    asyncio.run(serve(a.listen, a.reuseport))
    return 0


if __name__ == "__main__":
    sys.exit(main())
