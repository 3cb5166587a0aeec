"""Leadership in etcd: a lease-backed leader key, its keepalive, the campaign, the watch
of the leader key, and the epoch counter bumped at every promotion.

Keys, under `/mms/<cluster>/`:

- `leader`: JSON {"name", "address", "epoch"}, put with this node's lease, so it goes
  when the lease does (the holder died, paused or lost etcd for longer than the TTL).
- `epoch`: the last epoch handed out, a decimal integer; never goes down.

A campaign is one etcd transaction: if `leader` does not exist and `epoch` is still at
the mod revision just read, put `leader` (with our lease) and `epoch` = read + 1. So a
win and its epoch bump are one atomic step: two nodes can never hold the same epoch, and
every promotion gets a larger one than any before it (compare-and-swap on the counter).

Fencing: the ack gate (`NodeRole.may_acknowledge`) is open only until
`sent_at + TTL - margin`, sent_at being the monotonic time *before* the keepalive (or
grant) request whose answer renewed the lease. etcd counts the TTL from when it handled
that request, which is later, so by this node's clock the lease is held at least until
sent_at + TTL; a new leader can be elected only after that. The margin (a quarter of the
TTL, LEASE_MARGIN_FRACTION) covers clock-rate drift between hosts (parts per million),
the time between the gate check and the answer leaving the socket, and scheduling delays.
Keepalives go every TTL/3 (LEASE_KEEPALIVE_FRACTION): two may be lost before the gate
closes.

What a node does with leadership is the node adapter's (`NodeAdapter`): promote a
standby at a new epoch, turn an old primary into a standby of the new leader. Without
replication (the pieces of issue 14 items 1-2), the adapter keeps the node's own engine
and only the role changes; see the adapter for what is wired where.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from server.rpc.role import PRIMARY, STANDBY, Leader, NodeRole

log = logging.getLogger("mms.leader")

# The lease's TTL by default (operators set [ha] lease_ttl_s; tests use 2 s).
LEASE_TTL_S_DEFAULT = 10
# etcd's own floor for a lease (about 1.5 x its election timeout); below it, etcd grants more.
LEASE_TTL_S_MIN = 2
LEASE_TTL_S_MAX = 300
# The gate closes this fraction of the TTL before the lease can have expired.
LEASE_MARGIN_FRACTION = 0.25
# A keepalive every this fraction of the TTL: two can fail before the gate closes.
LEASE_KEEPALIVE_FRACTION = 1 / 3
# One etcd call may take at most this fraction of the TTL before the next endpoint is
# tried: a call slower than that could not renew the lease in time anyway.
ETCD_CALL_FRACTION = 0.25
# A standby re-reads the leader key at least this often (besides watching it).
LEADER_POLL_FRACTION = 0.25
# Pause after a failed round (etcd unreachable) before the next; bounded below the TTL.
RETRY_PAUSE_FRACTION = 0.25
# Before campaigning a standby asks each peer how far it has applied, each for at most
# this fraction of the TTL (a paused or dead peer does not hold the election up longer).
PEER_STATUS_FRACTION = 0.25
# A standby that found a peer further ahead leaves the campaign to it, but for at most
# this many TTLs (that peer may be unable to reach etcd): then it campaigns itself.
DEFER_TTLS_MAX = 2
ETCD_ENDPOINTS_MAX = 16
# A standby that does not campaign says why when the reason changes, and again at most
# this often while it lasts (each round would flood the log; once would hide a deferral
# that never ends).
NOT_CAMPAIGNING_LOG_S = 10.0
# The leadership loop awaits what it asks of the node (a promotion: stop following,
# reopen the store as the primary; a follow: retarget the standby, or close a fenced
# primary's engine and reopen its store as a standby) for at most this many TTLs; the
# call goes on in its thread, the loop goes on renewing, fencing and reading the leader
# key, and the node's next call waits for it first. A promotion past its bound gives the
# office up (the lease revoked, so another node can lead); a follow past its bound is
# tried again next round. Far above either's length under load (a recovery, seconds).
PROMOTE_TTLS_MAX = 15
FOLLOW_TTLS_MAX = 5
# A node in [ha] writes every thread's stack to stderr on SIGUSR1 (faulthandler, from the
# signal handler itself: it works while the event loop is stuck) and, on SIGUSR2, every
# thread's stack then every asyncio task's chain of awaits (run by the loop, ending with
# DUMP_END): a hang shows where it waits (tests/etcd_harness.py asks for SIGUSR2 when a
# wait times out, and for SIGUSR1 if the loop does not answer).
DUMP_THREADS_SIGNAL = signal.SIGUSR1
DUMP_TASKS_SIGNAL = signal.SIGUSR2
DUMP_END = "mms: dump: end"


# Tasks given up on (they did not end within their bound once cancelled): referenced
# here until they do end, so that they are not collected mid-flight.
_ABANDONED: set[asyncio.Future] = set()


async def bounded(aw, timeout_s: float) -> tuple[bool, BaseException | None]:
    """Await aw (a coroutine or a future) for at most timeout_s, then cancel it and give
    it at most timeout_s more to end: (whether it ended, its exception or None). Unlike
    asyncio.wait_for, never waits without a bound for a task that ignores its
    cancellation; such a task is left running (referenced in _ABANDONED)."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:  # the caller is cancelled: so is aw, unawaited
        task.cancel()
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        return False, None
    if task.cancelled():
        return True, asyncio.CancelledError()
    return True, task.exception()


