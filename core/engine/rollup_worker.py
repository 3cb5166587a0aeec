"""The rollup worker: a process of its own that computes the rollup tailer's flushes
(core.engine.rollups.compute_flush), so their numpy and _tally work does not hold the
server's GIL (docs/internals/reports.md, "The worker process").

The tailer (Rollups, in the engine's process) starts it as `python -c "from
core.engine.rollup_worker import main; main()"` (subprocess: an exec, never a fork of
the gRPC process) and
talks to it over two pipes, one message at a time:

    tailer -> worker   FLUSH (the seq the rollups cover, the most records to sum)
    worker -> tailer   RESULT (the flush's puts and new cards) or EMPTY or ERROR
    tailer -> worker   ACK (committed or not), after the tailer's own write transaction
    tailer -> worker   STOP (or the pipe's end)

The worker opens the same LMDB environment read-only and keeps the tailer's state (the
card -> store-of-issue map, Summer; Behaviour's tables); it never writes. The tailer
writes the puts exactly as an in-process flush's (Rollups._write: the covered seq in the
same transaction), so the bytes, the replication frames and the crash semantics are the
same; the worker moves its maps on (commit_fresh) only after an ACK that says committed,
and its next read transaction begins after that ACK, so the blocks it merges into are
the ones the tailer last wrote. If the rollups it reads cover another seq than its maps
(a rebuild, a flush made without it), it loads its maps again.

A message is a header (a type byte, the body's length as u64) and the body, at most
rollups.ROLLUP_WORKER_MESSAGE_BYTES_MAX; a flush whose puts are larger is computed
again over fewer records. The worker ends at the pipe's end (its parent gone) and, where
Linux allows, by PR_SET_PDEATHSIG when the thread that started it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass

import lmdb
import numpy as np

from core.engine import behaviour, rollups
from core.engine.storage import Store

log = logging.getLogger("mms.rollup_worker")

FLUSH, RESULT, EMPTY, ERROR, ACK, STOP = b"F", b"R", b"E", b"X", b"A", b"S"
_HEADER = struct.Struct("<cQ")
_FLUSH = struct.Struct("<QQ")
_RESULT = struct.Struct("<QQddI")
_TABLE = struct.Struct("<HI")
# The pipes' capacity asked for (F_SETPIPE_SZ; Linux caps it at pipe-max-size): fewer
# wake-ups of the tailer's read per flush.
PIPE_BYTES = 1 << 20
_PR_SET_PDEATHSIG = 1
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- the messages ---------------------------------------------------------------------

def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def send(fd: int, kind: bytes, *parts) -> None:
    """One message: the header, then the parts (bytes-like) as its body."""
    size = sum(memoryview(p).nbytes for p in parts)
    if size > rollups.ROLLUP_WORKER_MESSAGE_BYTES_MAX:
        raise ValueError(f"a rollup worker message of {size} bytes is over the bound")
    _write_all(fd, _HEADER.pack(kind, size))
    for p in parts:
        _write_all(fd, p)


def _read_into(fd: int, buf: bytearray | memoryview, wait=None) -> bool:
    """Fill buf from fd (os.readv waits without the GIL); False at the pipe's end. wait,
    if given, is called before each read and returns once fd is readable (or raises)."""
    view = memoryview(buf)
    while view:
        if wait is not None:
            wait()
        got = os.readv(fd, [view])
        if got == 0:
            return False
        view = view[got:]
    return True


def receive(fd: int, wait=None) -> tuple[bytes, bytearray] | None:
    """The next message (type, body), None at the pipe's end (wait: _read_into's)."""
    head = bytearray(_HEADER.size)
    if not _read_into(fd, head, wait):
        return None
    kind, size = _HEADER.unpack(head)
    if size > rollups.ROLLUP_WORKER_MESSAGE_BYTES_MAX:
        raise ValueError(f"a rollup worker message of {size} bytes is over the bound")
    body = bytearray(size)
    if not _read_into(fd, body, wait):
        return None
    return kind, body


def encode_result(puts: dict[str, list], new_cards, upto: int, n: int, compute_s: float,
                  compute_cpu_s: float) -> list:
    """The parts of a RESULT body: the flush's counts, its puts per table (the key and
    value lengths as u32 arrays, then the keys, then the values), its new cards."""
    tables = [(t, p) for t, p in puts.items() if p]
    out: list = [_RESULT.pack(n, upto, compute_s, compute_cpu_s, len(tables))]
    for table, pairs in tables:
        name = table.encode()
        klen = np.fromiter((len(k) for k, _v in pairs), np.uint32, len(pairs))
        vlen = np.fromiter((memoryview(v).nbytes for _k, v in pairs), np.uint32, len(pairs))
        out += [_TABLE.pack(len(name), len(pairs)), name, klen.tobytes(), vlen.tobytes(),
                b"".join(k for k, _v in pairs), b"".join(v for _k, v in pairs)]
    cards = np.concatenate([c for c, _s in new_cards]) if new_cards else np.zeros(0, np.uint64)
    stores = np.concatenate([s for _c, s in new_cards]) if new_cards else np.zeros(0, np.uint32)
    out += [struct.pack("<Q", len(cards)), cards.astype("<u8").tobytes(),
            stores.astype("<u4").tobytes()]
    return out


@dataclass
class Flush:
    """A flush as the worker computed it, for Rollups._write."""
    puts: dict[str, list[tuple[memoryview, memoryview]]]
    new_cards: list[tuple[np.ndarray, np.ndarray]]
    upto: int
    n: int
    compute_s: float
    compute_cpu_s: float


def decode_result(body: bytearray) -> Flush:
    """encode_result's inverse; the keys and values are views of body (no copy)."""
    view = memoryview(body)
    n, upto, compute_s, compute_cpu_s, ntables = _RESULT.unpack_from(view, 0)
    at = _RESULT.size
    puts: dict[str, list] = {}
    for _ in range(ntables):
        nlen, count = _TABLE.unpack_from(view, at)
        at += _TABLE.size
        name = bytes(view[at:at + nlen]).decode()
        at += nlen
        klen = np.frombuffer(view, np.uint32, count, at)
        at += 4 * count
        vlen = np.frombuffer(view, np.uint32, count, at)
        at += 4 * count
        kend = (at + np.cumsum(klen, dtype=np.int64)).tolist()
        vend = (kend[-1] + np.cumsum(vlen, dtype=np.int64)).tolist() if count else []
        ks = [at, *kend[:-1]]
        vs = [kend[-1], *vend[:-1]] if count else []
        puts[name] = [(view[a:b], view[c:d])
                      for a, b, c, d in zip(ks, kend, vs, vend, strict=True)]
        at = vend[-1] if count else at
    (ncards,) = struct.unpack_from("<Q", view, at)
    at += 8
    cards = np.frombuffer(view, "<u8", ncards, at).astype(np.uint64)
    stores = np.frombuffer(view, "<u4", ncards, at + 8 * ncards).astype(np.uint32)
    return Flush(puts, [(cards, stores)] if ncards else [], upto, n, compute_s, compute_cpu_s)


