"""Targeted plans (定向计划, domain.md §7): a trigger + an audience + actions, with a
holdout control group, run in bounded chunks that are each one admin op, and measured.

A plan (JSON in `plans`, docs/campaigns.md has the user's view):

- trigger: what picks the members at run time, within the audience. `schedule` (every
  member of the audience; a scheduled run's id is the plan's period, so a timer that
  fires twice starts one run), or an event: `birthday` (in `days` days, 0 = today),
  `anniversary` (of the member's card, in `days` days), `level_up` / `first_recharge`
  (within the last `days` days, from the journal), `no_visit` (no swipe for `days`
  days), `coupon_unused` (a coupon, of `template_id` if given, issued at least `days`
  days ago and still unused). Event plans skip a member reached by the same plan within
  `cooldown_days`.
- audience (`resolve_audience`): `members` (explicit ids), `tag` (a manual member tag),
  `filter` (store of enrolment, card level), `response` (reached and redeemed, or
  reached and not, of an earlier run: the follow-up plan), `segment` (a saved segment:
  core.domain.segments.resolve).
- actions for every reached member: `coupon` (one coupon of a template), `points`
  (points with a reason), `notice` (a text to the outbox, `{member_id}`, `{card_no}`
  and `{plan}` filled in), `recharge_bonus` (an offer settled after the recharge),
  `member_price` (a share of the shelf price in bp for `days` days, written into the
  plan card, which the swipe reads: `_give_member_price`).
- holdout_bp: the share (basis points) of the audience that gets nothing: a member is in
  the holdout iff hash(plan id, member id) mod 10,000 < holdout_bp (`in_holdout`), so the
  same member is in or out for every run of the plan.
- budget_fen (face value of the coupons it may issue), quantity (coupons), points_budget
  (points): never exceeded, across every run of the plan, also concurrent ones (each
  chunk is an admin op, and the writer runs one at a time; the counters are in the
  plan's record, changed in the chunk's transaction).

A run (`run_plan`): the start freezes the target and holdout lists (member, card) in
`plan_lists`, in bounded steps (PLAN_RUN_FREEZE ops of at most FREEZE_STEP_PAIRS pairs,
under an attempt number that no later start reuses; then PLAN_RUN_START makes the run:
`_freeze`), so that a start killed midway leaves no list a later start reads, and the
lists it left are swept; then chunk ops (PLAN_RUN_CHUNK) of at most `chunk`
members each act on the next members and write, in the same transaction as the grant,
what each member got to `plan_done` (run, member). A run is keyed by its run id: starting
it again resumes it where its last committed chunk left off, and a chunk's client id is
derived from (run id, cursor), so a retried chunk replays. Nothing is granted twice.

Results (`results`): reached, redeemed (the run's coupons redeemed now), the redemption
rate, the sales and visits of the reached and of the holdout's cards in the window_days
after the start (journal: SWIPE records OK, paid = payable - coupon), the cost (face
value redeemed, points granted and their cost in fen at the offset rate), incremental
sales (reached sales - holdout sales scaled to the reached count, half up) and ROI.
Rates are basis points rounded down (toward minus infinity).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from core.domain import segments
from core.domain.points import OUTBOX_DB
from core.domain.points_admin import REASON_CHARS_MAX, add_points
from core.engine.rollups import journal_with_items
from core.engine.storage import from_be, u32, u64
from core.engine.writer import AdminContext, Engine
from core.idsets import unique_ids
from core.records import (
    CampaignOp,
    CardStatus,
    CouponStatus,
    OpType,
    RecordKind,
    Result,
)
from core.rules import RulesConfig

PLANS_DB = "plans"              # u32 BE plan id -> JSON plan; b"next_id" in PLAN_META_DB
PLAN_META_DB = "plan_meta"      # b"next_id" -> u32 BE; b"attempt" -> u32 BE; freeze states
PLAN_RUNS_DB = "plan_runs"      # run id (UTF-8) -> JSON run state
PLAN_LISTS_DB = "plan_lists"    # run id + 0x00 + u32 BE attempt + b"t"|b"h" + u32 BE chunk -> (member u64, card u64) LE pairs
PLAN_DONE_DB = "plan_done"      # run id + 0x00 + u64 BE member -> DONE (what the member got)
PLAN_REACHED_DB = "plan_reached"  # u32 BE plan id + u64 BE member -> u64 BE time last reached
ATTEMPT_KEY = b"attempt"        # PLAN_META_DB: the last attempt number given to a start
FREEZE_PREFIX = b"freeze\x00"   # PLAN_META_DB: + run id -> JSON freeze state of its start
DBS = (PLANS_DB, PLAN_META_DB, PLAN_RUNS_DB, PLAN_LISTS_DB, PLAN_DONE_DB, PLAN_REACHED_DB)

# Limits, each with its reason.
PLAN_NAME_CHARS_MAX = 80
RUN_ID_CHARS_MAX = 64
NOTICE_CHARS_MAX = 500          # an SMS of a few parts
ACTIONS_MAX = 8
# Members named inline by a `members` audience (a request of 100,000 ids is 800 KB).
AUDIENCE_IDS_MAX = 100_000
# A run's audience, frozen in one start op: 10,000,000 pairs are 160 MB of lists.
AUDIENCE_MAX = 10_000_000
# Members per chunk op: 500 keep one chunk's op to about 8 ms, so the swipes queued
# behind it wait little; 2,000 ran 1.8x faster and let the swipes' p99 grow up to 5x
# (bench/bench_plans.py, docs/benchmarks.md).
CHUNK_DEFAULT = 500
CHUNK_MAX = 20_000
# List pairs per op of a run's start (PLAN_RUN_FREEZE: plans._freeze; also per sweep of
# a given-up start's lists): 16,384 pairs are 256 KB, about one 500-member chunk's commit
# (~300 KB), where the whole start of 1,000,000 members was one 16 MB transaction. At
# least one chunk's worth when a run's chunk is larger.
FREEZE_STEP_PAIRS = 16_384
DAYS_MAX = 3_660
WINDOW_DAYS_DEFAULT = 30
BP = 10_000
JOURNAL_PAGE = 50_000           # records per read when results scan the journal

TRIGGERS = ("schedule", "birthday", "anniversary", "level_up", "first_recharge", "no_visit",
            "coupon_unused")
EVENT_COOLDOWN_DEFAULT = {"birthday": 300, "anniversary": 300}
AUDIENCES = ("members", "tag", "filter", "response", "segment")
ACTIONS = ("coupon", "points", "notice", "recharge_bonus", "member_price")
TIERS_MAX = 16
STATES = ("running", "done", "paused")

# What a member of a run got: card, coupon id (0 = none), points, flags.
DONE = struct.Struct(">QQqB")
DONE_BE = np.dtype([("card", ">u8"), ("coupon_id", ">u8"), ("points", ">i8"), ("flags", "u1")])
assert DONE_BE.itemsize == DONE.size
F_COUPON, F_POINTS, F_NOTICE, F_NO_BUDGET, F_NO_CARD, F_OFFER, F_PRICE = 1, 2, 4, 8, 16, 32, 64
F_REACHED = F_COUPON | F_POINTS | F_NOTICE | F_OFFER | F_PRICE
# A member price's share of the shelf price: at least 10% paid (a typo of 100 bp is a
# 99% discount), and below 100% (10,000 would be no price at all).
PRICE_BP_MIN = 1_000
PRICE_DAYS_MAX = 366
PAIR = np.dtype([("member", "<u8"), ("card", "<u8")])


class PlanError(ValueError):
    """A plan or run that cannot be accepted; reason is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- rounding, explicit -----------------------------------------------------------------


def rate_bp(num: int, den: int) -> int:
    """num/den in basis points, rounded down (toward minus infinity); 0 when den is 0."""
    return (int(num) * BP) // int(den) if den else 0


def scale_half_up(value: int, num: int, den: int) -> int:
    """value * num / den rounded half up (half away from zero for negatives); 0 if den
    is 0."""
    if not den:
        return 0
    v, n, d = int(value), int(num), int(den)
    neg = (v * n < 0) != (d < 0)
    q = (2 * abs(v * n) + abs(d)) // (2 * abs(d))
    return -q if neg else q


# --- the holdout --------------------------------------------------------------------------

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def holdout_bucket(plan_id: int, member_ids: np.ndarray) -> np.ndarray:
    """Each member's bucket 0..9999 for this plan: a hash of (plan id, member id)."""
    ids = np.asarray(member_ids, dtype=np.uint64)
    salt = _mix(np.array([int(plan_id) * 0x9E3779B97F4A7C15 % 2**64], dtype=np.uint64))
    return (_mix(ids ^ salt[0]) % np.uint64(BP)).astype(np.int64)