def abandoned_tasks() -> int:
    """Tasks bounded() gave up on that have not ended yet (mms_leadership_abandoned_tasks):
    each is an etcd call that ignored its cancellation; a count that keeps rising means
    the etcd client is stuck."""
    return len(_ABANDONED)


def _abandon(task: asyncio.Future) -> None:
    if task.done():
        _forget(task)
        return
    _ABANDONED.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Future) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit


def install_stack_dumps(loop: asyncio.AbstractEventLoop) -> bool:
    """SIGUSR1 and SIGUSR2 dump this process's threads and tasks to stderr (see
    DUMP_THREADS_SIGNAL); False where signals cannot be set (not the main thread, a
    stderr with no file descriptor)."""
    try:
        faulthandler.register(DUMP_THREADS_SIGNAL, file=sys.stderr, all_threads=True)
        loop.add_signal_handler(DUMP_TASKS_SIGNAL, dump_tasks, loop)
    except (ValueError, RuntimeError, OSError, AttributeError):
        return False
    return True


def dump_tasks(loop: asyncio.AbstractEventLoop, out=None) -> None:
    """Every thread's name and id (faulthandler's dump names threads by id only), then
    every task of loop with its stack, then DUMP_END."""
    out = out if out is not None else sys.stderr
    if out is sys.stderr:  # the threads' stacks first, in order with what follows
        sys.stderr.flush()
        with contextlib.suppress(ValueError, OSError, AttributeError):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    threads = ", ".join(f"{t.name}=0x{t.ident or 0:016x}" for t in threading.enumerate())
    print(f"mms: dump: threads {threads}", file=out)
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: not t.get_name().startswith("mms")):
        print(f"mms: dump: task {task!r}", file=out)
        for where in _awaiting(task.get_coro()):
            print(f"  {where}", file=out)
    print(DUMP_END, file=out, flush=True)


def _awaiting(coro, depth_max: int = 40) -> list[str]:
    """Where a task's coroutine waits, outermost first, down the chain of what each
    coroutine awaits (Task.print_stack shows the outermost frame only)."""
    out = []
    while coro is not None and len(out) < depth_max:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out


def cut_short(e: BaseException) -> bool:
    """Whether e, a CancelledError caught in the running task, is not that task's own
    cancellation: nothing asked to cancel the task (Task.cancelling() is 0). grpc.aio
    raises CancelledError in every call of a channel closed while the call was in
    flight; that is a failed call, to be handled as one."""
    task = asyncio.current_task()
    return (isinstance(e, asyncio.CancelledError) and task is not None
            and not task.cancelling())


def _said(what: tuple) -> str:
    return " ".join(str(x) for x in what)


class EtcdUnavailable(Exception):
    """No etcd endpoint answered within the call bound."""


class NodeBusy(Exception):
    """A call of the node adapter (promote, follow) did not end within its bound: it goes
    on in its thread, and the node's next call waits for it first."""


class LeaseNotFound(Exception):
    """etcd answered that the lease a call named is gone (it expired, or was revoked):
    an answer about the lease, not an endpoint's fault, so no other endpoint is tried."""


