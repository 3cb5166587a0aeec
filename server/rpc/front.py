"""Several gRPC front-end processes on one port (`mms serve --front-ends N`): each has a
process, a GIL and an event loop of its own and binds the server's port with
SO_REUSEPORT, so the kernel spreads the callers' connections among them. A front end
serves plain unary Swipe and Recharge itself, with the same decoder and checks as the
one-process server (codec), and hands their ops to the one writer process over a
shared-memory ring (server/rpc/ring.py); every other call (a swipe with a basket, a
terminal the front end does not know, every other method) it forwards as bytes to the
writer's own gRPC server on a private unix socket, with its metadata and remaining
deadline, and hands back the answer, status and ErrorInfo included.

The rules stay where they are: a front end decodes first (MALFORMED_REQUEST), then
authenticates against the terminals file (a token it does not know goes to the writer,
which knows the chain's terminals too and answers UNAUTHENTICATED for a bad one), then
checks the request (single_op), its deadline and its share of inflight_ops_max
(RESOURCE_EXHAUSTED / INFLIGHT_LIMIT) before it writes the row. The writer writes a
result only once the commit is durable, and its one id index answers a retry with the
first result whichever front end it comes through. The writer restarts a front end that
dies; a front end whose writer is gone answers UNAVAILABLE (WRITER_GONE) and stops.

Run by the writer (FrontEnds) as `python -m server.rpc.front ...`; not a command of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time

import grpc

from core.records import OpType, Result
from server.rpc.auth import Registry, bearer_token
from server.rpc.codec import RAW_REQUEST_DECODERS, SingleRequest, single_op
from server.rpc.constants import MESSAGE_BYTES_MAX, SERVER_OPTIONS
from server.rpc.errors import RpcFailure
from server.rpc.guard import FRONT_PEER_KEY, MalformedRequest
from server.rpc.instrumentation import unexpected
from server.rpc.ring import (
    KIND_FAILURE,
    PORT,
    FrontSide,
    Ring,
    RingLink,
    WriterRings,
    parse_failure,
    set_nonblocking,
)

log = logging.getLogger("mms.front")

SWIPE = "/mms.v1.PosService/Swipe"
RECHARGE = "/mms.v1.PosService/Recharge"
# How long a front end may take to import, bind and say so; how long one may take to
# stop once asked (past it, it is killed); a front end that dies sooner than the restart
# delay after its start is restarted only once the delay has passed (one that cannot
# bind, say, does not spin).
FRONT_START_TIMEOUT_S = 60.0
FRONT_STOP_TIMEOUT_S = 30.0
FRONT_RESTART_DELAY_S = 1.0
# How often the writer adds the front ends' own refusals to its grpc_server_* metrics.
REFUSALS_FOLD_S = 1.0
# Metadata a front end does not pass on: HTTP/2's pseudo-headers and gRPC's own.
_HOP_KEYS = ("user-agent", "te", "content-type")
_RESULT_OK = int(Result.OK)


def server_options(reuseport: bool = False) -> list[tuple[str, int]]:
    """The options `mms serve` gives its grpc.aio server; with reuseport, SO_REUSEPORT on
    instead of off (the one option that differs)."""
    if not reuseport:
        return list(SERVER_OPTIONS)
    return [(k, 1) if k == "grpc.so_reuseport" else (k, v) for k, v in SERVER_OPTIONS]


CHANNEL_OPTIONS = (("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
                   ("grpc.max_send_message_length", MESSAGE_BYTES_MAX))


def forwarded_metadata(metadata, peer: str) -> tuple:
    """A call's metadata as the writer gets it: without HTTP/2's and gRPC's own keys,
    and with the caller's address in FRONT_PEER_KEY (one a caller sent is dropped)."""
    return (*((k, v) for k, v in metadata or ()
              if not k.startswith((":", "grpc-")) and k not in _HOP_KEYS
              and k != FRONT_PEER_KEY), (FRONT_PEER_KEY, peer or ""))


async def _abort(context, e: RpcFailure) -> None:
    await context.abort(e.code, e.message, e.trailing_metadata())


