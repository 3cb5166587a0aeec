"""The server's timed work, on the leader only: scheduled and event-triggered plans, the
referral and recharge-campaign settles, and the rule-tag re-evaluation.

One asyncio task (`Scheduler.start`) wakes every `tick_s` seconds and runs one `tick()`:
its jobs one after another, each in a worker thread (off the event loop, so the till's
path never waits on it), and each bounded (SCHEDULED_RUNS_MAX plan runs, SCHEDULED_SETTLES_MAX
settle ops per campaign a tick). A tick on a node that does not lead (the role of
server/rpc/role.py: a standby or a fenced node, or a primary whose lease may have run
out) does nothing and says so; the leader's next tick does the work.

Every job is an idempotent admin op with a deterministic id, so a restart, a retry, a
second tick or a failover in the middle never applies anything twice:

- a plan with a `schedule` trigger runs as `plans.scheduled_run_id` (`plan<id>-p<period>`,
  one run per `every_days`; with `every_days` 0 once, `plan<id>-p0`, when it has a
  `start_s` and that time has come; without either it is run by hand only);
- a plan with an event trigger (birthday, anniversary, level_up, first_recharge,
  no_visit, coupon_unused) runs daily as `campaigns.daily_run_id` (`plan<id>-YYYY-MM-DD`);
  a run id that exists is resumed (a run cut off midway finishes), one that is done is
  skipped;
- a settle's client id is a hash of (job, campaign, the cursor it starts from): the
  same cursor replays the same op, a moved cursor is a new settle;
- the lists a plan run's start left when it was given up between two of its steps
  (`plans.sweep_abandoned`, at most SCHEDULED_SWEEP_OPS_MAX ops a tick);
- rule tags keep Segments.evaluation_id (the inputs' seq and the day) and run every
  `rule_tags_every_s`.

The clock is injectable (`clock`, unix seconds; the engine's by default) and `tick()` is
what the loop calls, so a test moves the clock and awaits a tick: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable

from core.domain import campaigns, plans
from core.records import Result
from server.rpc.constants import (
    RULE_TAG_EVAL_INTERVAL_S,
    SCHEDULED_RUNS_MAX,
    SCHEDULED_SETTLES_MAX,
    SCHEDULED_SWEEP_OPS_MAX,
    SCHEDULER_SETTLE_AFTER_S,
    SCHEDULER_TICK_S,
)

log = logging.getLogger("mms.scheduler")

EVENT_TRIGGERS = ("birthday", "anniversary", "level_up", "first_recharge", "no_visit",
                  "coupon_unused")


def settle_client_id(*parts: object) -> bytes:
    """A scheduled settle's client id: the same job from the same cursor is the same op."""
    h = hashlib.blake2b(digest_size=16, person=b"mms-scheduled")
    for p in parts:
        h.update(str(p).encode() + b"\x00")
    return h.digest()


def due_run_id(plan: dict, now_s: int, tz_offset_s: int) -> str | None:
    """The run a plan is due for now, or None (not active, or run by hand only)."""
    if plan.get("status") != "active":
        return None
    t = plan["trigger"]
    if t["kind"] == "schedule":
        if now_s < t.get("start_s", 0):
            return None
        if not t.get("every_days") and not t.get("start_s"):
            return None
        return plans.scheduled_run_id(plan, now_s)
    if t["kind"] in EVENT_TRIGGERS:
        return campaigns.daily_run_id(plan["plan_id"], now_s, tz_offset_s)
    return None