@dataclass
class HaConfig:
    """`[ha]` of the server's config: where etcd is and who this node is."""
    etcd: list[str]
    name: str
    advertise: str = ""
    cluster: str = "mms"
    lease_ttl_s: int = LEASE_TTL_S_DEFAULT

    @classmethod
    def from_dict(cls, d: dict) -> HaConfig:
        known = {"etcd", "name", "advertise", "cluster", "lease_ttl_s"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"[ha]: unknown keys {sorted(unknown)}")
        cfg = cls(etcd=[str(e) for e in d.get("etcd", [])], name=str(d.get("name", "")),
                  advertise=str(d.get("advertise", "")), cluster=str(d.get("cluster", "mms")),
                  lease_ttl_s=int(d.get("lease_ttl_s", LEASE_TTL_S_DEFAULT)))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not 1 <= len(self.etcd) <= ETCD_ENDPOINTS_MAX:
            raise ValueError(f"[ha] etcd: 1..{ETCD_ENDPOINTS_MAX} HOST:PORT endpoints")
        if not self.name or "/" in self.name:
            raise ValueError("[ha] name: a non-empty node name without '/'")
        if not LEASE_TTL_S_MIN <= self.lease_ttl_s <= LEASE_TTL_S_MAX:
            raise ValueError(f"[ha] lease_ttl_s: {LEASE_TTL_S_MIN}..{LEASE_TTL_S_MAX}")
        if not self.cluster or "/" in self.cluster:
            raise ValueError("[ha] cluster: a non-empty name without '/'")

    @property
    def prefix(self) -> bytes:
        return f"/mms/{self.cluster}/".encode()

    @property
    def margin_s(self) -> float:
        return self.lease_ttl_s * LEASE_MARGIN_FRACTION


def leader_key(prefix: bytes) -> bytes:
    return prefix + b"leader"


def epoch_key(prefix: bytes) -> bytes:
    return prefix + b"epoch"


def nodes_prefix(prefix: bytes) -> bytes:
    """`nodes/<name>` = the node's address, bound to its lease: the peers a standby asks
    before it campaigns (is one of them further ahead?)."""
    return prefix + b"nodes/"


def parse_leader(value: bytes) -> Leader | None:
    try:
        d = json.loads(value)
        return Leader(str(d["name"]), str(d["address"]), int(d["epoch"]))
    except (ValueError, KeyError, TypeError):
        return None