def in_holdout(plan_id: int, member_ids: np.ndarray, holdout_bp: int) -> np.ndarray:
    return holdout_bucket(plan_id, member_ids) < int(holdout_bp)


# --- validation -------------------------------------------------------------------------


def _int(doc: dict, key: str, lo: int, hi: int, default: int | None = None) -> int:
    v = doc.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise PlanError("PLAN_INVALID", f"{key} must be an integer {lo}..{hi}")
    return v


def _ints(v: object, key: str, hi: int = 2**63 - 1) -> list[int]:
    if not isinstance(v, (list, tuple)) or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 < x <= hi for x in v):
        raise PlanError("PLAN_INVALID", f"{key} must be a list of positive integers")
    return sorted(set(v))


def validate_audience(a: object) -> dict:
    if not isinstance(a, dict) or a.get("kind") not in AUDIENCES:
        raise PlanError("AUDIENCE_INVALID", f"audience.kind is one of {AUDIENCES}")
    kind = a["kind"]
    if kind == "members":
        ids = _ints(a.get("member_ids", []), "audience.member_ids")
        if not 1 <= len(ids) <= AUDIENCE_IDS_MAX:
            raise PlanError("AUDIENCE_INVALID", f"1..{AUDIENCE_IDS_MAX} member ids")
        return {"kind": kind, "member_ids": ids}
    if kind == "tag":
        tag = a.get("tag")
        if not isinstance(tag, str) or not 1 <= len(tag.strip()) <= 40:
            raise PlanError("AUDIENCE_INVALID", "audience.tag is a tag of 1..40 characters")
        return {"kind": kind, "tag": tag.strip()}
    if kind == "filter":
        stores = _ints(a.get("stores", []), "audience.stores", 2**32 - 1)
        levels = a.get("levels", [])
        if not isinstance(levels, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                                   and 0 <= x < 255 for x in levels):
            raise PlanError("AUDIENCE_INVALID", "audience.levels are levels 0..254")
        return {"kind": kind, "stores": stores, "levels": sorted(set(levels))}
    if kind == "response":
        run_id = a.get("run_id")
        if not isinstance(run_id, str) or not valid_run_id(run_id):
            raise PlanError("AUDIENCE_INVALID", "audience.run_id names an earlier run")
        if not isinstance(a.get("redeemed"), bool):
            raise PlanError("AUDIENCE_INVALID", "audience.redeemed is true (reached and "
                            "redeemed) or false (reached and did not)")
        return {"kind": kind, "run_id": run_id, "redeemed": a["redeemed"]}
    seg = a.get("segment")
    if not isinstance(seg, (int, str)) or isinstance(seg, bool) or seg in ("", 0):
        raise PlanError("AUDIENCE_INVALID", "audience.segment names a saved segment")
    return {"kind": kind, "segment": seg}


def validate_plan(doc: object) -> dict:
    """The plan a request describes, normalised; PlanError names what is wrong."""
    if not isinstance(doc, dict):
        raise PlanError("PLAN_INVALID", "a plan is a JSON object")
    name = doc.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= PLAN_NAME_CHARS_MAX:
        raise PlanError("PLAN_INVALID", f"name: 1..{PLAN_NAME_CHARS_MAX} characters")
    trig = doc.get("trigger", {"kind": "schedule"})
    if not isinstance(trig, dict) or trig.get("kind") not in TRIGGERS:
        raise PlanError("TRIGGER_INVALID", f"trigger.kind is one of {TRIGGERS}")
    t = {"kind": trig["kind"]}
    if t["kind"] == "schedule":
        t["every_days"] = _int(trig, "every_days", 0, DAYS_MAX, 0)
        t["start_s"] = _int(trig, "start_s", 0, 2**40, 0)
    else:
        t["days"] = _int(trig, "days", 0, DAYS_MAX, 0)
        t["cooldown_days"] = _int(trig, "cooldown_days", 0, DAYS_MAX,
                                  EVENT_COOLDOWN_DEFAULT.get(t["kind"], 30))
        if t["kind"] == "coupon_unused":
            t["template_id"] = _int(trig, "template_id", 0, 2**32 - 1, 0)
    actions = doc.get("actions")
    if not isinstance(actions, list) or not 1 <= len(actions) <= ACTIONS_MAX:
        raise PlanError("ACTIONS_INVALID", f"1..{ACTIONS_MAX} actions")
    acts, kinds = [], set()
    for a in actions:
        if not isinstance(a, dict) or a.get("kind") not in ACTIONS or a["kind"] in kinds:
            raise PlanError("ACTIONS_INVALID", f"each action is one of {ACTIONS}, once")
        kinds.add(a["kind"])
        if a["kind"] == "coupon":
            acts.append({"kind": "coupon", "template_id": _int(a, "template_id", 1, 2**32 - 1)})
        elif a["kind"] == "points":
            reason = a.get("reason")
            if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= REASON_CHARS_MAX:
                raise PlanError("ACTIONS_INVALID", "points need a reason")
            acts.append({"kind": "points", "points": _int(a, "points", 1, 10**6),
                         "reason": reason.strip()})
        elif a["kind"] == "recharge_bonus":
            tiers, prev = a.get("tiers"), 0
            if not isinstance(tiers, list) or not 1 <= len(tiers) <= TIERS_MAX:
                raise PlanError("ACTIONS_INVALID", f"a recharge bonus has 1..{TIERS_MAX} tiers")
            out = []
            for tier in tiers:
                if (not isinstance(tier, list) or len(tier) != 2 or not all(
                        isinstance(x, int) and not isinstance(x, bool) for x in tier)
                        or not prev < tier[0] <= 10**10 or not 0 <= tier[1] <= 10**10):
                    raise PlanError("ACTIONS_INVALID", "tiers are [min_pay_fen, bonus_fen], "
                                    "rising by min_pay_fen")
                out.append([tier[0], tier[1]])
                prev = tier[0]
            acts.append({"kind": "recharge_bonus", "tiers": out,
                         "days": _int(a, "days", 1, 366),
                         "budget_fen": _int(a, "budget_fen", 0, 10**13, 0)})
        elif a["kind"] == "member_price":
            acts.append({"kind": "member_price",
                         "price_bp": _int(a, "price_bp", PRICE_BP_MIN, BP - 1),
                         "days": _int(a, "days", 1, PRICE_DAYS_MAX)})
        else:
            text = a.get("text")
            if not isinstance(text, str) or not 1 <= len(text) <= NOTICE_CHARS_MAX:
                raise PlanError("ACTIONS_INVALID", f"a notice's text is 1..{NOTICE_CHARS_MAX} characters")
            acts.append({"kind": "notice", "text": text,
                         "channel": str(a.get("channel", "sms"))[:16]})
    return {"name": name.strip(), "trigger": t, "audience": validate_audience(doc.get("audience")),
            "actions": acts,
            "store_id": _int(doc, "store_id", 0, 2**32 - 1, 0),
            "holdout_bp": _int(doc, "holdout_bp", 0, BP - 1, 0),
            "budget_fen": _int(doc, "budget_fen", 0, 10**13, 0),
            "quantity": _int(doc, "quantity", 0, 10**9, 0),
            "points_budget": _int(doc, "points_budget", 0, 10**13, 0),
            "window_days": _int(doc, "window_days", 1, 366, WINDOW_DAYS_DEFAULT)}


def valid_run_id(run_id: object) -> bool:
    return (isinstance(run_id, str) and 1 <= len(run_id) <= RUN_ID_CHARS_MAX
            and run_id.isprintable() and "\x00" not in run_id)


# --- plans ------------------------------------------------------------------------------


def _plan(ctx: AdminContext, plan_id: int) -> dict:
    raw = ctx.get(PLANS_DB, u32(plan_id))
    if raw is None:
        ctx.reject(Result.NOT_FOUND, f"plan {plan_id} not found", "PLAN_NOT_FOUND")
    return json.loads(raw)


