"""The built-in campaigns (domain.md §7), on the machinery of core/domain/plans.py and
the admin context: each grant is one admin op, journalled, audited, idempotent by its
client id, and recorded in `campaigns` in the same transaction, so it happens once.

- birthday gift and membership anniversary: plans with a `birthday` / `anniversary`
  trigger (`birthday_plan`, `anniversary_plan` build them; a daily run with the day as
  run id: `daily_run_id`).
- sign-in points (签到): `sign_in` gives a member's card the configured points once per
  day (the chain's time zone) per member; a second sign-in that day is refused
  (SIGNED_IN_TODAY) and grants nothing.
- referral reward (推荐有礼): the referral is the member's `referrer_id` (core/domain/members/,
  set at enrolment). `settle_referrals` reads the journal after its cursor for swipes;
  the first committed swipe of a member with a referrer earns the referrer's card the
  configured points, once per referred member, ever.
- recharge campaign (充值活动): bonus tiers valid in a window, for chosen stores and card
  levels (empty = all). `settle_recharge_campaign` reads the journal after the
  campaign's cursor and credits each qualifying recharge's bonus (stored value, bonus
  part) once, within the campaign's budget. The bonus follows the recharge (it is not
  applied inside the swipe loop, so the till's hot path is unchanged).

Settings: `put_campaign(kind, config)`; kinds "sign_in" {points}, "referral" {points},
"recharge:<name>" {tiers [[min_pay_fen, bonus_fen], ...], from_s, to_s, stores, levels,
budget_fen}.
"""

from __future__ import annotations

import json
from concurrent.futures import Future

import numpy as np

from core.domain.plans import F_OFFER, _tz_date, get_plan, get_run, plan_cards, run_done
from core.domain.points_admin import add_points
from core.engine.storage import from_be, u64
from core.engine.writer import AdminContext, Engine
from core.idsets import isin_ids
from core.records import CampaignOp, CardStatus, OpType, RecordKind, Result

CAMPAIGNS_DB = "campaigns"
# keys: b"cfg:" + kind -> JSON settings; b"s" + u64 member + yyyymmdd (8 ASCII) -> u64 seq
# (signed in); b"f" + u64 member -> u64 seq of the member's first swipe seen;
# b"ref_cursor" -> u64 (journal read up to); b"x" + name + 0x00 + u64 recharge seq ->
# i64 bonus credited; b"xc" + name -> u64 cursor; b"xs" + name -> u64 bonus credited so far.
MEMBERS_DB = "members"          # core/domain/members/: u64 BE member id -> JSON (referrer_id)
SETTLE_RECORDS_MAX = 100_000    # journal records one settle op reads (a few MB)
CAMPAIGN_NAME_CHARS_MAX = 40
TIERS_MAX = 16
POINTS_MAX = 10**6