# --- the tailer's side ----------------------------------------------------------------

class WorkerProcess:
    """The tailer's handle on one worker process (used under the tailer's lock)."""

    def __init__(self, store, tz: int, hold_fd: int | None = None, nice: int = 0) -> None:
        req_r, self._req = os.pipe()
        self._res, res_w = os.pipe()
        for fd in (self._req, res_w):
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        # Not `-m`: core.engine's package imports this module first (runpy would warn).
        argv = [sys.executable, "-c", "from core.engine.rollup_worker import main; main()",
                "--path", store.path,
                "--map-size", str(store.env.info()["map_size"]), "--tz", str(int(tz)),
                "--fd-in", str(req_r), "--fd-out", str(res_w), "--parent", str(os.getpid())]
        fds = [req_r, res_w]
        if hold_fd is not None:
            argv += ["--hold-fd", str(hold_fd)]
            fds.append(hold_fd)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         pass_fds=fds, env=env, cwd=_ROOT)
        except BaseException:
            for fd in (self._req, self._res):       # ours too: nobody else will close them
                os.close(fd)
            raise
        finally:
            os.close(req_r)
            os.close(res_w)
        self.pid = self.proc.pid
        if nice:
            # Below the swipes (EngineConfig.rollups_worker_nice), set as soon as it is
            # started (a few microseconds of its start-up at the server's); the kernel
            # caps niceness at 19.
            try:
                os.setpriority(os.PRIO_PROCESS, self.proc.pid,
                               min(19, os.getpriority(os.PRIO_PROCESS, 0) + int(nice)))
            except OSError as exc:
                log.warning("the rollup worker's niceness could not be set: %s", exc)

    def _ask(self, kind: bytes, *parts) -> None:
        try:
            send(self._req, kind, *parts)
        except (BrokenPipeError, OSError) as exc:
            raise rollups.WorkerDied(f"rollup worker {self.pid}: {exc}") from exc

    def flush(self, seq: int, records_max: int) -> Flush | None:
        """The worker's flush of the records after seq (None: there are none)."""
        self._ask(FLUSH, _FLUSH.pack(seq, records_max))
        msg = receive(self._res, self._await_answer)
        if msg is None:
            code = self.proc.poll()
            raise rollups.WorkerDied(f"rollup worker {self.pid} ended (exit {code})")
        kind, body = msg
        if kind == EMPTY:
            return None
        if kind == ERROR:
            raise RuntimeError(f"rollup worker {self.pid}: {body.decode(errors='replace')}")
        if kind != RESULT:
            raise rollups.WorkerDied(f"rollup worker {self.pid}: message {kind!r}")
        return decode_result(body)

    def _await_answer(self) -> None:
        """Return once the answer's next bytes can be read; a worker that stops making
        progress (its CPU time still for ROLLUP_WORKER_STALL_S) or takes longer than
        ROLLUP_WORKER_ANSWER_S is killed and WorkerDied raised: a SIGSTOPped or hung
        worker must not hold the tailer (and Engine.close) for good."""
        poller = select.poll()
        poller.register(self._res, select.POLLIN | select.POLLHUP | select.POLLERR)
        start = moved = time.monotonic()
        cpu = _cpu_ticks(self.pid)
        while not poller.poll(_WAIT_SLICE_MS):      # waits without the GIL
            now, ticks = time.monotonic(), _cpu_ticks(self.pid)
            if ticks != cpu:
                cpu, moved = ticks, now
            stalled = now - moved > rollups.ROLLUP_WORKER_STALL_S
            if stalled or now - start > rollups.ROLLUP_WORKER_ANSWER_S:
                with contextlib.suppress(OSError):
                    self.proc.kill()
                why = (f"used no CPU for {now - moved:.0f} s" if stalled
                       else f"did not answer within {rollups.ROLLUP_WORKER_ANSWER_S:.0f} s")
                raise rollups.WorkerDied(f"rollup worker {self.pid} {why}: killed")

    def ack(self, committed: bool) -> None:
        self._ask(ACK, b"\1" if committed else b"\0")

    def close(self) -> None:
        """Stop the worker (STOP, then the pipes' end) and reap it."""
        with contextlib.suppress(OSError, rollups.WorkerDied):
            self._ask(STOP)
        for fd in (self._req, self._res):
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            self.proc.wait(timeout=rollups.ROLLUP_WORKER_RESTART_S * 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_WAIT_SLICE_MS = 500


def _cpu_ticks(pid: int) -> int | None:
    """A process's user + system CPU so far in clock ticks (/proc), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def start(tailer: rollups.Rollups, nice: int = 0) -> WorkerProcess:
    """Rollups' worker factory: a worker over the tailer's store, in its zone, nice
    (EngineConfig.rollups_worker_nice) above this process's niceness."""
    return WorkerProcess(tailer.store, tailer.tz, tailer.worker_hold_fd, nice)


# --- the worker's side ----------------------------------------------------------------

def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:      # gone before the prctl took
        os._exit(0)


class _State:
    """What the worker keeps between flushes: the tailer's maps, at the seq they match."""

    def __init__(self, store: Store, tz: int) -> None:
        self.store, self.tz = store, tz
        self.pending: tuple[list, int] = ([], 0)      # the new cards and seq of the flush sent
        self.load()

    def load(self) -> None:
        store = self.store
        with store.read() as txn:
            self.seq = rollups.covered_seq(store, txn)
            issue = rollups.load_issue_map(store, txn)
        self.summer = rollups.Summer(store, self.tz, issue)
        self.behaviour = behaviour.Behaviour()

    def covered(self) -> int:
        with self.store.read() as txn:
            return rollups.covered_seq(self.store, txn)


def _open(path: str, map_size: int) -> Store:
    store = Store(path, map_size_bytes=map_size, readonly=True)
    for name in (*rollups.ROLLUP_DBS, rollups.JOURNAL_ITEMS_DB):
        store.db[name] = store.env.open_db(name.encode(), create=False)
    return store


def _readable(store: Store, fn, *args):
    """fn(*args) again after MDB_MAP_RESIZED (the tailer's process grew the map): the
    map re-adopts the size the environment has now."""
    while True:
        try:
            return fn(*args)
        except lmdb.MapResizedError:
            store.env.set_mapsize(0)
            log.warning("the map grew: now %d bytes", store.env.info()["map_size"])


def _compute(state: _State, seq: int, records_max: int) -> list | None:
    """The parts of the RESULT of a flush after seq, or None (no records)."""
    while True:
        t0, c0 = time.perf_counter(), time.process_time()
        with rollups.collector_paused():
            flush = rollups.compute_flush(state.store, state.summer, state.behaviour, seq,
                                          records_max)
            if flush is None:
                return None
            puts, new_cards, upto, n = flush
            parts = encode_result(puts, new_cards, upto, n, time.perf_counter() - t0,
                                  time.process_time() - c0)
        size = sum(memoryview(p).nbytes for p in parts)
        if size <= rollups.ROLLUP_WORKER_MESSAGE_BYTES_MAX or records_max <= 1:
            state.pending = new_cards, upto
            return parts
        records_max = max(1, min(records_max, n) // 2)     # over the bound: fewer records


def serve(state: _State, fd_in: int, fd_out: int, hold_fd: int | None = None) -> None:
    """Answer the tailer's messages until STOP or the pipe's end."""
    while True:
        msg = receive(fd_in)
        if msg is None or msg[0] == STOP:
            return
        kind, body = msg
        if kind != FLUSH:
            raise ValueError(f"unexpected message {kind!r}")
        seq, records_max = _FLUSH.unpack(body)
        try:
            if seq != state.seq or _readable(state.store, state.covered) != seq:
                _readable(state.store, state.load)       # rows made without these maps
            if seq != state.seq:
                raise RuntimeError(f"the tailer covers {seq}, the rollups {state.seq}")
            parts = _readable(state.store, _compute, state, seq, records_max)
        except Exception:
            send(fd_out, ERROR, traceback.format_exc().encode())
            continue
        if parts is None:
            send(fd_out, EMPTY)
            continue
        if hold_fd is not None:
            # The crash test's point: the flush computed, nothing sent; it kills us here.
            _write_all(hold_fd, b"H")
            while True:
                signal.pause()
        send(fd_out, RESULT, *parts)
        ack = receive(fd_in)
        if ack is None:
            return
        if ack[0] != ACK:
            raise ValueError(f"expected an ACK, got {ack[0]!r}")
        new_cards, upto = state.pending
        if ack[1] == b"\1":     # committed: the maps move with the database
            state.summer.commit_fresh(new_cards)
            state.seq = upto


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="rollup_worker")
    ap.add_argument("--path", required=True)
    ap.add_argument("--map-size", type=int, required=True)
    ap.add_argument("--tz", type=int, required=True)
    ap.add_argument("--fd-in", type=int, required=True)
    ap.add_argument("--fd-out", type=int, required=True)
    ap.add_argument("--parent", type=int, required=True)
    ap.add_argument("--hold-fd", type=int)
    a = ap.parse_args(argv)
    _die_with_parent(a.parent)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s rollup-worker %(message)s")
    store = _open(a.path, a.map_size)
    try:
        serve(_State(store, a.tz), a.fd_in, a.fd_out, a.hold_fd)
    except (BrokenPipeError, ConnectionError):
        pass                    # the tailer is gone
    finally:
        store.env.close()


if __name__ == "__main__":
    main()