def create_plan(engine: Engine, doc: dict, client_id: bytes, *, operator_id: int = 0,
                store_id: int = 0) -> Future:
    """A new plan (validated; PlanError before anything is queued). value: the plan."""
    plan = validate_plan(doc)
    engine.ensure_dbs(DBS)

    def build(ctx: AdminContext):
        for act in plan["actions"]:
            if act["kind"] == "coupon" and ctx.rules_config.coupon_template(act["template_id"]) is None:
                ctx.reject(Result.NOT_FOUND, f"coupon template {act['template_id']} not found",
                           "TEMPLATE_NOT_FOUND")
        raw = ctx.get(PLAN_META_DB, b"next_id")
        pid = from_be(raw) if raw else 1
        ctx.put(PLAN_META_DB, b"next_id", u32(pid + 1))
        rec = {"plan_id": pid, **plan, "status": "active", "created_s": ctx.now,
               "operator_id": ctx.operator_id,
               "spent": {"coupons": 0, "face_fen": 0, "points": 0, "notices": 0}}
        ctx.put(PLANS_DB, u32(pid), json.dumps(rec).encode())
        ctx.emit(CampaignOp.PLAN_PUT, None, amount_fen=pid)
        ctx.detail = {"plan_id": pid, "after": plan}
        return rec

    return engine.admin(client_id, CampaignOp.PLAN_PUT, build, operator_id=operator_id,
                        store_id=store_id)


def set_plan_status(engine: Engine, plan_id: int, status: str, client_id: bytes, *,
                    operator_id: int = 0) -> Future:
    """Pause ("paused": no run starts, running runs stop at their next chunk) or resume
    ("active") a plan."""
    if status not in ("active", "paused"):
        raise PlanError("STATUS_INVALID", "status is active or paused")
    engine.ensure_dbs(DBS)

    def build(ctx: AdminContext):
        plan = _plan(ctx, int(plan_id))
        before = plan["status"]
        plan["status"] = status
        ctx.put(PLANS_DB, u32(int(plan_id)), json.dumps(plan).encode())
        ctx.emit(CampaignOp.PLAN_STATUS, None, amount_fen=int(plan_id))
        ctx.detail = {"plan_id": int(plan_id), "before": {"status": before},
                      "after": {"status": status}}
        return {"plan_id": int(plan_id), "status": status}

    return engine.admin(client_id, CampaignOp.PLAN_STATUS, build, operator_id=operator_id)


def _read(engine: Engine, db: str, key: bytes) -> bytes | None:
    engine.ensure_dbs(DBS)
    with engine.store.read() as txn:
        return txn.get(key, db=engine.store.db[db])


def get_plan(engine: Engine, plan_id: int) -> dict | None:
    raw = _read(engine, PLANS_DB, u32(int(plan_id))) if 0 < int(plan_id) < 2**32 else None
    return json.loads(raw) if raw else None


def list_plans(engine: Engine, store_id: int | None = None) -> list[dict]:
    """Every plan, or (store_id given) only the plans of that store."""
    engine.ensure_dbs(DBS)
    out = []
    with engine.store.read() as txn:
        for _k, v in txn.cursor(db=engine.store.db[PLANS_DB]):
            p = json.loads(v)
            if store_id is None or p["store_id"] == store_id:
                out.append(p)
    return out


def get_run(engine: Engine, run_id: str) -> dict | None:
    raw = _read(engine, PLAN_RUNS_DB, run_id.encode()) if valid_run_id(run_id) else None
    return json.loads(raw) if raw else None


# --- the audience ---------------------------------------------------------------------------