async def _failed(context, method: str, e: Exception) -> None:
    """End a call whose handling raised: an RpcFailure as itself, the writer's status of a
    forwarded call as the writer sent it, anything else INTERNAL (never grpc's bare
    UNKNOWN), logged once."""
    if isinstance(e, RpcFailure):
        await _abort(context, e)
    if isinstance(e, grpc.aio.AioRpcError):
        await context.abort(e.code(), e.details() or "", tuple(e.trailing_metadata() or ()))
    service, _, name = method.lstrip("/").rpartition("/")
    await _abort(context, unexpected(service, name, e))


class FrontHandler(grpc.GenericRpcHandler):
    """Every method of the port: Swipe and Recharge through the ring, the rest forwarded."""

    def __init__(self, side: FrontSide, registry: Registry, channel: grpc.aio.Channel) -> None:
        self.side = side
        self.registry = registry
        self.channel = channel
        self._handlers = {
            SWIPE: grpc.unary_unary_rpc_method_handler(self._single(SWIPE, OpType.SWIPE)),
            RECHARGE: grpc.unary_unary_rpc_method_handler(self._single(RECHARGE, OpType.RECHARGE)),
        }
        self._forwarders: dict[str, grpc.RpcMethodHandler] = {}

    def hot_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {name.rpartition("/")[2]: h for name, h in self._handlers.items()}

    def service(self, handler_call_details):
        name = handler_call_details.method
        h = self._handlers.get(name)
        if h is not None:
            return h
        h = self._forwarders.get(name)
        if h is None:
            h = grpc.stream_stream_rpc_method_handler(self._forward_stream(name))
            if len(self._forwarders) < 4096:  # the hosted methods, not callers' names
                self._forwarders[name] = h
        return h

    def _single(self, method: str, op_type: int):
        decode = RAW_REQUEST_DECODERS[method]
        type_name = "mms.v1.SwipeRequest" if op_type == OpType.SWIPE else "mms.v1.RechargeRequest"
        forward = self.channel.unary_unary(method)
        side, registry = self.side, self.registry

        async def behavior(raw: bytes, context):
            try:
                req = decode(raw)
            except Exception:
                side.refused(op_type, grpc.StatusCode.INVALID_ARGUMENT)
                await _abort(context, MalformedRequest(type_name))
            term = (registry.authenticate(bearer_token(context.invocation_metadata()))
                    if type(req) is SingleRequest else None)
            if term is None:
                # A basket, coupons, an offset, a PIN, or a token only the writer knows
                # (the chain's terminals) or nobody does: the writer decides.
                return await self._forward_unary(method, forward, raw, context)
            try:
                row = single_op(req, term, op_type, req.category, req.flags)
                fut = side.start_one(row, context)
            except RpcFailure as e:  # answered here: the writer never sees it
                side.refused(op_type, e.code)
                await _abort(context, e)
            try:
                kind, code, replayed, body = await fut
                if kind == KIND_FAILURE:
                    raise RpcFailure(*parse_failure(body))
                if code != _RESULT_OK:
                    raise RpcFailure.of_result(code, replayed=str(bool(replayed)).lower())
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as e:
                await _failed(context, method, e)
            return body  # SwipeResponse's or RechargeResponse's bytes, as the writer wrote them
        return behavior

    async def _forward_unary(self, method: str, call, raw: bytes, context):
        md = forwarded_metadata(context.invocation_metadata(), context.peer())
        try:
            return await call(raw, metadata=md, timeout=context.time_remaining())
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as e:
            await _failed(context, method, e)

    def _forward_stream(self, method: str):
        """Any method as a stream of bytes both ways: on the wire a unary call is a stream
        of one message each way, so one forwarder serves every kind of method."""
        call = self.channel.stream_stream(method)

        async def behavior(request_iterator, context):
            md = forwarded_metadata(context.invocation_metadata(), context.peer())
            rpc = call(request_iterator, metadata=md, timeout=context.time_remaining())
            try:
                async for reply in rpc:
                    yield reply
                trailing = await rpc.trailing_metadata()
                if trailing:
                    context.set_trailing_metadata(trailing)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as e:
                await _failed(context, method, e)
        return behavior


