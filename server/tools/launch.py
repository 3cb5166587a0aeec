"""Start `mms serve` as a child process on loopback, for the demo, the benchmark and
tests, and set up a chain on it through the admin API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from core.records import new_client_id, new_client_ids
from server.rpc.auth import Terminal, new_token, save_terminals, token_hash

# The checkout: server/tools/launch.py is three levels below it.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# How long a child server may take to open its engine and bind.
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0
_SERVING = re.compile(r"^mms: serving grpc=(\S+) metrics=(\S+)")


@contextmanager
def serving_in_thread(engine, *, chain, members, bootstrap_token: str,
                      timeout_s: float = START_TIMEOUT_SECONDS):
    """An in-process MmsServer over `engine` on an event loop of its own thread, with no
    terminals and no metrics listener; yields (loopback target, server) and stops it (and the
    loop) on the way out. The engine stays the caller's to close."""
    import asyncio

    from server.rpc.app import MmsServer
    from server.rpc.auth import Registry
    from server.rpc.metrics import Metrics

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        srv = MmsServer(engine, Registry([]), Metrics(), chain=chain, members=members,
                        bootstrap_token=bootstrap_token, metrics_listen=None)
        asyncio.run_coroutine_threadsafe(srv.start(), loop).result(timeout_s)
        try:
            yield f"127.0.0.1:{srv.port}", srv
        finally:
            asyncio.run_coroutine_threadsafe(srv.stop(1.0), loop).result(timeout_s)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@dataclass
class TerminalSpec:
    terminal_id: int
    store_id: int
    role: str = "pos"
    name: str = ""
    token: str = field(default_factory=new_token)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def write_config(path: str, *, terminals_file: str, engine: dict | None = None,
                 rules: dict | None = None, extra: dict | None = None,
                 tls: dict | None = None) -> None:
    lines = [f"terminals_file = {_toml_value(os.path.basename(terminals_file))}"]
    for k, v in (extra or {}).items():
        lines.append(f"{k} = {_toml_value(v)}")
    for table, body in (("engine", engine), ("rules", rules), ("tls", tls)):
        if body:
            lines.append(f"\n[{table}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class ChildServer:
    """`python -m server.cli serve` in a child process."""

    def __init__(self, workdir: str, terminals: list[TerminalSpec], *, data: str | None = None,
                 engine: dict | None = None, rules: dict | None = None,
                 listen: str = "127.0.0.1:0", metrics: str = "127.0.0.1:0",
                 extra: dict | None = None, tls: dict | None = None) -> None:
        self.workdir = workdir
        self.data = data or os.path.join(workdir, "data")
        self.terminals = terminals
        self.terminals_file = os.path.join(workdir, "terminals.json")
        self.config_file = os.path.join(workdir, "mms.toml")
        save_terminals(self.terminals_file, [
            Terminal(t.terminal_id, t.store_id, token_hash(t.token), t.role, t.name)
            for t in terminals])
        write_config(self.config_file, terminals_file=self.terminals_file, engine=engine,
                     rules=rules, extra=extra, tls=tls)
        self.listen, self.metrics = listen, metrics
        self.proc: subprocess.Popen | None = None
        self.target = ""
        self.metrics_url = ""
        self.output: list[str] = []
        self._pump: threading.Thread | None = None

    def start(self) -> ChildServer:
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--data", self.data,
             "--config", self.config_file, "--listen", self.listen, "--metrics", self.metrics],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.rstrip("\n"))
                m = _SERVING.match(line)
                if m:
                    self.target, self.metrics_url = m.group(1), m.group(2)
                    ready.set()
            ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not ready.wait(START_TIMEOUT_SECONDS) or not self.target:
            self.kill()
            raise RuntimeError("the server did not start:\n" + "\n".join(self.output[-30:]))
        return self

    def token(self, role: str = "pos") -> str:
        return next(t.token for t in self.terminals if t.role == role)

    def terminate(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._close_pipe()
        return rc

    def _close_pipe(self) -> None:
        if self._pump is not None:
            self._pump.join(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipe()

    def __enter__(self) -> ChildServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.terminate()


async def issue_and_fund(admin, pos, admin_token: str, pos_token: str, card_nos: list[int],
                         fund_fen: int | list[int], *, chunk: int = 4096) -> None:
    """Issue cards (one admin op per chunk) and recharge them through BulkRecharge."""
    from server.client import auth
    from server.mms_pb import admin_pb2, pos_pb2

    for lo in range(0, len(card_nos), chunk):
        part = card_nos[lo:lo + chunk]
        await admin.IssueCards(admin_pb2.IssueCardsRequest(
            client_id=new_client_id(), card_nos=part, member_ids=part), metadata=auth(admin_token))
    amounts = fund_fen if isinstance(fund_fen, list) else [fund_fen] * len(card_nos)
    funded = [(no, a) for no, a in zip(card_nos, amounts, strict=True) if a > 0]

    async def chunks():
        for lo in range(0, len(funded), chunk):
            part = funded[lo:lo + chunk]
            yield pos_pb2.BulkRechargeRequest(
                client_ids=new_client_ids(len(part)), card_nos=[p[0] for p in part],
                amount_fen=[p[1] for p in part], line_numbers=list(range(lo, lo + len(part))))

    if funded:
        summary = await pos.BulkRecharge(chunks(), metadata=auth(pos_token))
        if summary.rejected:
            raise RuntimeError(f"{summary.rejected} funding recharges were rejected, e.g. "
                               f"{list(summary.rejected_rows)[:3]}")