class CampaignError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _whole(v: object, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise CampaignError("CAMPAIGN_INVALID", f"{what} must be an integer {lo}..{hi}")
    return v


def validate_campaign(kind: str, config: dict) -> dict:
    if not isinstance(config, dict):
        raise CampaignError("CAMPAIGN_INVALID", "settings are a JSON object")
    if kind in ("sign_in", "referral"):
        return {"points": _whole(config.get("points"), 1, POINTS_MAX, "points"),
                "active": bool(config.get("active", True))}
    if kind.startswith("recharge:") and 1 <= len(kind) - 9 <= CAMPAIGN_NAME_CHARS_MAX \
            and "\x00" not in kind and kind.isprintable():
        tiers = config.get("tiers")
        if not isinstance(tiers, list) or not 1 <= len(tiers) <= TIERS_MAX:
            raise CampaignError("CAMPAIGN_INVALID", f"1..{TIERS_MAX} tiers [min_pay_fen, bonus_fen]")
        out, prev = [], 0
        for t in tiers:
            if not isinstance(t, (list, tuple)) or len(t) != 2:
                raise CampaignError("CAMPAIGN_INVALID", "a tier is [min_pay_fen, bonus_fen]")
            lo = _whole(t[0], 1, 10**10, "min_pay_fen")
            if lo <= prev:
                raise CampaignError("CAMPAIGN_INVALID", "tiers rise strictly by min_pay_fen")
            out.append([lo, _whole(t[1], 0, 10**10, "bonus_fen")])
            prev = lo
        frm = _whole(config.get("from_s"), 0, 2**40, "from_s")
        to = _whole(config.get("to_s"), frm + 1, 2**40, "to_s")
        stores = config.get("stores", [])
        levels = config.get("levels", [])
        for name, vals, hi in (("stores", stores, 2**32 - 1), ("levels", levels, 254)):
            if not isinstance(vals, list):
                raise CampaignError("CAMPAIGN_INVALID", f"{name} is a list")
            for v in vals:
                _whole(v, 0, hi, name)
        return {"tiers": out, "from_s": frm, "to_s": to, "stores": sorted(set(stores)),
                "levels": sorted(set(levels)),
                "budget_fen": _whole(config.get("budget_fen", 0), 0, 10**13, "budget_fen"),
                "active": bool(config.get("active", True))}
    raise CampaignError("CAMPAIGN_INVALID", "kind is sign_in, referral or recharge:<name>")


def put_campaign(engine: Engine, kind: str, config: dict, client_id: bytes, *,
                 operator_id: int = 0) -> Future:
    cfg = validate_campaign(kind, config)
    engine.ensure_dbs([CAMPAIGNS_DB])

    def build(ctx: AdminContext):
        raw = ctx.get(CAMPAIGNS_DB, b"cfg:" + kind.encode())
        ctx.put(CAMPAIGNS_DB, b"cfg:" + kind.encode(), json.dumps(cfg).encode())
        ctx.emit(CampaignOp.CAMPAIGN_PUT, None)
        ctx.detail = {"kind": kind, "before": json.loads(raw) if raw else None, "after": cfg}
        return {"kind": kind, **cfg}

    return engine.admin(client_id, CampaignOp.CAMPAIGN_PUT, build, operator_id=operator_id)


def get_campaign(engine: Engine, kind: str) -> dict | None:
    engine.ensure_dbs([CAMPAIGNS_DB])
    with engine.store.read() as txn:
        raw = txn.get(b"cfg:" + kind.encode(), db=engine.store.db[CAMPAIGNS_DB])
    return json.loads(raw) if raw else None


def _config(ctx: AdminContext, kind: str) -> dict:
    raw = ctx.get(CAMPAIGNS_DB, b"cfg:" + kind.encode())
    cfg = json.loads(raw) if raw else None
    if cfg is None or not cfg.get("active", True):
        ctx.reject(Result.FAILED_PRECONDITION, f"the {kind} campaign is not on", "CAMPAIGN_OFF")
    return cfg


# --- birthday and anniversary: plans --------------------------------------------------------


def birthday_plan(name: str, audience: dict, actions: list, *, days: int = 0, **kw) -> dict:
    return {"name": name, "trigger": {"kind": "birthday", "days": days}, "audience": audience,
            "actions": actions, **kw}


def anniversary_plan(name: str, audience: dict, actions: list, *, days: int = 0, **kw) -> dict:
    return {"name": name, "trigger": {"kind": "anniversary", "days": days},
            "audience": audience, "actions": actions, **kw}


def daily_run_id(plan_id: int, now_s: int, tz_offset_s: int) -> str:
    """The run id of a daily plan's run for today: one run per plan and day."""
    return f"plan{plan_id}-{_tz_date(now_s, tz_offset_s).isoformat()}"


# --- sign-in ---------------------------------------------------------------------------------


def sign_in(engine: Engine, card_no: int, client_id: bytes, *, operator_id: int = 0,
            store_id: int = 0) -> Future:
    """The day's sign-in points for the card's member (once per member per day).
    value: {"points": ..., "day": "YYYY-MM-DD", "card_points": ...}."""
    engine.ensure_dbs([CAMPAIGNS_DB])

    def build(ctx: AdminContext):
        cfg = _config(ctx, "sign_in")
        card = ctx.card(int(card_no))
        if card is None:
            ctx.reject(Result.CARD_NOT_FOUND, f"card {card_no} not found")
        if int(card["status"]) != CardStatus.ACTIVE:
            ctx.reject(Result.FAILED_PRECONDITION, f"card {card_no} is not active", "CARD_NOT_ACTIVE")
        day = _tz_date(ctx.now, ctx.rules_config.tz_offset_s)
        who = int(card["member_id"]) or (1 << 63) | int(card_no)
        key = b"s" + u64(who) + day.strftime("%Y%m%d").encode()
        if ctx.get(CAMPAIGNS_DB, key) is not None:
            ctx.reject(Result.ALREADY_EXISTS, f"signed in on {day.isoformat()} already",
                       "SIGNED_IN_TODAY")
        add_points(card, cfg["points"], ctx.now, ctx.rules_config)
        seq = ctx.emit(CampaignOp.SIGN_IN, card, points_delta=cfg["points"])
        ctx.put(CAMPAIGNS_DB, key, u64(seq))
        ctx.detail = {"card_no": int(card_no), "member_id": int(card["member_id"]),
                      "day": day.isoformat(), "points": cfg["points"]}
        return {"points": cfg["points"], "day": day.isoformat(), "card_points": int(card["points"])}

    return engine.admin(client_id, CampaignOp.SIGN_IN, build, operator_id=operator_id,
                        store_id=store_id)


# --- referral reward --------------------------------------------------------------------------


def _swipes_after(engine: Engine, cursor: int, op_type: int) -> tuple[np.ndarray, int]:
    """OK card records of op_type after cursor (at most SETTLE_RECORDS_MAX read) and the
    seq read up to."""
    recs = engine.journal(cursor + 1, SETTLE_RECORDS_MAX)
    upto = int(recs["seq"][-1]) if len(recs) else cursor
    m = ((recs["op_type"] == op_type) & (recs["result"] == Result.OK)
         & (recs["kind"] == RecordKind.KIND_CARD))
    return recs[m], upto


def _cursor(engine: Engine, key: bytes) -> int:
    engine.ensure_dbs([CAMPAIGNS_DB])
    with engine.store.read() as txn:
        raw = txn.get(key, db=engine.store.db[CAMPAIGNS_DB])
    return from_be(raw) if raw else 0


def settle_referrals(engine: Engine, client_id: bytes, *, operator_id: int = 0) -> Future:
    """Reward referrers for the first swipes committed since the last settle (one op
    over at most SETTLE_RECORDS_MAX journal records; call again while value["more"]).
    value: {"rewarded": n, "points": ..., "upto_seq": ..., "more": bool}."""
    cursor = _cursor(engine, b"ref_cursor")
    swipes, upto = _swipes_after(engine, cursor, OpType.SWIPE)
    mids = swipes["after"]["member_id"].astype(np.uint64)
    keep = mids > 0
    mids, seqs = mids[keep], swipes["seq"][keep]
    first_mids, first_at = np.unique(mids, return_index=True)
    first_seqs = seqs[first_at]
    more = upto < int(engine.stats()["last_seq"])

    def build(ctx: AdminContext):
        raw = ctx.get(CAMPAIGNS_DB, b"ref_cursor")
        if (from_be(raw) if raw else 0) != cursor:
            ctx.reject(Result.FAILED_PRECONDITION, "another settle moved the cursor; read again",
                       "CURSOR_MOVED")
        cfg = _config(ctx, "referral")
        rewarded, total = [], 0
        for m, seq in zip(first_mids.tolist(), first_seqs.tolist(), strict=True):
            key = b"f" + u64(m)
            if ctx.get(CAMPAIGNS_DB, key) is not None:
                continue          # not this member's first swipe
            ctx.put(CAMPAIGNS_DB, key, u64(seq))
            rec = ctx.get(MEMBERS_DB, u64(m)) if MEMBERS_DB in engine.store.db else None
            ref = int(json.loads(rec).get("referrer_id") or 0) if rec else 0
            if not ref:
                continue
            card_no = int(plan_cards(engine, np.array([ref], np.uint64))[0])
            card = ctx.card(card_no) if card_no else None
            if card is None or int(card["status"]) != CardStatus.ACTIVE:
                continue          # the referrer has no card that can earn now
            add_points(card, cfg["points"], ctx.now, ctx.rules_config)
            ctx.emit(CampaignOp.REFERRAL_REWARD, card, points_delta=cfg["points"], ref_seq=seq)
            rewarded.append({"referred": m, "referrer": ref, "card_no": card_no, "swipe_seq": seq})
            total += cfg["points"]
        ctx.put(CAMPAIGNS_DB, b"ref_cursor", u64(upto))
        ctx.detail = {"from_seq": cursor + 1, "upto_seq": upto, "rewards": rewarded[:100],
                      "rewarded": len(rewarded)}
        return {"rewarded": len(rewarded), "points": total, "upto_seq": upto, "more": more}

    engine.ensure_dbs([CAMPAIGNS_DB])
    return engine.admin(client_id, CampaignOp.REFERRAL_REWARD, build, operator_id=operator_id)


# --- recharge campaign -------------------------------------------------------------------------


def _run_offer(engine: Engine, run_id: str) -> dict:
    """A plan run's recharge_bonus action as a recharge campaign over the cards it
    offered the bonus to, valid `days` days from the run's start."""
    run = get_run(engine, run_id)
    if run is None:
        raise CampaignError("RUN_NOT_FOUND", f"run {run_id!r} not found")
    act = next((a for a in get_plan(engine, run["plan_id"])["actions"]
                if a["kind"] == "recharge_bonus"), None)
    if act is None:
        raise CampaignError("CAMPAIGN_INVALID", f"run {run_id!r} offered no recharge bonus")
    done = run_done(engine, run_id)
    cards = np.sort(done["card"][(done["flags"] & F_OFFER) != 0].astype(np.uint64))
    return {"tiers": act["tiers"], "from_s": run["started_s"],
            "to_s": run["started_s"] + act["days"] * 86_400, "stores": [], "levels": [],
            "budget_fen": act["budget_fen"], "cards": cards, "first_seq": run["first_seq"]}


def settle_recharge_campaign(engine: Engine, name: str, client_id: bytes, *,
                             operator_id: int = 0) -> Future:
    """Credit the bonus of the recharges since the campaign's cursor that qualify: in
    [from_s, to_s), at one of its stores, the card at one of its levels before the
    recharge; the highest tier whose min_pay_fen the recharge's amount reaches; within
    budget_fen (0 = none) and the balance limit. name "run:<run id>" settles a plan
    run's recharge_bonus offer (the cards it reached, its days from the run's start).
    value: {"credited": n, "bonus_fen": ..., "upto_seq": ..., "more": bool}."""
    kind = "recharge:" + name
    bname = name.encode()
    offer = _run_offer(engine, name[4:]) if name.startswith("run:") else None
    cursor = _cursor(engine, b"xc" + bname)
    start = max(cursor, offer["first_seq"] - 1) if offer is not None else cursor
    recs, upto = _swipes_after(engine, start, OpType.RECHARGE)
    if offer is not None:
        recs = recs[isin_ids(recs["card_no"], offer["cards"])]
    more = upto < int(engine.stats()["last_seq"])

    def build(ctx: AdminContext):
        raw = ctx.get(CAMPAIGNS_DB, b"xc" + bname)
        if (from_be(raw) if raw else 0) != cursor:
            ctx.reject(Result.FAILED_PRECONDITION, "another settle moved the cursor; read again",
                       "CURSOR_MOVED")
        cfg = offer if offer is not None else _config(ctx, kind)
        raw = ctx.get(CAMPAIGNS_DB, b"xs" + bname)
        spent = from_be(raw) if raw else 0
        credited, total = 0, 0
        for rec in recs:
            t, store, level = int(rec["time_s"]), int(rec["store_id"]), int(rec["level_before"])
            if not cfg["from_s"] <= t < cfg["to_s"]:
                continue
            if (cfg["stores"] and store not in cfg["stores"]) or (cfg["levels"] and level not in cfg["levels"]):
                continue
            bonus = 0
            for lo, b in cfg["tiers"]:
                if int(rec["amount_fen"]) >= lo:
                    bonus = b
            key = b"x" + bname + b"\x00" + u64(int(rec["seq"]))
            if not bonus or ctx.get(CAMPAIGNS_DB, key) is not None:
                continue
            if cfg["budget_fen"] and spent + bonus > cfg["budget_fen"]:
                continue
            card = ctx.card(int(rec["card_no"]))
            if card is None or int(card["status"]) != CardStatus.ACTIVE:
                continue
            if int(card["principal_fen"]) + int(card["bonus_fen"]) + bonus > ctx.rules_config.max_balance_fen:
                continue
            card["bonus_fen"] += bonus
            ctx.emit(CampaignOp.RECHARGE_CAMPAIGN_BONUS, card, bonus_delta_fen=bonus,
                     amount_fen=bonus, ref_seq=int(rec["seq"]))
            ctx.put(CAMPAIGNS_DB, key, u64(bonus))
            spent += bonus
            total += bonus
            credited += 1
        ctx.put(CAMPAIGNS_DB, b"xc" + bname, u64(upto))
        ctx.put(CAMPAIGNS_DB, b"xs" + bname, u64(spent))
        ctx.detail = {"campaign": name, "from_seq": cursor + 1, "upto_seq": upto,
                      "credited": credited, "bonus_fen": total}
        return {"credited": credited, "bonus_fen": total, "upto_seq": upto, "more": more}

    engine.ensure_dbs([CAMPAIGNS_DB])
    return engine.admin(client_id, CampaignOp.RECHARGE_CAMPAIGN_BONUS, build,
                        operator_id=operator_id)


__all__ = ["CampaignError", "anniversary_plan", "birthday_plan", "daily_run_id", "get_campaign",
           "put_campaign", "settle_recharge_campaign", "settle_referrals", "sign_in"]