def _tz_date(t_s: int, tz_offset_s: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(t_s + tz_offset_s, datetime.UTC).date()


def _member_snapshot(members) -> dict:
    # The member store's in-memory index (status, home store, birthday yyyymmdd, tags).
    return members._cols.snapshot()


def _run_members(engine: Engine, run_id: str, redeemed: bool) -> np.ndarray:
    """Members reached by an earlier run, who redeemed its coupon (or did not)."""
    if get_run(engine, run_id) is None:
        raise PlanError("RUN_NOT_FOUND", f"run {run_id!r} not found")
    done = run_done(engine, run_id)
    reached = done[(done["flags"] & F_REACHED) != 0]
    hit = _redeemed_mask(engine, reached["coupon_id"])
    return unique_ids(reached["member"][hit if redeemed else ~hit])


def resolve_audience(engine: Engine, audience: dict, members=None) -> np.ndarray:
    """Sorted unique member ids (uint64) of an audience."""
    kind = audience["kind"]
    if kind == "members":
        return unique_ids(audience["member_ids"])
    if kind == "response":
        return _run_members(engine, audience["run_id"], audience["redeemed"])
    if kind == "segment":
        # With the member store every condition is available (profile too); the engine
        # alone answers card, behaviour and rule-tag conditions (segments.resolve).
        try:
            ids = segments.resolve(members if members is not None else engine, audience["segment"])
        except segments.SegmentError as e:
            raise PlanError("SEGMENT_INVALID", f"segment {audience['segment']!r}: {e.message}") from e
        return unique_ids(ids)
    if kind == "tag" or audience.get("stores"):
        if members is None:
            raise PlanError("MEMBERS_REQUIRED", f"a {kind} audience needs the member store")
    if kind == "tag":
        from core.domain.members import MemberQuery

        ids = members.search_ids(MemberQuery(tags=[audience["tag"]], limit=1))
        return np.asarray(ids, dtype=np.uint64)
    # filter: store of enrolment and card level (either may be empty = any)
    cards = engine.cards_snapshot()
    live = (cards["member_id"] > 0) & (cards["status"] != CardStatus.CANCELLED)
    if audience["levels"]:
        live &= np.isin(cards["level"], audience["levels"])
    ids = unique_ids(cards["member_id"][live])
    if audience["stores"]:
        snap = _member_snapshot(members)
        rows = ids.astype(np.int64) - 1
        ok = (rows < snap["n"]) & (rows >= 0)
        keep = np.zeros(len(ids), bool)
        keep[ok] = np.isin(snap["store"][rows[ok]], audience["stores"]) & (snap["status"][rows[ok]] != 0)
        ids = ids[keep]
    return ids


def plan_cards(engine: Engine, member_ids: np.ndarray) -> np.ndarray:
    """Each member's card for plans: the lowest-numbered ACTIVE card of the member that
    is not a supplementary card; 0 when the member has none."""
    cards = engine.cards_snapshot()
    ok = (cards["status"] == CardStatus.ACTIVE) & (cards["primary_card_no"] == 0) & (cards["member_id"] > 0)
    mids, nos = cards["member_id"][ok].astype(np.uint64), cards["card_no"][ok].astype(np.uint64)
    order = np.lexsort((nos, mids))
    mids, nos = mids[order], nos[order]
    first = np.ones(len(mids), bool)
    first[1:] = mids[1:] != mids[:-1]
    mids, nos = mids[first], nos[first]
    ids = np.asarray(member_ids, dtype=np.uint64)
    pos = np.searchsorted(mids, ids)
    pos_ok = pos < len(mids)
    hit = np.zeros(len(ids), bool)
    hit[pos_ok] = mids[pos[pos_ok]] == ids[pos_ok]
    out = np.zeros(len(ids), np.uint64)
    out[hit] = nos[pos[hit]]
    return out


def _journal_cards(engine: Engine, since_s: int, want: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Card numbers of the journal's card records with time_s >= since_s that want()
    keeps (a numpy mask over a page of records)."""
    lo, hi = 1, int(engine.stats()["last_seq"]) + 1
    # The journal's times rise with seq: find the first record at or after since_s.
    while lo < hi:
        mid = (lo + hi) // 2
        rec = engine.journal_record(mid)
        if rec is None or int(rec["time_s"]) < since_s:
            lo = mid + 1
        else:
            hi = mid
    found = []
    seq = lo
    while True:
        recs = engine.journal(seq, JOURNAL_PAGE)
        if not len(recs):
            break
        m = ((recs["kind"] == RecordKind.KIND_CARD) & (recs["result"] == Result.OK)
             & (recs["time_s"] >= since_s) & want(recs))
        found.append(recs["card_no"][m].astype(np.uint64))
        seq = int(recs["seq"][-1]) + 1
    return unique_ids(np.concatenate(found)) if found else np.zeros(0, np.uint64)


def _members_of_cards(engine: Engine, card_nos: np.ndarray) -> np.ndarray:
    cards = engine.cards_snapshot()
    m = np.isin(cards["card_no"], card_nos) & (cards["member_id"] > 0)
    return unique_ids(cards["member_id"][m])


def trigger_members(engine: Engine, trigger: dict, now_s: int, members=None) -> np.ndarray | None:
    """The members an event trigger picks now (None: a schedule, which picks everyone)."""
    kind = trigger["kind"]
    if kind == "schedule":
        return None
    days = trigger["days"]
    tz = engine.rules.tz_offset_s
    cards = engine.cards_snapshot()
    live = (cards["member_id"] > 0) & (cards["status"] == CardStatus.ACTIVE)
    if kind == "birthday":
        if members is None:
            raise PlanError("MEMBERS_REQUIRED", "a birthday trigger needs the member store")
        day = _tz_date(now_s + days * 86_400, tz)
        snap = _member_snapshot(members)
        mmdd = snap["birthday"] % 10_000
        return (np.flatnonzero((snap["status"] != 0) & (mmdd == day.month * 100 + day.day)) + 1).astype(np.uint64)
    if kind == "anniversary":
        day = _tz_date(now_s + days * 86_400, tz)
        issued = cards["issued_at_s"][live].astype(np.int64)
        dates = [_tz_date(int(t), tz) for t in issued.tolist()]
        hit = np.array([d.month == day.month and d.day == day.day and d.year < day.year
                        for d in dates], bool)
        return unique_ids(cards["member_id"][live][hit]) if len(hit) else np.zeros(0, np.uint64)
    if kind == "no_visit":
        last = cards["last_visit_s"].astype(np.int64)
        hit = live & (last > 0) & (last <= now_s - days * 86_400)
        return unique_ids(cards["member_id"][hit])
    if kind == "coupon_unused":
        table = engine.coupons_snapshot()
        m = ((table["coupon_status"] == CouponStatus.COUPON_ISSUED)
             & (table["valid_from_s"].astype(np.int64) <= now_s - days * 86_400)
             & (table["valid_to_s"].astype(np.int64) > now_s))
        if trigger.get("template_id"):
            m &= table["template_id"] == trigger["template_id"]
        return _members_of_cards(engine, table["card_no"][m].astype(np.uint64))
    since = now_s - max(days, 1) * 86_400
    if kind == "level_up":
        nos = _journal_cards(engine, since, lambda r: r["after"]["level"] > r["level_before"])
    else:  # first_recharge: the recharge that made the card's recharge total its own amount
        nos = _journal_cards(engine, since, lambda r: (r["op_type"] == OpType.RECHARGE)
                             & (r["after"]["recharge_total_fen"] == r["amount_fen"]))
    return _members_of_cards(engine, nos)


# --- runs -------------------------------------------------------------------------------


def _cid(*parts: object) -> bytes:
    h = hashlib.blake2b(digest_size=16, person=b"mms-plan-run")
    for p in parts:
        h.update(str(p).encode() + b"\x00")
    return h.digest()


def _list_key(run_id: str, which: bytes, chunk: int, attempt: int | None = None) -> bytes:
    """A list value's key: under the run's attempt (a run started before attempts has
    none: its lists were frozen in one op)."""
    return run_id.encode() + b"\x00" + (u32(attempt) if attempt else b"") + which + u32(chunk)


def scheduled_run_id(plan: dict, now_s: int) -> str:
    """A schedule plan's run id for now: its period number, so one run per period."""
    t = plan["trigger"]
    every = t.get("every_days") or 0
    period = (now_s - t.get("start_s", 0)) // (every * 86_400) if every else 0
    return f"plan{plan['plan_id']}-p{max(period, 0)}"


def start_run(engine: Engine, plan_id: int, run_id: str, *, members=None, chunk: int = CHUNK_DEFAULT,
              operator_id: int = 0, store_id: int = 0, now_s: int | None = None) -> Future:
    """Freeze a run's audience and start it. A run id already started answers with the
    run as it is (the start does nothing again). The audience is resolved here, in the
    caller's thread; the writer only stores it, in bounded steps (`_freeze`), each a
    background op paced like a chunk, and the run exists once the last (PLAN_RUN_START)
    commits. Returns a Future of the run, resolved when it has started (this call
    waits for the steps)."""
    if not valid_run_id(run_id):
        raise PlanError("RUN_ID_INVALID", f"a run id is 1..{RUN_ID_CHARS_MAX} printable characters")
    if not 1 <= int(chunk) <= CHUNK_MAX:
        raise PlanError("CHUNK_INVALID", f"chunk is 1..{CHUNK_MAX} members")
    plan = get_plan(engine, plan_id)
    if plan is None:
        raise PlanError("PLAN_NOT_FOUND", f"plan {plan_id} not found")
    out: Future = Future()
    existing = get_run(engine, run_id)
    if existing is not None:
        out.set_result(existing)
        return out
    now = engine.clock() if now_s is None else int(now_s)
    ids = resolve_audience(engine, plan["audience"], members)
    picked = trigger_members(engine, plan["trigger"], now, members)
    if picked is not None:
        ids = np.intersect1d(unique_ids(ids), unique_ids(picked), assume_unique=True)
    if members is not None and len(ids):
        # Only active members (a frozen or cancelled membership gets nothing).
        snap = _member_snapshot(members)
        rows = ids.astype(np.int64) - 1
        known = rows < snap["n"]
        keep = ~known
        keep[known] = snap["status"][rows[known]] == 1
        ids = ids[keep]
    if len(ids) > AUDIENCE_MAX:
        raise PlanError("AUDIENCE_TOO_LARGE", f"{len(ids)} members; at most {AUDIENCE_MAX}")
    n_audience = len(ids)
    cards = plan_cards(engine, ids)
    n_no_card = int(np.count_nonzero(cards == 0))
    ids, cards = ids[cards != 0], cards[cards != 0]
    hold = in_holdout(plan["plan_id"], ids, plan["holdout_bp"])
    target = np.zeros(int(np.count_nonzero(~hold)), PAIR)
    target["member"], target["card"] = ids[~hold], cards[~hold]
    holdout = np.zeros(int(np.count_nonzero(hold)), PAIR)
    holdout["member"], holdout["card"] = ids[hold], cards[hold]
    engine.ensure_dbs(DBS)
    try:
        run = _freeze_once(engine, int(plan_id), run_id, target, holdout, n_audience, n_no_card,
                           int(chunk), operator_id, store_id)
    except BaseException as e:  # noqa: BLE001 (handed to the caller)
        out.set_exception(e)
        return out
    out.set_result(run)
    return out


# --- the start in bounded steps ----------------------------------------------------------
#
# A run's lists are written by PLAN_RUN_FREEZE ops of at most FREEZE_STEP_PAIRS pairs each
# (a begin that takes an attempt number, the lists in slices, a sweep of an abandoned
# attempt's lists), then PLAN_RUN_START makes the run. Each is a background op, paced
# like a chunk (EngineConfig.background_share_bp), so no transaction the swipes wait
# behind holds the whole audience (16 MB at 1,000,000 members). The lists are keyed
# under the attempt (`_list_key`), and attempt numbers are never reused (PLAN_META_DB
# `attempt`): a start killed between two steps leaves lists no later attempt reads; the
# next start of the run id sweeps them, FREEZE_STEP_PAIRS pairs per op, before it
# freezes its own (`sweep_abandoned` sweeps those of run ids never started again).

_LIVE_LOCK = threading.Lock()
# The run ids whose start is in progress in this process, per engine: their freeze
# state is not abandoned (one engine writes a data directory, and only its process).
_LIVE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _prefixed(cur, prefix: bytes):
    """(key, value) of a cursor's keys that start with prefix, in order."""
    if cur.set_range(prefix):
        for k, v in cur:
            if not k.startswith(prefix):
                return
            yield k, v


def _freeze_key(run_id: str) -> bytes:
    return FREEZE_PREFIX + run_id.encode()


def _freeze_once(engine: Engine, plan_id: int, run_id: str, target: np.ndarray,
                 holdout: np.ndarray, n_audience: int, n_no_card: int, size: int,
                 operator_id: int, store_id: int) -> dict:
    """The run, started by this caller, or by another caller of this process that was
    starting it (this one waits for it, then takes the run it left, or starts anew)."""
    while True:
        run = get_run(engine, run_id)
        if run is not None:
            return run
        with _LIVE_LOCK:
            live = _LIVE.setdefault(engine, {})
            other = live.get(run_id)
            if other is None:
                mine = live[run_id] = threading.Event()
                break
        other.wait()
    try:
        return _freeze(engine, plan_id, run_id, target, holdout, n_audience, n_no_card, size,
                       operator_id, store_id)
    finally:
        with _LIVE_LOCK:
            _LIVE.get(engine, {}).pop(run_id, None)
        mine.set()


def _freeze_op(engine: Engine, client: tuple, build: Callable[[AdminContext], object],
               operator_id: int, store_id: int, op: int = CampaignOp.PLAN_RUN_FREEZE):
    r = engine.admin(_cid(*client), op, build, operator_id=operator_id, store_id=store_id,
                     background=True).result()
    if r.code != Result.OK:
        raise PlanError(r.reason, r.detail)
    return r


def _freeze_state(ctx: AdminContext, run_id: str, attempt: int) -> dict:
    """Inside a freeze op: the run's freeze state, which must still be this attempt's."""
    raw = ctx.get(PLAN_META_DB, _freeze_key(run_id))
    st = json.loads(raw) if raw is not None else None
    if st is None or st["attempt"] != attempt:
        ctx.reject(Result.FAILED_PRECONDITION, f"run {run_id!r}: attempt {attempt} was given up",
                   "ATTEMPT_SUPERSEDED")
    return st


def _sweep_step(ctx: AdminContext, run_id: str, st: dict) -> int:
    """Delete the first abandoned attempt's lists, at most FREEZE_STEP_PAIRS pairs of them
    (and at least one value); the attempt leaves `stale` once none is left. The pairs
    deleted."""
    att = st["stale"][0]
    prefix = run_id.encode() + b"\x00" + u32(att)
    db = ctx.db(PLAN_LISTS_DB)
    cur = ctx.txn.cursor(db=db)
    keys, pairs, more = [], 0, False
    for k, v in _prefixed(cur, prefix):
        if keys and pairs >= FREEZE_STEP_PAIRS:
            more = True
            break
        keys.append(bytes(k))
        pairs += len(v) // PAIR.itemsize
    for k in keys:
        ctx.txn.delete(k, db=db)
    if not more:
        st["stale"].pop(0)
    return pairs


def _append_list(ctx: AdminContext, run_id: str, attempt: int, which: bytes, n_before: int,
                 pairs: np.ndarray, size: int) -> None:
    """Append pairs to a list stored as values of `size` pairs (the last may be short:
    it is read and written again with the new pairs after it)."""
    k, r = divmod(n_before, size)
    if r:
        head = np.frombuffer(ctx.get(PLAN_LISTS_DB, _list_key(run_id, which, k, attempt)), PAIR)
        pairs = np.concatenate([head, pairs])
    raw, w = pairs.tobytes(), size * PAIR.itemsize
    ctx.txn.cursor(db=ctx.db(PLAN_LISTS_DB)).putmulti(
        [(_list_key(run_id, which, k + j, attempt), raw[j * w:(j + 1) * w])
         for j in range(-(-len(pairs) // size))])


def _freeze(engine: Engine, plan_id: int, run_id: str, target: np.ndarray, holdout: np.ndarray,
            n_audience: int, n_no_card: int, size: int, operator_id: int, store_id: int) -> dict:
    """The start's steps, each one background op, in this order: begin (a new attempt;
    an attempt found unfinished becomes stale), the sweeps of the stale attempts' lists,
    the target list then the holdout in slices, and PLAN_RUN_START (the run)."""
    def begin(ctx: AdminContext):
        if ctx.get(PLAN_RUNS_DB, run_id.encode()) is not None:
            ctx.reject(Result.ALREADY_EXISTS, f"run {run_id!r} exists", "RUN_EXISTS")
        plan_now = _plan(ctx, plan_id)
        if plan_now["status"] != "active":
            ctx.reject(Result.FAILED_PRECONDITION, f"plan {plan_id} is {plan_now['status']}",
                       "PLAN_PAUSED")
        raw = ctx.get(PLAN_META_DB, ATTEMPT_KEY)
        attempt = (from_be(raw) if raw else 0) + 1
        ctx.put(PLAN_META_DB, ATTEMPT_KEY, u32(attempt))
        raw = ctx.get(PLAN_META_DB, _freeze_key(run_id))
        old = json.loads(raw) if raw is not None else {"attempt": 0, "stale": []}
        stale = old["stale"] + ([old["attempt"]] if old["attempt"] else [])
        st = {"plan_id": plan_id, "attempt": attempt, "chunk": size, "n_t": 0, "n_h": 0,
              "n_cooldown": 0, "stale": stale}
        ctx.put(PLAN_META_DB, _freeze_key(run_id), json.dumps(st).encode())
        ctx.emit(CampaignOp.PLAN_RUN_FREEZE, None, amount_fen=attempt)
        ctx.detail = {"run_id": run_id, "plan_id": plan_id, "attempt": attempt, "step": "begin",
                      "stale": stale}
        return st

    try:
        st = _freeze_op(engine, ("freeze", run_id, "begin", os.urandom(8).hex()), begin,
                        operator_id, store_id).value
    except PlanError as e:
        if e.reason == "RUN_EXISTS":
            return get_run(engine, run_id)
        raise
    attempt, step = st["attempt"], 0

    def op(build: Callable[[AdminContext], object]):
        nonlocal step
        step += 1
        return _freeze_op(engine, ("freeze", run_id, attempt, step), build, operator_id,
                          store_id).value

    def sweep(ctx: AdminContext):
        st = _freeze_state(ctx, run_id, attempt)
        att = st["stale"][0]
        n = _sweep_step(ctx, run_id, st)
        ctx.put(PLAN_META_DB, _freeze_key(run_id), json.dumps(st).encode())
        ctx.emit(CampaignOp.PLAN_RUN_FREEZE, None, amount_fen=n)
        ctx.detail = {"run_id": run_id, "attempt": attempt, "step": "sweep", "swept_attempt": att,
                      "pairs": n}
        return st

    while st["stale"]:
        st = op(sweep)

    def put(which: bytes, pairs: np.ndarray):
        def build(ctx: AdminContext):
            st = _freeze_state(ctx, run_id, attempt)
            got = pairs
            if which == b"t":
                # Event plans skip the members this plan reached within its cooldown.
                cool = _plan(ctx, plan_id)["trigger"].get("cooldown_days", 0)
                if cool and len(got):
                    keep = np.ones(len(got), bool)
                    for i, m in enumerate(got["member"].tolist()):
                        last = ctx.get(PLAN_REACHED_DB, u32(plan_id) + u64(m))
                        if last is not None and ctx.now - from_be(last) < cool * 86_400:
                            keep[i] = False
                    st["n_cooldown"] += int(np.count_nonzero(~keep))
                    got = got[keep]
            n_key = "n_t" if which == b"t" else "n_h"
            if len(got):
                _append_list(ctx, run_id, attempt, which, st[n_key], got, size)
            st[n_key] += len(got)
            ctx.put(PLAN_META_DB, _freeze_key(run_id), json.dumps(st).encode())
            ctx.emit(CampaignOp.PLAN_RUN_FREEZE, None, amount_fen=len(got))
            ctx.detail = {"run_id": run_id, "attempt": attempt, "step": which.decode(),
                          "pairs": len(got)}
            return st
        return build

    # Slices of whole list values (a multiple of the run's chunk), so that only the
    # cooldown's gaps make a value written twice.
    per = max(1, FREEZE_STEP_PAIRS // size) * size
    for which, pairs in ((b"t", target), (b"h", holdout)):
        for k in range(0, len(pairs), per):
            op(put(which, pairs[k:k + per]))

    def seal(ctx: AdminContext):
        if ctx.get(PLAN_RUNS_DB, run_id.encode()) is not None:
            ctx.reject(Result.ALREADY_EXISTS, f"run {run_id!r} exists", "RUN_EXISTS")
        st = _freeze_state(ctx, run_id, attempt)
        plan_now = _plan(ctx, plan_id)
        if plan_now["status"] != "active":
            ctx.reject(Result.FAILED_PRECONDITION, f"plan {plan_id} is {plan_now['status']}",
                       "PLAN_PAUSED")
        n_t = st["n_t"]
        if any(a["kind"] == "coupon" for a in plan_now["actions"]):
            # Room for the run's coupons now: the chunks then never double the coupon
            # tables midway (a copy of every row while the swipes wait).
            engine.reserve_coupons(n_t)
        seq = ctx.emit(CampaignOp.PLAN_RUN_START, None, amount_fen=n_t)
        run = {"run_id": run_id, "plan_id": plan_id, "state": "running" if n_t else "done",
               "started_s": ctx.now, "finished_s": 0 if n_t else ctx.now, "first_seq": seq,
               "chunk": size, "cursor": 0, "chunks_done": 0, "steps": 0, "attempt": attempt,
               "n_audience": n_audience, "n_no_card": n_no_card, "n_cooldown": st["n_cooldown"],
               "n_target": n_t, "n_holdout": st["n_h"],
               "reached": 0, "coupons": 0, "face_fen": 0, "points": 0, "notices": 0,
               "no_budget": 0, "no_card": 0, "operator_id": ctx.operator_id}
        ctx.put(PLAN_RUNS_DB, run_id.encode(), json.dumps(run).encode())
        ctx.delete(PLAN_META_DB, _freeze_key(run_id))
        ctx.detail = {"run_id": run_id, "plan_id": plan_id, "targets": n_t,
                      "holdout": st["n_h"], "audience": n_audience, "attempt": attempt}
        return run

    try:
        r = _freeze_op(engine, ("start", run_id, attempt), seal, operator_id, store_id,
                       CampaignOp.PLAN_RUN_START)
    except PlanError as e:
        if e.reason == "RUN_EXISTS":
            return get_run(engine, run_id)
        raise
    return get_run(engine, run_id) if r.replayed else r.value


def sweep_abandoned(engine: Engine, *, operator_id: int = 0, ops_max: int | None = None) -> int:
    """Sweep the lists of starts that were given up (killed between two freeze steps)
    and whose run id was not started again: every freeze state of a run id no caller of
    this process is starting. Bounded: at most FREEZE_STEP_PAIRS pairs per op, and at
    most ops_max ops (None: until none is left). Returns the ops taken."""
    engine.ensure_dbs(DBS)
    found = []
    with engine.store.read() as txn:
        for k, v in _prefixed(txn.cursor(db=engine.store.db[PLAN_META_DB]), FREEZE_PREFIX):
            found.append((bytes(k[len(FREEZE_PREFIX):]).decode(), json.loads(v)["attempt"]))
    taken = 0
    for run_id, seen in found:
        with _LIVE_LOCK:
            if run_id in _LIVE.get(engine, {}):
                continue

        def sweep(ctx: AdminContext, run_id=run_id, seen=seen):
            raw = ctx.get(PLAN_META_DB, _freeze_key(run_id))
            st = json.loads(raw) if raw is not None else None
            # A start of the run id may have begun since it was seen: then it is its.
            if st is None or st["attempt"] not in (seen, 0):
                ctx.reject(Result.FAILED_PRECONDITION, f"run {run_id!r} is being started",
                           "ATTEMPT_SUPERSEDED")
            if st["attempt"]:
                st["stale"].append(st["attempt"])
                st["attempt"] = 0
            n = _sweep_step(ctx, run_id, st) if st["stale"] else 0
            if st["stale"]:
                ctx.put(PLAN_META_DB, _freeze_key(run_id), json.dumps(st).encode())
            else:
                ctx.delete(PLAN_META_DB, _freeze_key(run_id))
            ctx.emit(CampaignOp.PLAN_RUN_FREEZE, None, amount_fen=n)
            ctx.detail = {"run_id": run_id, "step": "sweep", "pairs": n}
            return bool(st["stale"])

        while ops_max is None or taken < ops_max:
            r = engine.admin(_cid("sweep", run_id, os.urandom(8).hex()), CampaignOp.PLAN_RUN_FREEZE,
                             sweep, operator_id=operator_id, background=True).result()
            taken += 1
            if r.code != Result.OK or not r.value:
                break
            seen = 0
    return taken


def _template_room(ctx: AdminContext, template_id: int) -> tuple[int, int]:
    """(coupons the template may still issue, face of one) under its own limits."""
    tpl = ctx.rules_config.coupon_template(template_id)
    if tpl is None:
        return 0, 0
    raw = ctx.get("coupon_stats", u32(template_id))
    issued, face = (from_be(raw[:8]), from_be(raw[8:])) if raw else (0, 0)
    room = 2**62
    if tpl.total_quantity:
        room = min(room, tpl.total_quantity - issued)
    if tpl.budget_fen and tpl.face_fen():
        room = min(room, (tpl.budget_fen - face) // tpl.face_fen())
    return max(room, 0), tpl.face_fen()


def member_price_wins(old_bp: int, old_until_s: int, new_bp: int, new_until_s: int,
                      now_s: int) -> bool:
    """Whether a plan's member price replaces the one a card holds: always when the card
    has none running; else the lower price wins, and at the same price the later end."""
    if old_bp == 0 or old_until_s <= now_s:
        return True
    return new_bp < old_bp or (new_bp == old_bp and new_until_s > old_until_s)


def _give_member_price(ctx: AdminContext, plan_id: int, act: dict, started_s: int,
                       card_nos: np.ndarray) -> None:
    """Set the plan's member price on each card, valid from the run's start for the
    action's days (PLAN_MEMBER_PRICE records: the after-image holds it, so the swipe
    reads it from the card without any lookup). A card holding a better running price
    keeps it; the member still counts as reached (they have that price)."""
    bp, until = act["price_bp"], started_s + act["days"] * 86_400
    if until <= ctx.now:
        return          # a run resumed after the window ended: the price would be dead
    for no in card_nos.tolist():
        card = ctx.card(int(no))
        if not member_price_wins(int(card["plan_price_bp"]), int(card["plan_price_until_s"]),
                                 bp, until, ctx.now):
            continue
        card["plan_price_bp"], card["plan_price_plan"], card["plan_price_until_s"] = bp, plan_id, until
        ctx.emit(CampaignOp.PLAN_MEMBER_PRICE, card, amount_fen=bp)


def step_run(engine: Engine, run_id: str, *, operator_id: int = 0, store_id: int = 0,
             step: int = 0) -> Future:
    """One chunk of a run (PLAN_RUN_CHUNK): the next members from the run's cursor, as
    stored. step (the run's steps so far, as the caller read it) only names the client
    id, so two callers sending the same step apply it once. value: the run after it."""

    def build(ctx: AdminContext):
        raw = ctx.get(PLAN_RUNS_DB, run_id.encode())
        if raw is None:
            ctx.reject(Result.NOT_FOUND, f"run {run_id!r} not found", "RUN_NOT_FOUND")
        run = json.loads(raw)
        if run["state"] == "done":
            ctx.reject(Result.FAILED_PRECONDITION, f"run {run_id!r} is done", "RUN_DONE")
        plan = _plan(ctx, run["plan_id"])
        run["steps"] = run.get("steps", 0) + 1
        if plan["status"] != "active":
            run["state"] = "paused"
            ctx.put(PLAN_RUNS_DB, run_id.encode(), json.dumps(run).encode())
            ctx.emit(CampaignOp.PLAN_RUN_CHUNK, None, amount_fen=0)
            ctx.detail = {"run_id": run_id, "paused": True}
            return run
        run["state"] = "running"
        k = run["cursor"] // run["chunk"]
        key = _list_key(run_id, b"t", k, run.get("attempt"))
        pairs = np.frombuffer(ctx.get(PLAN_LISTS_DB, key) or b"", PAIR)
        pairs = pairs[run["cursor"] - k * run["chunk"]:]
        seq = ctx.emit(CampaignOp.PLAN_RUN_CHUNK, None, amount_fen=len(pairs))
        n = len(pairs)
        flags = np.zeros(n, np.uint8)
        coupon_ids = np.zeros(n, np.uint64)
        points = np.zeros(n, np.int64)
        # The cursor and the members' done records commit together, so the members
        # after the cursor are exactly those not handled yet.
        todo = np.ones(n, bool)
        flags[ctx.card_statuses(pairs["card"]) != CardStatus.ACTIVE] |= F_NO_CARD
        ok = todo & (flags == 0)
        spent = plan["spent"]
        for act in plan["actions"]:
            idx = np.flatnonzero(ok)
            if act["kind"] == "coupon":
                room, face = _template_room(ctx, act["template_id"])
                if plan["quantity"]:
                    room = min(room, plan["quantity"] - spent["coupons"])
                if plan["budget_fen"] and face:
                    room = min(room, (plan["budget_fen"] - spent["face_fen"]) // face)
                room = max(room, 0)
                give, short = idx[:room], idx[room:]
                flags[short] |= F_NO_BUDGET
                if len(give):
                    ids = engine.put_coupons(ctx, act["template_id"], pairs["card"][give].copy())
                    coupon_ids[give] = ids
                    flags[give] |= F_COUPON
                    spent["coupons"] += len(give)
                    spent["face_fen"] += len(give) * face
                    run["coupons"] += len(give)
                    run["face_fen"] += len(give) * face
            elif act["kind"] == "recharge_bonus":
                # An offer: the bonus of a recharge in the offer's days, credited by
                # core.domain.campaigns.settle_recharge_campaign("run:<run id>").
                flags[idx] |= F_OFFER
                run["offers"] = run.get("offers", 0) + len(idx)
            elif act["kind"] == "member_price":
                _give_member_price(ctx, plan["plan_id"], act, run["started_s"],
                                   pairs["card"][idx])
                flags[idx] |= F_PRICE
                run["prices"] = run.get("prices", 0) + len(idx)
            elif act["kind"] == "points":
                pts = act["points"]
                room = len(idx) if not plan["points_budget"] else max(
                    0, (plan["points_budget"] - spent["points"]) // pts)
                give, short = idx[:room], idx[room:]
                flags[short] |= F_NO_BUDGET
                for i in give.tolist():
                    card = ctx.card(int(pairs["card"][i]))
                    add_points(card, pts, ctx.now, ctx.rules_config)
                    ctx.emit(CampaignOp.PLAN_RUN_CHUNK, card, points_delta=pts)
                points[give] = pts
                flags[give] |= F_POINTS
                spent["points"] += len(give) * pts
                run["points"] += len(give) * pts
            else:
                for j, i in enumerate(idx.tolist()):
                    text = (act["text"].replace("{member_id}", str(int(pairs["member"][i])))
                            .replace("{card_no}", str(int(pairs["card"][i])))
                            .replace("{plan}", plan["name"]))
                    notice = {"kind": "plan", "plan_id": plan["plan_id"], "run_id": run_id,
                              "member_id": int(pairs["member"][i]),
                              "card_no": int(pairs["card"][i]), "channel": act["channel"],
                              "text": text}
                    ctx.put(OUTBOX_DB, u64(seq) + u32(j), json.dumps(notice, ensure_ascii=False).encode())
                flags[idx] |= F_NOTICE
                spent["notices"] += len(idx)
                run["notices"] += len(idx)
        prefix = run_id.encode() + b"\x00"
        cool = bool(plan["trigger"].get("cooldown_days"))
        pid, now = u32(plan["plan_id"]), u64(ctx.now)
        txn, done_db, reached_db = ctx.txn, ctx.db(PLAN_DONE_DB), ctx.db(PLAN_REACHED_DB)
        # The done records in one putmulti (DONE's layout as a numpy row): the chunk is
        # one admin op the swipes wait behind, so its Python per member stays small.
        rows = np.zeros(n, DONE_BE)
        rows["card"], rows["coupon_id"], rows["points"], rows["flags"] = (
            pairs["card"], coupon_ids, points, flags)
        mkeys = pairs["member"].astype(">u8").tobytes()
        vals = rows.tobytes()
        w = DONE.size
        txn.cursor(db=done_db).putmulti(
            [(prefix + mkeys[8 * i:8 * i + 8], vals[w * i:w * i + w]) for i in range(n)])
        if cool:
            hit = np.flatnonzero(flags & F_REACHED).tolist()
            txn.cursor(db=reached_db).putmulti([(pid + mkeys[8 * i:8 * i + 8], now) for i in hit])
        reached = int(np.count_nonzero(todo & ((flags & F_REACHED) != 0)))
        run["reached"] += reached
        run["no_budget"] += int(np.count_nonzero(todo & ((flags & F_NO_BUDGET) != 0)
                                                 & ((flags & F_REACHED) == 0)))
        run["no_card"] += int(np.count_nonzero(todo & ((flags & F_NO_CARD) != 0)))
        run["cursor"] += n
        run["chunks_done"] += 1
        if run["cursor"] >= run["n_target"]:
            run["state"], run["finished_s"] = "done", ctx.now
        ctx.put(PLAN_RUNS_DB, run_id.encode(), json.dumps(run).encode())
        ctx.put(PLANS_DB, u32(plan["plan_id"]), json.dumps(plan).encode())
        ctx.detail = {"run_id": run_id, "plan_id": plan["plan_id"], "members": n,
                      "reached": reached, "cursor": run["cursor"], "state": run["state"]}
        return run

    # A chunk yields to the swipes: the writer runs it once no hot batch is queued (or
    # after EngineConfig.background_wait_max_ms), so a run does not stand in the till's way.
    return engine.admin(_cid("chunk", run_id, step), CampaignOp.PLAN_RUN_CHUNK, build,
                        operator_id=operator_id, store_id=store_id, background=True)


def run_plan(engine: Engine, plan_id: int, run_id: str, *, members=None, chunk: int = CHUNK_DEFAULT,
             operator_id: int = 0, store_id: int = 0, max_chunks: int | None = None,
             pause_s: float = 0.0) -> dict:
    """Start (or resume) a run and drive it chunk by chunk until it is done, paused, or
    max_chunks chunks have been taken. Returns the run as it is then. Safe to call again
    with the same run id after a crash or from two callers at once. pause_s: a wait
    between chunks (seconds), leaving the writer and the cores to the swipes."""
    run = start_run(engine, plan_id, run_id, members=members, chunk=chunk,
                    operator_id=operator_id, store_id=store_id).result()
    taken = 0
    while run["state"] != "done" and (max_chunks is None or taken < max_chunks):
        r = step_run(engine, run_id, operator_id=operator_id, store_id=store_id,
                     step=run.get("steps", 0)).result()
        if r.code != Result.OK:
            if r.reason == "RUN_DONE":
                return get_run(engine, run_id)
            raise PlanError(r.reason, r.detail)
        run = get_run(engine, run_id) if r.replayed else r.value
        taken += 1
        if pause_s > 0 and run["state"] == "running":
            time.sleep(pause_s)
        if run["state"] == "paused":
            break
    return run


def resume_run(engine: Engine, run_id: str, **kw) -> dict:
    run = get_run(engine, run_id)
    if run is None:
        raise PlanError("RUN_NOT_FOUND", f"run {run_id!r} not found")
    return run_plan(engine, run["plan_id"], run_id, **kw)


# --- results ---------------------------------------------------------------------------


DONE_ROW = np.dtype([("member", "<u8"), ("card", "<u8"), ("coupon_id", "<u8"),
                     ("points", "<i8"), ("flags", "u1")])


def run_done(engine: Engine, run_id: str) -> np.ndarray:
    """What every member of the run handled so far got (DONE_ROW rows, by member id)."""
    engine.ensure_dbs(DBS)
    prefix = run_id.encode() + b"\x00"
    rows = []
    with engine.store.read() as txn:
        for k, v in _prefixed(txn.cursor(db=engine.store.db[PLAN_DONE_DB]), prefix):
            rows.append((from_be(k[len(prefix):]), *DONE.unpack(v)))
    return np.array(rows, dtype=DONE_ROW) if rows else np.zeros(0, DONE_ROW)


def run_list(engine: Engine, run_id: str, which: bytes) -> np.ndarray:
    """A started run's target (b"t") or holdout (b"h") list, as frozen."""
    engine.ensure_dbs(DBS)
    run = get_run(engine, run_id)
    if run is None:
        return np.zeros(0, PAIR)
    prefix = _list_key(run_id, which, 0, run.get("attempt"))[:-4]
    parts = []
    with engine.store.read() as txn:
        for k, v in _prefixed(txn.cursor(db=engine.store.db[PLAN_LISTS_DB]), prefix):
            if len(k) != len(prefix) + 4:
                break
            parts.append(np.frombuffer(bytes(v), PAIR))
    return np.concatenate(parts) if parts else np.zeros(0, PAIR)


def _redeemed_mask(engine: Engine, coupon_ids: np.ndarray) -> np.ndarray:
    table = engine.coupons_snapshot()
    ids = np.asarray(coupon_ids, dtype=np.uint64)
    if not len(ids) or not len(table):
        return np.zeros(len(ids), bool)
    order = np.argsort(table["coupon_id"])
    sorted_ids = table["coupon_id"][order]
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
    found = sorted_ids[pos] == ids
    status = table["coupon_status"][order][pos]
    return found & (ids != 0) & (status == CouponStatus.COUPON_REDEEMED)


def _sales(engine: Engine, first_seq: int, until_s: int, groups: list[np.ndarray]
           ) -> list[tuple[int, int]]:
    """(sales fen, visits) of each group of cards: SWIPE records OK from first_seq with
    time_s < until_s; paid = payable - coupon (what the member paid after discounts)."""
    sums = [[0, 0] for _ in groups]
    sorted_groups = [np.sort(g.astype(np.uint64)) for g in groups]
    seq = first_seq
    while True:
        recs = engine.journal(seq, JOURNAL_PAGE)
        if not len(recs):
            break
        m = ((recs["op_type"] == OpType.SWIPE) & (recs["result"] == Result.OK)
             & (recs["kind"] == RecordKind.KIND_CARD) & (recs["time_s"] < until_s))
        sel = recs[m]
        paid = sel["payable_fen"].astype(np.int64) - sel["coupon_fen"].astype(np.int64)
        for g, acc in zip(sorted_groups, sums, strict=True):
            hit = np.isin(sel["card_no"], g, assume_unique=False)
            acc[0] += int(paid[hit].sum())
            acc[1] += int(np.count_nonzero(hit))
        seq = int(recs["seq"][-1]) + 1
        if int(recs["time_s"][-1]) >= until_s:
            break
    return [(a, b) for a, b in sums]


class _RulesAt:
    """The rules of each version a journal record names (the `rules` database keeps every
    version), as the swipe priced with them: level discounts, rounding, sku prices."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.cache = engine, {}

    def __call__(self, version: int) -> RulesConfig:
        got = self.cache.get(version)
        if got is None:
            raw = _read(self.engine, "rules", u32(version))
            got = RulesConfig.from_json(raw) if raw is not None else self.engine.rules
            self.cache[version] = got
        return got


def _payable(rules: RulesConfig, level: int, discount_bp: int, amount: int,
             lines: np.ndarray | None) -> int:
    """What a member swipe of `amount` pays at `discount_bp` in place of the level's
    discount: the fast path's do_swipe / line_payable, line by line when it had lines
    (a sku's member price at the level stands, never above the shelf price)."""
    def disc(fen: int) -> int:
        prod = fen * discount_bp
        return prod // BP if rules.rounding == "floor" else (prod + BP // 2) // BP

    if lines is None or not len(lines):
        return disc(amount)
    prices = dict(rules.member_prices)
    total = 0
    for it in lines.tolist():
        sku, fen, qty = int(it[0]), int(it[1]), int(it[2])
        price = prices.get(sku, ())[level] if sku in prices else 0
        if price > 0:
            total += fen if qty == 0 or price > fen // qty else price * qty
        else:
            total += disc(fen)
    return total


def member_price_given(engine: Engine, run: dict, plan: dict, cards: np.ndarray) -> tuple[int, int]:
    """(fen the run's member price gave away, swipes it priced): over the journal from
    the run's start, each OK swipe of one of `cards` whose card held this run's price
    (after-image: plan_price_plan = the plan, plan_price_until_s = the run's end of the
    price) at a time before that end and below the level's discount pays
    payable(level discount) - payable(as journalled), recomputed with the rules version
    and the line items the swipe was priced with, less the share of it refunds gave back
    (as the fast path gives back points and spend: floor(refunded * given / paid)), for
    refunds up to the price's end plus the plan's window_days.
    A swipe whose journalled payable is not the member price's (say the membership had
    ended: shelf price) counts nothing."""
    act = next((a for a in plan["actions"] if a["kind"] == "member_price"), None)
    if act is None or not len(cards):
        return 0, 0
    until = run["started_s"] + act["days"] * 86_400
    scan_until = until + plan["window_days"] * 86_400
    cards = np.sort(np.asarray(cards, dtype=np.uint64))
    rules_at = _RulesAt(engine)
    given: dict[int, tuple[int, int]] = {}      # swipe seq -> (fen given, paid)
    refunded: dict[int, int] = {}               # swipe seq -> fen refunded of it
    store = engine.store
    with store.read() as txn:
        for block, items in journal_with_items(store, txn, max(0, run["first_seq"] - 1)):
            if int(block["time_s"][0]) >= scan_until:
                break
            ok = block["result"] == Result.OK
            ref = block[ok & (block["op_type"] == OpType.REFUND) & (block["kind"] == RecordKind.KIND_CARD)]
            for sw, fen in zip(ref["ref_seq"].tolist(), ref["payable_fen"].tolist(), strict=True):
                refunded[sw] = refunded.get(sw, 0) + fen
            m = (ok & (block["op_type"] == OpType.SWIPE) & (block["kind"] == RecordKind.KIND_CARD)
                 & (block["after"]["plan_price_plan"] == plan["plan_id"])
                 & (block["after"]["plan_price_until_s"] == until) & (block["time_s"] < until)
                 & np.isin(block["card_no"], cards))
            for rec in block[m]:
                rules = rules_at(int(rec["rules_version"]))
                level = min(int(rec["level_before"]), len(rules.levels) - 1)
                level_bp = rules.levels[level].discount_bp
                bp = int(rec["after"]["plan_price_bp"])
                if bp >= level_bp:
                    continue
                seq = int(rec["seq"])
                lines = None if items is None else items["item"][items["seq"] == seq]
                amount = int(rec["amount_fen"])
                if _payable(rules, level, bp, amount, lines) != int(rec["payable_fen"]):
                    continue
                given[seq] = (_payable(rules, level, level_bp, amount, lines) - int(rec["payable_fen"]),
                              int(rec["payable_fen"]) - int(rec["coupon_fen"]))
    total = swipes = 0
    for seq, (fen, paid) in given.items():
        back = refunded.get(seq)
        if back is not None:
            # Refunds give back their share of it as of everything else the swipe took
            # (do_refund: floor(refunded * fen / paid), the whole once all is refunded);
            # a swipe coupons paid entirely is reversed whole by its one refund.
            fen -= fen * back // paid if paid > 0 else fen
        if fen:
            total += fen
            swipes += 1
    return total, swipes


def results(engine: Engine, run_id: str) -> dict:
    """The run's results, all integers (docs/campaigns.md defines each)."""
    run = get_run(engine, run_id)
    if run is None:
        raise PlanError("RUN_NOT_FOUND", f"run {run_id!r} not found")
    plan = get_plan(engine, run["plan_id"])
    done = run_done(engine, run_id)
    reached = done[(done["flags"] & F_REACHED) != 0]
    redeemed = _redeemed_mask(engine, reached["coupon_id"])
    table = engine.coupons_snapshot()
    red_ids = reached["coupon_id"][redeemed]
    face_redeemed = int(table["redeemed_fen"][np.isin(table["coupon_id"], red_ids)].astype(np.int64).sum()) \
        if len(red_ids) else 0
    holdout = run_list(engine, run_id, b"h")
    until = run["started_s"] + plan["window_days"] * 86_400
    (r_sales, r_visits), (h_sales, h_visits) = _sales(
        engine, run["first_seq"], until, [reached["card"], holdout["card"]])
    n_r, n_h = len(reached), len(holdout)
    points = int(reached["points"].sum())
    per_yuan = engine.rules.offset_points_per_yuan or 100
    points_cost = points * 100 // per_yuan
    price_fen, price_swipes = member_price_given(
        engine, run, plan, reached["card"][(reached["flags"] & F_PRICE) != 0])
    cost = face_redeemed + points_cost + price_fen
    expected = scale_half_up(h_sales, n_r, n_h)
    incremental = r_sales - expected if n_h else 0
    return {"run_id": run_id, "plan_id": run["plan_id"], "state": run["state"],
            "audience": run["n_audience"], "targets": run["n_target"], "holdout": n_h,
            "reached": n_r, "redeemed": int(np.count_nonzero(redeemed)),
            "redemption_rate_bp": rate_bp(int(np.count_nonzero(redeemed)), n_r),
            "coupons_issued": int(np.count_nonzero(reached["coupon_id"])),
            "reached_sales_fen": r_sales, "reached_visits": r_visits,
            "holdout_sales_fen": h_sales, "holdout_visits": h_visits,
            "window_days": plan["window_days"],
            "face_redeemed_fen": face_redeemed, "points_granted": points,
            "points_cost_fen": points_cost, "member_price_fen": price_fen,
            "member_price_swipes": price_swipes, "cost_fen": cost,
            "holdout_sales_scaled_fen": expected if n_h else 0,
            "incremental_sales_fen": incremental,
            "roi_bp": rate_bp(incremental - cost, cost) if n_h else 0,
            "no_budget": run["no_budget"], "no_card": run["no_card"] + run["n_no_card"]}


RESULT_FIELDS = ("audience", "targets", "holdout", "reached", "redeemed", "redemption_rate_bp",
                 "coupons_issued", "reached_sales_fen", "reached_visits", "holdout_sales_fen",
                 "holdout_visits", "window_days", "face_redeemed_fen", "points_granted",
                 "points_cost_fen", "member_price_fen", "member_price_swipes", "cost_fen",
                 "holdout_sales_scaled_fen",
                 "incremental_sales_fen", "roi_bp", "no_budget", "no_card")

__all__ = ["CampaignOp", "PlanError", "create_plan", "get_plan", "get_run", "in_holdout",
           "list_plans", "rate_bp", "results", "resume_run", "run_plan", "scale_half_up",
           "set_plan_status", "start_run", "step_run", "validate_plan"]