class Etcd:
    """aetcd clients over a list of endpoints: a call that fails or takes longer than
    call_timeout_s is tried on the next endpoint, each endpoint at most once per call."""

    def __init__(self, endpoints: list[str], call_timeout_s: float) -> None:
        try:
            import aetcd  # the `ha` extra; imported here so that a single server needs none
        except ImportError as e:
            raise RuntimeError("[ha] needs the etcd client: pip install 'mms[ha]' "
                               "(aetcd)") from e

        self._aetcd = aetcd
        self.client_error = aetcd.exceptions.ClientError
        self.endpoints = list(endpoints)
        self.call_timeout_s = call_timeout_s
        self._i = 0
        self._client: Any = None
        self.connects = 0  # clients made so far

    async def _connected(self):
        # The client made here is the one returned: the keepalive and the leadership loop
        # share this object, and one may drop the client while the other awaits its
        # connect (self._client then None: the caller got None, and its call raised
        # AttributeError, which ended the keepalive task under load).
        client = self._client
        if client is None:
            host, _, port = self.endpoints[self._i].rpartition(":")
            client = self._client = self._aetcd.Client(host=host or "127.0.0.1",
                                                       port=int(port),
                                                       timeout=self.call_timeout_s)
            self.connects += 1
            await asyncio.wait_for(client.connect(), self.call_timeout_s)
        return client

    async def _drop(self, client: Any = None) -> None:
        """Close the client (the current one by default) and move to the next endpoint;
        a client already replaced (the other user of this object failed on it first)
        is not dropped again, so one failure never closes the client made after it."""
        if client is None:
            client = self._client
        elif client is not self._client:
            return
        self._client = None
        self._i = (self._i + 1) % len(self.endpoints)
        if client is not None:
            await bounded(client.close(), self.call_timeout_s)

    async def call(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        last: BaseException | None = None
        for _ in range(len(self.endpoints)):
            client, where = None, self.endpoints[self._i]
            try:
                client = await self._connected()
                return await asyncio.wait_for(fn(client), self.call_timeout_s)
            except (asyncio.TimeoutError, self._aetcd.exceptions.ClientError, OSError) as e:
                if isinstance(e, self.client_error) and "lease not found" in str(e):
                    raise LeaseNotFound(str(e)) from e
                last = e
                await self._drop(client)
            except asyncio.CancelledError as e:
                if not cut_short(e):
                    raise
                # grpc.aio raises CancelledError in a call whose channel was closed under
                # it: the other user of this object dropped the client after its own
                # call failed. A failed call, not a cancellation of this task (it ended
                # the keepalive, or the whole leadership loop, under load).
                log.warning("etcd: a call to %s was cut short (its channel closed under "
                            "it); trying the next endpoint", where)
                last = e
                await self._drop(client)
        raise EtcdUnavailable(f"no etcd endpoint of {self.endpoints} answered: {last!r}")

    async def watch_once(self, key: bytes, timeout_s: float, start_revision: int | None) -> None:
        """Until one event on key or timeout_s (a silent key is no endpoint's fault), and
        never longer than timeout_s plus two call bounds: aetcd's watcher can leave a watch
        that ignores its cancellation (its Condition.wait takes the watcher's lock back
        before it lets a cancellation through, and that lock can stay held by a put into
        its full request queue after the stream broke). asyncio.wait_for would then wait
        for that watch forever, and the leadership loop with it (a standby that never
        learnt the new leader, a sync write held until its deadline). Such a watch is
        left behind and the client dropped, so the next call connects afresh."""
        client = await self._connected()
        watch = asyncio.ensure_future(client.watch_once(key, timeout=timeout_s,
                                                        start_revision=start_revision))
        done, err = await bounded(watch, timeout_s + self.call_timeout_s)
        if not done:
            log.warning("etcd: a watch of %s did not end when cancelled; dropping the "
                        "client of %s", key.decode(errors="replace"), self.endpoints[self._i])
            await self._drop(client)  # unless replaced meanwhile
        elif err is not None and not isinstance(err, (self._aetcd.exceptions.WatchTimeoutError,
                                                      asyncio.CancelledError)):
            raise err  # (cancelled: by the bound above, a silent key as well)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await bounded(client.close(), self.call_timeout_s)


class NodeAdapter:
    """What leadership asks of the node, in one place, so that the replication side
    (issue 14 items 1-2: `promote(epoch) -> Engine` on a standby,
    `rejoin_as_standby(primary_addr)` on an old primary, `Engine.set_ack_gate(fn)`) plugs
    in here and nowhere else.

    `replica` is the node's replication object when it has one (anything with `promote`
    and `rejoin_as_standby`); without it the node keeps its own engine and only its role
    changes (every call is still recorded in `calls`, and logged). `on_engine` is called
    with the engine a promotion returns, for the server to serve from it."""

    def __init__(self, engine=None, replica=None,
                 on_engine: Callable[[Any], None] | None = None) -> None:
        self.engine = engine
        self.replica = replica
        self.on_engine = on_engine
        self.gate: Callable[[], bool] | None = None
        self.calls: list[tuple[str, Any]] = []
        # The replica's call running in its thread (promote or follow), one at a time and
        # in order: (what, future, monotonic start), None when none runs.
        self._running: tuple[tuple, asyncio.Future, float] | None = None

    def install_gate(self, gate: Callable[[], bool]) -> bool:
        """Hand the ack gate to the engine's committer; False when the engine has no
        set_ack_gate (then only the RPC layer's checks hold acks back)."""
        self.calls.append(("install_gate", None))
        self.gate = gate
        if getattr(self.engine, "standby", False):
            return True  # a standby acknowledges nothing; its promoted engine gets the gate
        setter = getattr(self.engine, "set_ack_gate", None)
        if setter is None:
            log.warning("the engine has no set_ack_gate: acks are fenced at the RPC layer only")
            return False
        setter(gate)
        return True

    async def promote(self, epoch: int, timeout_s: float | None = None) -> None:
        """Promote the replica at epoch (see _in_thread for timeout_s and NodeBusy)."""
        self.calls.append(("promote", epoch))
        promote = getattr(self.replica, "promote", None)
        if promote is None:
            log.info("promoted at epoch %d (no replication: serving this node's own engine)",
                     epoch)
            return
        await self._in_thread(("promote", epoch), timeout_s, promote, epoch,
                              done=self._promoted)

    def _promoted(self, fut: asyncio.Future) -> None:
        """A promotion ended (awaited or given up on): its engine acknowledges through
        the gate too, and the server serves from it."""
        if fut.cancelled() or fut.exception() is not None:
            return
        engine = fut.result()
        self.engine = engine
        if self.gate is not None:
            self.install_gate(self.gate)
        if self.on_engine is not None:
            self.on_engine(engine)

    async def _in_thread(self, what: tuple, timeout_s: float | None, fn, *args,
                         done: Callable[[asyncio.Future], None] | None = None) -> Any:
        """fn(*args) in a thread, after the previous call has ended (calls keep their
        order), awaiting each for at most timeout_s (None: no bound). Past it: NodeBusy,
        every thread's stack in the log (once per call), and the call goes on; the next
        call with the same `what` takes its result once it has ended, instead of calling
        again. `done(future)` runs on the loop when the call ends, awaited or not."""
        if self._running is not None:
            prev_what, prev, since = self._running
            if not prev.done():
                await asyncio.wait({prev}, timeout=timeout_s)
            if not prev.done():
                raise NodeBusy(f"{_said(what)}: {_said(prev_what)} still runs, "
                               f"{time.monotonic() - since:.1f} s after it began")
            self._running = None
            if prev_what == what and not prev.cancelled() and prev.exception() is None:
                return prev.result()  # it ended after it was given up on: not again
        fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        fut.add_done_callback(_forget)  # its exception retrieved, awaited or not
        if done is not None:
            fut.add_done_callback(done)
        self._running = (what, fut, time.monotonic())
        await asyncio.wait({fut}, timeout=timeout_s)
        if not fut.done():
            log.error("leadership: %s still runs after %.1f s; every thread's stack "
                      "follows (faulthandler)", _said(what), timeout_s)
            with contextlib.suppress(ValueError, OSError, AttributeError):
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            raise NodeBusy(f"{_said(what)} still runs after {timeout_s:.1f} s")
        self._running = None
        return fut.result()

    async def step_down(self, leader: Leader | None) -> None:
        """This node led and lost its lease: follow the new leader once it is known."""
        self.calls.append(("step_down", None if leader is None else leader.address))

    async def follow(self, leader: Leader, timeout_s: float | None = None) -> None:
        """A leader is known: a standby (or an old primary) follows it (see _in_thread
        for timeout_s and NodeBusy)."""
        self.calls.append(("follow", leader.address))
        rejoin = getattr(self.replica, "rejoin_as_standby", None)
        if rejoin is not None:
            await self._in_thread(("follow", leader.address), timeout_s, rejoin,
                                  leader.address)

    def busy(self) -> str:
        """What the replica still runs from an earlier call given up on ("" if none):
        a node whose promotion or follow hangs does not campaign (it would hold the
        leader key without serving)."""
        if self._running is None or self._running[1].done():
            return ""
        what, _fut, since = self._running
        return f"{_said(what)} still runs, {time.monotonic() - since:.1f} s after it began"

    def lagging(self) -> str:
        """Why this node must not campaign now ("" when it may): its replication says it
        is further behind the primary than its configured bound."""
        fn = getattr(self.replica, "lagging", None)
        return fn() if fn is not None else ""

    async def peer_ahead(self, peers: dict[str, str], timeout_s: float) -> str:
        """The name of a peer (name -> address) that has applied more than this node,
        "" if none (or no replication: nothing to compare)."""
        fn = getattr(self.replica, "peer_ahead", None)
        if fn is None or not peers:
            return ""
        # Each peer's answer is bounded by timeout_s (a gRPC deadline); the whole by
        # that for every peer and once more: a peer not heard from is not counted.
        fut = asyncio.ensure_future(asyncio.to_thread(fn, peers, timeout_s))
        fut.add_done_callback(_forget)
        await asyncio.wait({fut}, timeout=timeout_s * (len(peers) + 1))
        return fut.result() if fut.done() else ""


class Leadership:
    """The leadership task of one node: holds a lease, campaigns when there is no
    leader, keeps the role current, and fences itself when its lease may be gone.

    `events` (a list of (kind, detail)) records what happened, in order, for the log
    lines that tools and tests wait on."""

    def __init__(self, cfg: HaConfig, role: NodeRole, node: NodeAdapter, *,
                 etcd: Etcd | None = None, clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[[str, str], None] | None = None) -> None:
        self.cfg = cfg
        self.role = role
        self.node = node
        self.ttl_s = float(cfg.lease_ttl_s)
        self.etcd = etcd or Etcd(cfg.etcd, self.ttl_s * ETCD_CALL_FRACTION)
        self.promote_timeout_s = self.ttl_s * PROMOTE_TTLS_MAX
        self.follow_timeout_s = self.ttl_s * FOLLOW_TTLS_MAX
        self.clock = clock
        self.on_event = on_event
        self.prefix = cfg.prefix
        self.lease_id: int | None = None
        self._lease_sent_at = 0.0
        self._lease_ttl = 0.0
        self._stop = asyncio.Event()
        self._lease_lost = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        # The leader (address, epoch) this node follows: a leader that won again at the
        # same address (restarted) is a new primary to follow.
        self._followed: tuple[str, int] | None = None
        self._deferred_since: float | None = None
        self._not_campaigning_why = ""
        self._not_campaigning_logged_at = 0.0
        self._not_campaigning_rounds = 0
        # When the last campaign's transaction was sent (monotonic): a win happened later.
        self.campaign_sent_at = 0.0

    # --- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        install_stack_dumps(asyncio.get_running_loop())
        self.node.install_gate(self.role.may_acknowledge)
        self._tasks = [asyncio.create_task(self._run(), name="mms-leadership")]
        self._tasks[0].add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        """The loop ends only when stopped; anything else is said, with what ended it."""
        if self._stop.is_set():
            return
        err = "cancelled" if task.cancelled() else repr(task.exception())
        log.error("leadership: the leadership loop ended (%s): this node neither renews, "
                  "follows nor campaigns any more", err)
        self._event("ended", err)

    async def stop(self) -> None:
        """Resign: stop campaigning, delete our leader key and revoke the lease so that
        another node may win at once (a clean shutdown need not wait for the TTL)."""
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.role.state == PRIMARY:
            self.role.fence()
        await self._revoke("")
        await self.etcd.close()

    async def _revoke(self, why: str) -> None:
        """Give the lease up at once (the leader key and nodes/<name> go with it), so
        that another node may win without waiting for the TTL."""
        if self.lease_id is None:
            return
        lease_id = self.lease_id
        self._lease_gone(why or "resigned")
        try:
            await self.etcd.call(lambda c: c.revoke_lease(lease_id))
            self._event("resigned", "lease revoked: the leader key went with it"
                        + (f" ({why})" if why else ""))
        except Exception as e:
            log.warning("could not revoke the lease (%s); it expires by itself", e)

    def _event(self, kind: str, detail: str) -> None:
        log.info("leadership: %s %s", kind, detail)
        if self.on_event is not None:
            self.on_event(kind, detail)

    # --- the lease ------------------------------------------------------------------

    async def _grant(self) -> None:
        """A new lease, this node registered under it, and only then kept: a lease kept
        after its registration failed had no keepalive (that starts after the grant),
        so under load, once it expired, every later call naming it failed ("requested
        lease not found") and the node never campaigned again."""
        sent_at = self.clock()
        lease = await self.etcd.call(lambda c: c.lease(int(self.ttl_s)))
        key = nodes_prefix(self.prefix) + self.cfg.name.encode()
        address = self.role.address.encode()
        await self.etcd.call(lambda c: c.put(key, address, lease=lease.id))
        self.lease_id, self._lease_sent_at, self._lease_ttl = lease.id, sent_at, float(lease.ttl)
        self._lease_lost.clear()
        self.role.lease_renewed(sent_at, float(lease.ttl))

    async def _keepalive(self) -> None:
        """Renew the lease every TTL/3; when etcd says it is gone, fence."""
        period = self.ttl_s * LEASE_KEEPALIVE_FRACTION
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._lease_lost.wait(), period)
                return
            lease_id = self.lease_id
            if lease_id is None:
                return
            sent_at = self.clock()

            async def refresh(c, i=lease_id):
                try:
                    return await c.refresh_lease(i)
                except self.etcd.client_error as e:
                    if "not found" in str(e):
                        return None  # etcd expired it: an answer, not an outage
                    raise

            try:
                reply = await self.etcd.call(refresh)
            except (Exception, asyncio.CancelledError) as e:  # the task goes on
                if isinstance(e, asyncio.CancelledError) and not cut_short(e):
                    raise
                if not isinstance(e, EtcdUnavailable):
                    log.error("lease keepalive failed", exc_info=e)
                log.warning("lease keepalive failed (%s); the gate closes %.2f s from now "
                            "unless a keepalive succeeds", e, self.role.lease_time_left_s())
                if self.clock() > self._lease_sent_at + self._lease_ttl:
                    self._lease_gone("etcd unreachable for longer than the lease's TTL")
                    return
                continue
            if reply is None or reply.TTL <= 0:
                self._lease_gone("etcd expired the lease")
                return
            self._lease_sent_at, self._lease_ttl = sent_at, float(reply.TTL)
            self.role.lease_renewed(sent_at, float(reply.TTL))

    def _lease_gone(self, why: str) -> None:
        self.lease_id = None
        self._lease_lost.set()
        if self.role.state == PRIMARY:
            self._fence(why)

    def _fence(self, why: str) -> None:
        # The gate shut at ack_until already (by the clock); fencing makes it final. The
        # monotonic times in these lines are comparable across processes of one host.
        closed_at = min(self.role.ack_until, self.clock())
        self.role.fence()
        self._event("fenced", f"gate_closed_at={closed_at:.6f} now={self.clock():.6f} ({why})")

    # --- the main loop ----------------------------------------------------------------

    async def _run(self) -> None:
        pause = self.ttl_s * RETRY_PAUSE_FRACTION
        keepalive: asyncio.Task | None = None
        try:
            while not self._stop.is_set():
                try:
                    if self.lease_id is not None and (keepalive is None or keepalive.done()):
                        # A lease that nothing renews is as good as gone. What ended the
                        # keepalive is said, for the next time it happens.
                        err = ("no keepalive" if keepalive is None else
                               "its keepalive ended: cancelled" if keepalive.cancelled() else
                               f"its keepalive ended: {keepalive.exception()!r}")
                        self._lease_gone(err)
                    if self.lease_id is None:
                        if keepalive is not None:
                            keepalive.cancel()
                            with contextlib.suppress(asyncio.CancelledError, Exception):
                                await keepalive
                        await self._grant()
                        keepalive = asyncio.create_task(self._keepalive(),
                                                        name="mms-lease-keepalive")
                    if self.role.state == PRIMARY:
                        await self._hold()
                    else:
                        await self._follow_or_campaign()
                except LeaseNotFound as e:  # expired under us: a new lease next round
                    log.warning("leadership: %s; taking a new lease", e)
                    self._lease_gone("etcd: the lease is gone")
                except (Exception, asyncio.CancelledError) as e:
                    # etcd down, a promotion that failed, or a cancellation that was not
                    # this task's (cut_short: a grpc call whose channel closed; before,
                    # it ended this loop for good, and so the node's leadership): try
                    # again.
                    if isinstance(e, asyncio.CancelledError) and not cut_short(e):
                        raise
                    if isinstance(e, (EtcdUnavailable, NodeBusy)):
                        log.warning("leadership: %s", e)
                    else:
                        log.error("leadership: round failed", exc_info=e)
                    if self.role.state == PRIMARY and not self.role.may_acknowledge():
                        self._lease_gone("etcd unreachable; the lease may have expired")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), pause)
        finally:
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await keepalive

    async def _read_leader(self) -> tuple[Leader | None, int, int]:
        """The leader key's value (None if absent), the store's revision, and the id of
        the lease the key is bound to."""
        key = leader_key(self.prefix)
        got = await self.etcd.call(lambda c: c.get(key))
        if got is None:
            return None, 0, 0
        return parse_leader(got.value), int(got.header.revision), int(got.lease)

    async def campaign(self) -> int | None:
        """One try at the leader key: the new epoch if we won, None if someone leads."""
        from aetcd import transactions as tx

        lkey, ekey = leader_key(self.prefix), epoch_key(self.prefix)
        got = await self.etcd.call(lambda c: c.get(ekey))
        current = int(got.value) if got is not None else 0
        mod = int(got.mod_revision) if got is not None else 0
        epoch = current + 1
        value = json.dumps({"name": self.cfg.name, "address": self.role.address,
                            "epoch": epoch}).encode()
        lease_id = self.lease_id
        if lease_id is None:
            return None

        async def txn(c):
            return await c.transaction(
                compare=[c.transactions.create(lkey) == 0, c.transactions.mod(ekey) == mod],
                success=[tx.Put(lkey, value, lease=lease_id), tx.Put(ekey, str(epoch).encode())],
                failure=[])

        self.campaign_sent_at = self.clock()
        won, _ = await self.etcd.call(txn)
        return epoch if won else None

    async def _may_campaign(self) -> bool:
        """Whether this standby campaigns now: not while it is further behind the primary
        than its bound, and not while a peer has applied more (that one should lead, or
        an op only it confirmed would be lost), for at most DEFER_TTLS_MAX TTLs."""
        why = self.node.busy()
        if why:
            self._not_campaigning(f"busy: {why}")
            return False
        why = self.node.lagging()
        if why:
            self._not_campaigning(f"lagging: {why}")
            return False
        got = await self.etcd.call(lambda c: c.get_prefix(nodes_prefix(self.prefix)))
        peers = {}
        for kv in got:
            name = bytes(kv.key)[len(nodes_prefix(self.prefix)):].decode()
            if name != self.cfg.name:
                peers[name] = bytes(kv.value).decode()
        ahead = await self.node.peer_ahead(peers, self.ttl_s * PEER_STATUS_FRACTION)
        if not ahead:
            self._deferred_since = None
            self._not_campaigning_why = ""
            return True
        now = self.clock()
        if self._deferred_since is None:
            self._deferred_since = now
        if now - self._deferred_since >= DEFER_TTLS_MAX * self.ttl_s:
            log.warning("leadership: peer %s is ahead but has not campaigned for %d TTLs; "
                        "campaigning", ahead, DEFER_TTLS_MAX)
            return True
        self._not_campaigning(f"peer {ahead} has applied more")
        return False

    def _not_campaigning(self, why: str) -> None:
        """Said when the reason changes, and again every NOT_CAMPAIGNING_LOG_S while it
        lasts (with the rounds deferred since the last line), never every round."""
        kind = why.split(":")[0]
        now = self.clock()
        self._not_campaigning_rounds += 1
        if (kind != self._not_campaigning_why
                or now - self._not_campaigning_logged_at >= NOT_CAMPAIGNING_LOG_S):
            rounds = self._not_campaigning_rounds
            since = ("" if kind != self._not_campaigning_why else
                     f" (still, {rounds} rounds in {now - self._not_campaigning_logged_at:.1f} s)")
            self._not_campaigning_why = kind
            self._not_campaigning_logged_at = now
            self._not_campaigning_rounds = 0
            self._event("not_campaigning", why + since)

    async def _take_office(self, epoch: int) -> None:
        # Writable only once the node is promoted (a standby first applies all it has);
        # meanwhile it names no leader, so clients pause and try again.
        self.role.become_standby(None)
        try:
            await self.node.promote(epoch, self.promote_timeout_s)
        except NodeBusy as e:
            # Holding the leader key without serving would leave the cluster with no
            # primary for as long as the promotion hangs: another node takes over.
            await self._revoke(f"epoch {epoch} given up: {e}")
            return
        if self.lease_id is None:
            return  # the lease went while promoting: campaign again
        self.role.become_primary(epoch, self._lease_sent_at, self._lease_ttl)
        self._followed = None
        self._event("leader", f"epoch={epoch} address={self.role.address} "
                              f"won_after={self.campaign_sent_at:.6f}")

    async def _follow_or_campaign(self) -> None:
        leader, revision, lease = await self._read_leader()
        if leader is None:
            if not await self._may_campaign():
                await self._wait_leader_change(revision)
                return
            epoch = await self.campaign()
            if epoch is not None:
                await self._take_office(epoch)
            return  # if someone else won between the read and the transaction: follow
        self._deferred_since = None
        if leader.name == self.cfg.name:
            if lease == self.lease_id and lease:
                # Our campaign did win, though its answer was lost (a call timed out and
                # its retry found the key taken): the key and its epoch are ours.
                await self._take_office(leader.epoch)
                return
            # Our own key from a lease of ours that is gone: it expires with it.
            await self._wait_leader_change(revision)
            return
        was_primary = self.role.state != STANDBY
        self.role.become_standby(leader)
        if was_primary:
            await self.node.step_down(leader)
        if self._followed != (leader.address, leader.epoch):
            self._event("standby", f"leader={leader.name} address={leader.address} "
                                   f"epoch={leader.epoch}")
            await self.node.follow(leader, self.follow_timeout_s)
            # After: a follow that failed is tried again in the next round.
            self._followed = (leader.address, leader.epoch)
        await self._wait_leader_change(revision)

    async def _hold(self) -> None:
        """As primary: watch our leader key; if it changes or goes, or the lease goes,
        step down."""
        leader, revision, lease = await self._read_leader()
        if (leader is None or leader.name != self.cfg.name or self.lease_id is None
                or lease != self.lease_id):
            self._fence("the leader key is no longer ours")
            return
        await self._wait_leader_change(revision)

    async def _wait_leader_change(self, revision: int) -> None:
        """Until the leader key changes after revision, the lease goes, or a poll
        interval passes (the caller reads the key again either way)."""
        poll = self.ttl_s * LEADER_POLL_FRACTION
        key = leader_key(self.prefix)
        lost = asyncio.create_task(self._lease_lost.wait())
        stop = asyncio.create_task(self._stop.wait())

        async def watched():
            with contextlib.suppress(Exception):
                await self.etcd.watch_once(key, poll, revision + 1 if revision else None)

        w = asyncio.create_task(watched())
        tasks = {lost, stop, w}
        try:
            await asyncio.wait(tasks, timeout=poll * 2, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            # Bounded: a task that ignores its cancellation must not hold the loop here
            # (the caller reads the key again either way).
            for t in tasks:
                await bounded(t, self.etcd.call_timeout_s)