async def run_front(a) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    ring = Ring(a.ring, a.slots, create=False)
    set_nonblocking(a.to_writer, a.from_writer)
    side = FrontSide(ring, a.to_writer, a.from_writer, a.pending_max, on_writer_gone=stop.set)
    side.attach(loop)
    registry = Registry.from_file(a.terminals) if a.terminals else Registry([])
    channel = grpc.aio.insecure_channel(a.writer, options=list(CHANNEL_OPTIONS))
    server = grpc.aio.server(options=server_options(reuseport=True))
    handler = FrontHandler(side, registry, channel)
    server.add_generic_rpc_handlers((handler,))
    # The two hot methods registered too: grpc.aio then finds their handler without the
    # generic lookup (one request-call task each; with only two it costs the loop little,
    # unlike the one-process server's 70-odd: GuardedServer).
    server.add_registered_method_handlers("mms.v1.PosService", handler.hot_handlers())
    if a.tls_cert:
        from server.rpc.app import TlsConfig

        port = server.add_secure_port(a.listen, TlsConfig(a.tls_cert, a.tls_key,
                                                          a.tls_ca or None).credentials())
    else:
        port = server.add_insecure_port(a.listen)
    if port == 0:
        print(f"mms front end {a.index}: cannot listen on {a.listen}", file=sys.stderr,
              flush=True)
        return 1
    await server.start()
    # The writer stops its front ends (SIGTERM) once it stops, in order; a Ctrl-C meant
    # for the writer reaches the whole process group, and is the writer's to act on.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ring.header[PORT] = port
    os.write(a.to_writer, b"R")  # listening: the writer reads the port from the header
    await stop.wait()
    side.accepting = False
    # The writer gone: nothing more can be answered. Else the calls in the ring finish.
    await server.stop(0 if side.writer_gone else a.grace)
    await channel.close()
    return 3 if side.writer_gone else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m server.rpc.front",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--writer", required=True, help="the writer's private gRPC address")
    ap.add_argument("--ring", required=True)
    ap.add_argument("--slots", type=int, required=True)
    ap.add_argument("--to-writer", type=int, required=True)
    ap.add_argument("--from-writer", type=int, required=True)
    ap.add_argument("--pending-max", type=int, required=True)
    ap.add_argument("--grace", type=float, default=10.0)
    ap.add_argument("--terminals", default="")
    ap.add_argument("--tls-cert", default="")
    ap.add_argument("--tls-key", default="")
    ap.add_argument("--tls-ca", default="")
    a = ap.parse_args(argv)
    return asyncio.run(run_front(a))


# --- the writer's side: starting, restarting and stopping the front ends ----------------