class Scheduler:
    def __init__(self, engine, *, members=None, segments: Callable | None = None, role=None,
                 clock: Callable[[], int] | None = None, tick_s: float = SCHEDULER_TICK_S,
                 rule_tags_every_s: float = RULE_TAG_EVAL_INTERVAL_S,
                 chunk: int = plans.CHUNK_DEFAULT) -> None:
        # segments: a callable giving the core.domain.segments.Segments (made on first use)
        self.engine, self.members, self.segments, self.role = engine, members, segments, role
        self._clock = clock  # None: the engine's (whichever engine serves now)
        self.tick_s = tick_s
        self.rule_tags_every_s = rule_tags_every_s
        self.chunk = chunk
        self._tags_at: float | None = None       # the clock when rule tags last ran (or the first tick)
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()              # one tick at a time, loop or test
        self.ticks = 0
        self.ticked = asyncio.Event()            # set after each tick of the loop (tests)
        self.last: dict = {}

    def clock(self) -> int:
        return self._clock() if self._clock is not None else self.engine.clock()

    # --- the loop -----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and self.tick_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._every(), name="mms-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self.tick()
            self.ticked.set()

    def leads(self) -> bool:
        return self.role is None or self.role.may_acknowledge()

    async def tick(self) -> dict:
        """One pass over every job. Returns what it did: {"leader": bool, "runs": [...],
        "settles": [...], "rule_tags": n or None, "errors": [...]}."""
        async with self._lock:
            out: dict = {"leader": self.leads(), "runs": [], "settles": [], "rule_tags": None,
                         "errors": []}
            if out["leader"]:
                now = int(self.clock())
                for name, job in (("plans", self._plans), ("settles", self._settles),
                                  ("rule_tags", self._rule_tags)):
                    if not self.leads():
                        out["leader"] = False
                        break
                    try:
                        await asyncio.to_thread(job, now, out)
                    except Exception as e:  # noqa: BLE001 (logged; the next tick retries)
                        log.exception("scheduled %s failed", name)
                        out["errors"].append(f"{name}: {e}")
            self.ticks += 1
            self.last = out
            return out

    # --- the jobs (worker threads) ----------------------------------------------------------

    def _plans(self, now: int, out: dict) -> None:
        # The lists of starts given up midway (a crash between two freeze steps) whose
        # run id was not started again: bounded ops, the next tick goes on.
        swept = plans.sweep_abandoned(self.engine, ops_max=SCHEDULED_SWEEP_OPS_MAX)
        if swept:
            log.info("swept abandoned plan-run lists in %d ops", swept)
        tz = self.engine.rules.tz_offset_s
        started = 0
        for plan in plans.list_plans(self.engine):
            run_id = due_run_id(plan, now, tz)
            if run_id is None:
                continue
            run = plans.get_run(self.engine, run_id)
            if run is not None and run["state"] == "done":
                continue
            if started >= SCHEDULED_RUNS_MAX:
                break          # the next tick takes the rest
            started += 1
            try:
                run = plans.run_plan(self.engine, plan["plan_id"], run_id, members=self.members,
                                     chunk=self.chunk)
                out["runs"].append({"run_id": run_id, "state": run["state"],
                                    "reached": run["reached"]})
            except plans.PlanError as e:
                # A plan that cannot run (a trigger needing the member store, a missing
                # segment): logged each tick, nothing applied.
                log.warning("scheduled run %s of plan %s cannot run: %s (%s)", run_id,
                            plan["plan_id"], e.reason, e)
                out["errors"].append(f"{run_id}: {e.reason}")

    def _settle(self, kind: str, name: str, cursor_key: bytes, fn, out: dict) -> None:
        for _ in range(SCHEDULED_SETTLES_MAX):
            cursor = campaigns._cursor(self.engine, cursor_key)
            cid = settle_client_id(kind, name, cursor)
            r = fn(cid).result()
            if r.code != Result.OK:
                log.warning("scheduled %s settle %s refused: %s (%s)", kind, name, r.reason, r.detail)
                out["errors"].append(f"{kind} {name}: {r.reason}")
                return
            v = r.value or {}
            out["settles"].append({"kind": kind, "name": name, "replayed": bool(r.replayed),
                                   "count": int(v.get("rewarded", v.get("credited", 0)))})
            if r.replayed or not v.get("more"):
                return

    def _settles(self, now: int, out: dict) -> None:
        eng = self.engine
        ref = campaigns.get_campaign(eng, "referral")
        if ref is not None and ref.get("active", True):
            self._settle("referral", "", b"ref_cursor",
                         lambda cid: campaigns.settle_referrals(eng, cid), out)
        for name, to_s in self._recharge_campaigns():
            if now >= to_s + SCHEDULER_SETTLE_AFTER_S:
                continue       # ended, and its last recharges are settled
            self._settle("recharge", name, b"xc" + name.encode(),
                         lambda cid, name=name: campaigns.settle_recharge_campaign(eng, name, cid), out)

    def _recharge_campaigns(self) -> list[tuple[str, int]]:
        """(name, end) of every recharge campaign and every plan run's recharge-bonus
        offer ("run:<run id>")."""
        eng = self.engine
        eng.ensure_dbs([campaigns.CAMPAIGNS_DB, *plans.DBS])
        found = []
        with eng.store.read() as txn:
            cur = txn.cursor(db=eng.store.db[campaigns.CAMPAIGNS_DB])
            prefix = b"cfg:recharge:"
            if cur.set_range(prefix):
                for k, v in cur:
                    if not k.startswith(prefix):
                        break
                    cfg = json.loads(v)
                    if cfg.get("active", True):
                        found.append((bytes(k[len(prefix):]).decode(), int(cfg["to_s"])))
            offers = {}
            for _k, v in txn.cursor(db=eng.store.db[plans.PLANS_DB]):
                p = json.loads(v)
                act = next((a for a in p["actions"] if a["kind"] == "recharge_bonus"), None)
                if act is not None:
                    offers[p["plan_id"]] = act["days"]
            if offers:
                for k, v in txn.cursor(db=eng.store.db[plans.PLAN_RUNS_DB]):
                    run = json.loads(v)
                    if run["plan_id"] in offers:
                        found.append(("run:" + bytes(k).decode(),
                                      run["started_s"] + offers[run["plan_id"]] * 86_400))
        return found

    def _rule_tags(self, now: int, out: dict) -> None:
        if self.segments is None or self.rule_tags_every_s <= 0:
            return
        if self._tags_at is None:
            self._tags_at = now          # the first run one interval after the start
            return
        if now - self._tags_at < self.rule_tags_every_s:
            return
        res = self.segments().evaluate_all()
        self._tags_at = now
        out["rule_tags"] = len(res)