class FrontEnds:
    """The writer's N front-end processes: started one after another (the first binds
    the listen address, port 0 included; the others its port), each with a ring of
    `slots` rows and pending_max ops; one that dies is started again on the same port."""

    def __init__(self, n: int, rings: WriterRings, *, listen: str, writer: str, workdir: str,
                 slots: int, pending_max: int, grace_s: float, terminals_file: str | None,
                 tls=None, out=sys.stdout) -> None:
        if n < 1:
            raise ValueError("front_ends is 0 (one process) or at least 1")
        self.n = n
        self.rings = rings
        self.listen = listen
        self.writer = writer
        self.workdir = workdir
        self.slots = slots
        self.pending_max = pending_max
        self.grace_s = grace_s
        self.terminals_file = terminals_file
        self.tls = tls
        self.out = out
        self.port = 0
        self.procs: list[subprocess.Popen | None] = [None] * n
        self.restarts = 0
        self._started_at = [0.0] * n
        self._generation = 0
        self._stopping = False
        self._tasks: set[asyncio.Task] = set()
        self._folding: asyncio.Task | None = None

    def _address(self) -> str:
        host = self.listen.rpartition(":")[0]
        return f"{host}:{self.port}" if self.port else self.listen

    async def start(self) -> int:
        for k in range(self.n):
            await self._spawn(k)
        self._folding = asyncio.get_running_loop().create_task(
            self.rings.folding(REFUSALS_FOLD_S))
        return self.port

    async def _spawn(self, k: int) -> None:
        """Front end k with a fresh ring and pipes; returns once it listens."""
        loop = asyncio.get_running_loop()
        self._generation += 1
        path = os.path.join(self.workdir, f"ring-{k}-{self._generation}")
        ring = Ring(path, self.slots, create=True)
        from_front, front_w = os.pipe()
        front_r, to_front = os.pipe()
        set_nonblocking(from_front, to_front)
        args = [sys.executable, "-m", "server.rpc.front", "--index", str(k),
                "--listen", self._address(), "--writer", self.writer, "--ring", path,
                "--slots", str(self.slots), "--to-writer", str(front_w),
                "--from-writer", str(front_r), "--pending-max", str(self.pending_max),
                "--grace", str(self.grace_s)]
        if self.terminals_file:
            args += ["--terminals", self.terminals_file]
        if self.tls is not None:
            args += ["--tls-cert", self.tls.cert_file, "--tls-key", self.tls.key_file,
                     "--tls-ca", self.tls.client_ca_file or ""]
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
        proc = None
        try:
            proc = subprocess.Popen(args, pass_fds=(front_w, front_r), env=env)
        finally:
            os.close(front_w)
            os.close(front_r)
            if proc is None:
                os.close(from_front)
                os.close(to_front)
                ring.close()
        link = RingLink(ring, from_front, to_front, on_gone=lambda: self._gone(k, proc))
        self.rings.add(link, loop)
        self.procs[k] = proc
        self._started_at[k] = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(link.ready), FRONT_START_TIMEOUT_S)
            port = int(ring.header[PORT])
            if self.port and port != self.port:
                raise OSError(f"it listened on {port}, not on {self.port}")
        except (asyncio.TimeoutError, OSError) as e:
            self.procs[k] = None  # its end is this failure: no restart of its own
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise OSError(f"front end {k} did not start listening on {self._address()}: "
                          f"{e or 'timed out'}") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # both processes hold it mapped (or it failed): not needed
        self.port = port
        print(f"mms: front end {k} pid {proc.pid} serving grpc={self._address()}",
              file=self.out, flush=True)

    def _gone(self, k: int, proc: subprocess.Popen) -> None:
        """Front end k's pipe ended: reap it, and unless stopping, start it again."""
        task = asyncio.get_running_loop().create_task(self._restart(k, proc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart(self, k: int, proc: subprocess.Popen) -> None:
        rc = await asyncio.to_thread(proc.wait)
        if self._stopping or self.procs[k] is not proc:
            return
        print(f"mms: front end {k} pid {proc.pid} exited ({rc}); starting it again",
              file=self.out, flush=True)
        wait = self._started_at[k] + FRONT_RESTART_DELAY_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        while not self._stopping:
            try:
                await self._spawn(k)
                self.restarts += 1
                return
            except OSError as e:
                log.error("front end %d: %s; trying again in %g s", k, e, FRONT_RESTART_DELAY_S)
                await asyncio.sleep(FRONT_RESTART_DELAY_S)

    def stopping(self) -> None:
        """The writer is stopping: a front end that ends now is not started again."""
        self._stopping = True

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None]

    async def stop(self) -> None:
        """SIGTERM every front end and wait for it: each stops taking calls and answers
        those in its ring (the writer still serves the rings meanwhile)."""
        self.stopping()
        for t in [*self._tasks, *([self._folding] if self._folding is not None else [])]:
            t.cancel()
        procs = [p for p in self.procs if p is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

        def wait(p: subprocess.Popen) -> None:
            try:
                p.wait(self.grace_s + FRONT_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        await asyncio.gather(*(asyncio.to_thread(wait, p) for p in procs))
        self.rings.fold()


# The checkout the front ends import from: server/rpc/front.py is three levels below it.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


if __name__ == "__main__":
    sys.exit(main())
