"""Card types and the card lifecycle beyond the engine's own ops.

Every mutation here is one admin op (core.engine.writer.Engine.admin): checked and applied in
the writer, journalled with the after-image of every card it touches, idempotent by
client id, all or nothing, and audited with before/after in the events database.

Money never moves without a journal record whose deltas equal after minus before, so
for every card the sum of principal_delta_fen, bonus_delta_fen and points_delta over
its journal is its state (tests/domain/test_cards_lifecycle.py checks this after every op).
Fees are their own records (ISSUE_FEE, ANNUAL_FEE, REPLACEMENT_FEE, RENEWAL_FEE) with
amount_fen = the fee: taken from the card's balance (principal first, the deltas say
how much of each) or, with op_flags PAY_EXTERNAL, paid at the counter (zero deltas).

A record that brings a new card into the table must have op_type ISSUE: the engine
grows its card table by the number of ISSUE records it publishes. That is why a
replacement's new card is journalled as ISSUE (its event says REPLACE).
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import Future
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from core.engine.storage import CARD_TYPES_DB, from_be, u32, u64
from core.engine.writer import AdminContext, Engine
from core.idsets import unique_ids
from core.records import (
    CARD,
    JOURNAL,
    CardOp,
    CardStatus,
    CouponStatus,
    OpFlag,
    OpType,
    Result,
    card_move_allowed,
)
from core.rules import RechargeLimit, add_years


class CardKind(IntEnum):
    STORED_VALUE = 1   # 储值卡
    DISCOUNT = 2       # 折扣卡
    POINTS = 3         # 积分卡
    COUNT = 4          # 计次卡: N uses of a named service
    SUPPLEMENTARY = 5  # 附属卡: spends from its primary card's balance


SECONDS_PER_DAY = 86_400
# The seed's defaults: cards valid two (calendar) years from issue, a replacement costs
# 10 yuan. Years are calendar years in the chain's time zone (core.rules.add_years): an
# annual fee paid on 2032-02-29 covers to 2033-02-28, a card issued 2032-01-01 is valid
# to 2034-01-01.
DEFAULT_VALIDITY_YEARS = 2
DEFAULT_REPLACEMENT_FEE_FEN = 1_000
# Bounds that keep every sum below int64 and every JSON row small.
FEE_FEN_MAX = 10**10
VALIDITY_DAYS_MAX = 36_500
VALIDITY_YEARS_MAX = 100
NAME_CHARS_MAX = 40
ALLOWED_IDS_MAX = 1_000          # stores or operators listed on one card type
TYPE_ID_MAX = 65_535
COUNT_USES_MAX = 2**31 - 1
# Card numbers listed in the audit detail of a bulk run; the journal holds them all.
RUN_DETAIL_CARDS_MAX = 100

TYPES_DB = CARD_TYPES_DB
# new card_no -> old card_no, so that a card's history can follow its replacements.
PREDECESSOR_DB = "card_predecessor"
# Replacements a card's history follows back (a card replaced this often is absurd).
REPLACEMENT_CHAIN_MAX = 100


@dataclass(frozen=True)
class CardType:
    """What HQ configures for a kind of card. Fees in fen; empty id lists = all."""

    type_id: int
    name: str
    kind: int = CardKind.STORED_VALUE
    # A card is valid validity_years calendar years from issue (or renewal), or
    # validity_days days; at most one is set, neither = cards never expire.
    validity_days: int = 0
    validity_years: int = DEFAULT_VALIDITY_YEARS
    issue_fee_fen: int = 0                          # issue / joining fee
    annual_fee_fen: int = 0
    supp_annual_fee_fen: int = 0                    # annual fee of a supplementary card
    #                                                 (set on the supplementary type)
    replacement_fee_fen: int = DEFAULT_REPLACEMENT_FEE_FEN
    renewal_fee_fen: int = 0
    recharge_allowed: bool = True
    recharge_store_ids: tuple[int, ...] = ()
    recharge_operator_ids: tuple[int, ...] = ()
    count_service: int = 0                          # count cards: the service ...
    count_uses: int = 0                             # ... and the uses a new card holds
    initial_level: int = 0
    # How the fees at issue (issue fee, first annual fee) are paid: False = at the
    # counter, on top of any opening deposit; True = on the balance, out of the opening
    # deposit (a supplementary card's: out of its primary card's balance).
    fees_on_balance: bool = False

    def problems(self) -> list[str]:
        out = []

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not is_int(self.type_id) or not 1 <= self.type_id <= TYPE_ID_MAX:
            out.append(f"type_id must be 1..{TYPE_ID_MAX}")
        if not isinstance(self.name, str) or not 1 <= len(self.name.strip()) <= NAME_CHARS_MAX:
            out.append(f"name must be 1..{NAME_CHARS_MAX} characters")
        if self.kind not in set(CardKind):
            out.append(f"kind must be one of {[k.name.lower() for k in CardKind]}")
        if not is_int(self.validity_days) or not 0 <= self.validity_days <= VALIDITY_DAYS_MAX:
            out.append(f"validity_days must be 0..{VALIDITY_DAYS_MAX}")
        if not is_int(self.validity_years) or not 0 <= self.validity_years <= VALIDITY_YEARS_MAX:
            out.append(f"validity_years must be 0..{VALIDITY_YEARS_MAX}")
        elif self.validity_days and self.validity_years:
            out.append("set validity_days or validity_years, not both")
        if not isinstance(self.fees_on_balance, bool):
            out.append("fees_on_balance is true or false")
        elif self.fees_on_balance and self.kind not in (CardKind.STORED_VALUE,
                                                        CardKind.SUPPLEMENTARY):
            out.append("only stored-value and supplementary cards pay fees on a balance")
        for name in ("issue_fee_fen", "annual_fee_fen", "supp_annual_fee_fen",
                     "replacement_fee_fen", "renewal_fee_fen"):
            v = getattr(self, name)
            if not is_int(v) or not 0 <= v <= FEE_FEN_MAX:
                out.append(f"{name} must be 0..{FEE_FEN_MAX}")
        for name in ("recharge_store_ids", "recharge_operator_ids"):
            ids = getattr(self, name)
            if len(ids) > ALLOWED_IDS_MAX or not all(is_int(i) and 0 < i < 2**32 for i in ids):
                out.append(f"{name}: at most {ALLOWED_IDS_MAX} ids, each 1..2^32-1")
        if self.kind == CardKind.COUNT:
            if not is_int(self.count_service) or not 1 <= self.count_service <= 65_535:
                out.append("a count card type names its service (1..65535)")
            if not is_int(self.count_uses) or not 1 <= self.count_uses <= COUNT_USES_MAX:
                out.append("a count card type holds 1..2^31-1 uses")
        elif self.count_service or self.count_uses:
            out.append("count_service and count_uses are for count cards only")
        if not is_int(self.initial_level) or not 0 <= self.initial_level < 255:
            out.append("initial_level must be 0..254")
        return out

    @property
    def recharge_limit(self) -> RechargeLimit:
        """Who may recharge cards of this type; the engine enforces it in the recharge
        (result RECHARGE_NOT_ALLOWED)."""
        return RechargeLimit.of_card_type(dataclasses.asdict(self))

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_dict(cls, d: dict) -> CardType:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown card type fields: {sorted(unknown)}")
        if isinstance(d.get("kind"), str):
            d["kind"] = CardKind[d["kind"].upper()]
        for name in ("recharge_store_ids", "recharge_operator_ids"):
            if name in d:
                d[name] = tuple(d[name])
        if "kind" in d:
            d["kind"] = int(d["kind"])
        if "validity_days" in d and "validity_years" not in d:
            # Stored before validity_years existed: the days it says.
            d["validity_years"] = 0
        return cls(**d)

    def valid_until(self, start_s: int, tz_offset_s: int) -> int:
        """When a card of this type issued (or renewed) at start_s expires; 0 = never."""
        if self.validity_years:
            return add_years(start_s, self.validity_years, tz_offset_s)
        return start_s + self.validity_days * SECONDS_PER_DAY if self.validity_days else 0


def default_type(type_id: int) -> CardType:
    """The type of a card whose type was never registered (cards issued by
    Engine.issue_cards alone): stored value, the seed's validity and replacement fee."""
    return CardType(type_id=max(1, type_id), name="default")


# --- helpers shared by the ops ---------------------------------------------------------


def _type_in(ctx: AdminContext, type_id: int) -> CardType | None:
    raw = ctx.get(TYPES_DB, u32(type_id))
    return CardType.from_dict(json.loads(raw)) if raw is not None else None


def _type_or_default(ctx: AdminContext, type_id: int) -> CardType:
    return _type_in(ctx, type_id) or default_type(type_id)


def _need_card(ctx: AdminContext, card_no: int) -> np.void:
    card = ctx.card(int(card_no))
    if card is None:
        ctx.reject(Result.CARD_NOT_FOUND, f"card {card_no} not found")
    return card


def split_fee(card: np.void, fee_fen: int) -> tuple[int, int]:
    """The (principal, bonus) a fee takes from a card's balance, principal first: a
    fee is a charge for a service, paid with the member's own money before any bonus."""
    from_principal = min(fee_fen, max(0, int(card["principal_fen"])))
    return from_principal, fee_fen - from_principal


def _charge_fee(ctx: AdminContext, op_type: int, card: np.void, fee_fen: int,
                external: bool, what: str) -> dict:
    """Journal a fee on card (taken from its balance unless external); returns what was
    taken, for the audit detail. The caller has emitted every earlier change of card."""
    if fee_fen <= 0:
        return {"fee_fen": 0}
    if external:
        ctx.emit(op_type, card, amount_fen=fee_fen, payable_fen=fee_fen,
                 op_flags=OpFlag.PAY_EXTERNAL)
        return {"fee_fen": fee_fen, "paid": "external"}
    if int(card["principal_fen"]) + int(card["bonus_fen"]) < fee_fen:
        ctx.reject(Result.INSUFFICIENT_BALANCE,
                   f"the balance of card {int(card['card_no'])} cannot pay the {what} fee "
                   f"of {fee_fen} fen; pay it externally", "FEE_NOT_COVERED")
    p, b = split_fee(card, fee_fen)
    card["principal_fen"] -= p
    card["bonus_fen"] -= b
    ctx.emit(op_type, card, amount_fen=fee_fen, payable_fen=fee_fen,
             principal_delta_fen=-p, bonus_delta_fen=-b)
    return {"fee_fen": fee_fen, "paid": "balance", "principal_fen": p, "bonus_fen": b}


def _read(engine: Engine, db: str, key: bytes) -> bytes | None:
    engine.ensure_dbs([db])
    with engine.store.read() as txn:
        return txn.get(key, db=engine.store.db[db])


def _status_name(status: int) -> str:
    try:
        return CardStatus(int(status)).name
    except ValueError:
        return str(int(status))


# --- card types ------------------------------------------------------------------------


def put_card_type(engine: Engine, card_type: CardType, client_id: bytes, *,
                  operator_id: int = 0) -> Future:
    """Create or change a card type. Existing cards keep their expiry and balances; new
    fees and rules apply from the next op that reads the type."""

    def build(ctx: AdminContext):
        bad = card_type.problems()
        if bad:
            ctx.reject(Result.INVALID_ARGUMENT, "; ".join(bad), "CARD_TYPE_INVALID")
        before = ctx.get(TYPES_DB, u32(card_type.type_id))
        ctx.put(TYPES_DB, u32(card_type.type_id), card_type.to_json())
        engine.set_type_limit(ctx, card_type.type_id, card_type.recharge_limit)
        ctx.emit(CardOp.CARD_TYPE_PUT, None, amount_fen=card_type.type_id)
        ctx.detail = {"type_id": card_type.type_id,
                      "before": json.loads(before) if before else None,
                      "after": dataclasses.asdict(card_type)}
        return {"type_id": card_type.type_id, "created": before is None}

    return engine.admin(client_id, CardOp.CARD_TYPE_PUT, build, operator_id=operator_id)


def get_card_type(engine: Engine, type_id: int) -> CardType | None:
    raw = _read(engine, TYPES_DB, u32(type_id))
    return CardType.from_dict(json.loads(raw)) if raw is not None else None


def list_card_types(engine: Engine) -> list[CardType]:
    engine.ensure_dbs([TYPES_DB])
    with engine.store.read() as txn:
        return [CardType.from_dict(json.loads(v))
                for _k, v in txn.cursor(db=engine.store.db[TYPES_DB])]


# --- issue -----------------------------------------------------------------------------


def issue_cards(engine: Engine, card_nos, client_id: bytes, *, type_id: int = 0,
                member_ids=None, paid_fen: int = 0, primary_card_no: int = 0,
                supp_limit_fen: int = 0, operator_id: int = 0, store_id: int = 0) -> Future:
    """Issue cards of one type by the type's rules, all or none (one refused card
    refuses the batch and changes nothing). type_id 0 is the default type (stored
    value, two years, nothing registered); any other type must be registered
    (CARD_TYPE_NOT_FOUND). Each card gets from its type:

    - its kind's service and uses (count cards: count_service, count_uses), its
      initial level, and an expiry validity_years (calendar) or validity_days from now;
    - its fees: the issue fee and, when the type has one, the first year's annual fee
      (supp_annual_fee_fen for a supplementary type; fee_paid_until_s = a year on).
      With fees_on_balance False they are paid at the counter out of paid_fen
      (FEE_NOT_PAID when it does not cover them; records with PAY_EXTERNAL); with
      fees_on_balance True the whole paid_fen goes on the card first and the fees are
      taken from that balance, principal first (a supplementary card's from its
      primary's balance; FEE_NOT_COVERED when it cannot pay);
    - an opening deposit: what paid_fen leaves after counter fees becomes principal
      (OPENING_DEPOSIT; stored-value cards only, else DEPOSIT_NOT_ALLOWED; no bonus or
      points: use a recharge for those);
    - a supplementary type needs primary_card_no (an existing card, neither cancelled
      nor supplementary itself) and takes an optional supp_limit_fen (0 = no limit);
      other types refuse both (NOT_SUPPLEMENTARY).

    paid_fen is what each card's holder pays at issue; member_ids is None or one per
    card. Records per card, in this order: ISSUE (the new card, zero balance), then
    with fees at the counter ISSUE_FEE, ANNUAL_FEE (amount_fen = fee, PAY_EXTERNAL)
    and OPENING_DEPOSIT, or with fees on the balance OPENING_DEPOSIT, ISSUE_FEE and
    ANNUAL_FEE (deltas = what they take). Each kind of record is written for the whole
    batch at once (numpy), so a batch of 100,000 cards is one quick commit."""
    nos = np.asarray(card_nos, dtype=np.uint64).reshape(-1)
    members = (np.zeros(len(nos), np.uint64) if member_ids is None
               else np.asarray(member_ids, dtype=np.uint64).reshape(-1))

    def build(ctx: AdminContext):
        n = len(nos)
        if not 1 <= n <= engine.config.issue_cards_max:
            ctx.reject(Result.INVALID_ARGUMENT, f"issue 1..{engine.config.issue_cards_max} "
                       "cards at a time", "BATCH_SIZE")
        if members.shape != nos.shape:
            ctx.reject(Result.INVALID_ARGUMENT, "member_ids: one per card or none",
                       "COLUMN_LENGTH")
        if np.any(nos == 0):
            ctx.reject(Result.CARD_NO_INVALID, "card number 0 is not valid")
        if len(unique_ids(nos)) != n:
            ctx.reject(Result.CARD_EXISTS, "the same card number twice in one issue")
        for no in nos.tolist():
            if ctx.card(no) is not None:
                ctx.reject(Result.CARD_EXISTS, f"card {no} exists")
        if not 0 <= int(type_id) <= TYPE_ID_MAX:
            ctx.reject(Result.INVALID_ARGUMENT, f"type_id must be 0..{TYPE_ID_MAX}")
        t = _type_in(ctx, int(type_id)) if type_id else default_type(0)
        if t is None:
            ctx.reject(Result.NOT_FOUND, f"card type {type_id} is not registered",
                       "CARD_TYPE_NOT_FOUND")
        if not 0 <= paid_fen <= ctx.rules_config.max_amount_fen:
            ctx.reject(Result.INVALID_ARGUMENT, "paid_fen out of range", "AMOUNT_INVALID")
        if not 0 <= supp_limit_fen <= FEE_FEN_MAX * 100:
            ctx.reject(Result.INVALID_ARGUMENT, "supp_limit_fen out of range")
        supp = t.kind == CardKind.SUPPLEMENTARY
        primary = None
        if supp:
            primary = ctx.card(int(primary_card_no)) if primary_card_no else None
            if primary is None:
                ctx.reject(Result.NOT_FOUND, "a supplementary card needs an existing primary "
                           "card", "PRIMARY_NOT_FOUND")
            if int(primary["status"]) == CardStatus.CANCELLED or int(primary["primary_card_no"]):
                ctx.reject(Result.FAILED_PRECONDITION, "the primary card is cancelled or "
                           "itself supplementary", "PRIMARY_INVALID")
        elif primary_card_no or supp_limit_fen:
            ctx.reject(Result.INVALID_ARGUMENT, "only supplementary cards have a primary card "
                       "or a spend limit", "NOT_SUPPLEMENTARY")
        if t.initial_level >= ctx.rules.n_levels:
            ctx.reject(Result.FAILED_PRECONDITION, f"level {t.initial_level} is not configured",
                       "LEVEL_INVALID")
        annual = t.supp_annual_fee_fen if supp else t.annual_fee_fen
        fees = t.issue_fee_fen + annual
        if t.fees_on_balance:
            deposit = paid_fen
            if supp:
                have = int(primary["principal_fen"]) + int(primary["bonus_fen"])
                if have < fees * n:
                    ctx.reject(Result.INSUFFICIENT_BALANCE, f"the primary card's balance "
                               f"({have} fen) cannot pay the fees of {fees * n} fen",
                               "FEE_NOT_COVERED")
            elif deposit < fees:
                ctx.reject(Result.INSUFFICIENT_BALANCE, f"the fees of {fees} fen are taken "
                           f"from the opening deposit; {paid_fen} paid", "FEE_NOT_COVERED")
        else:
            if paid_fen < fees:
                ctx.reject(Result.INSUFFICIENT_BALANCE, f"the fees are {fees} fen, "
                           f"{paid_fen} paid", "FEE_NOT_PAID")
            deposit = paid_fen - fees
        if deposit and t.kind != CardKind.STORED_VALUE:
            ctx.reject(Result.INVALID_ARGUMENT, "only stored-value cards take an opening "
                       "deposit", "DEPOSIT_NOT_ALLOWED")
        if deposit > ctx.rules_config.max_balance_fen:
            ctx.reject(Result.BALANCE_LIMIT, "the deposit passes the balance limit")
        tz = ctx.rules_config.tz_offset_s
        cards = np.zeros(n, dtype=CARD)
        cards["card_no"], cards["member_id"], cards["type_id"] = nos, members, int(type_id)
        cards["level"], cards["status"] = t.initial_level, CardStatus.ACTIVE
        cards["issued_at_s"], cards["level_period_start_s"] = ctx.now, ctx.now
        cards["expires_at_s"] = t.valid_until(ctx.now, tz)
        cards["count_service"], cards["count_uses"] = t.count_service, t.count_uses
        cards["primary_card_no"], cards["supp_limit_fen"] = int(primary_card_no), supp_limit_fen
        prev = None

        def step(op_type: int, **columns) -> None:
            nonlocal prev
            first = ctx.emit_cards(op_type, cards, prev_seq=prev, **columns)
            prev = np.arange(first, first + n, dtype=np.uint64)

        def deposit_step() -> None:
            cards["principal_fen"] += deposit
            cards["recharge_total_fen"] += deposit
            cards["period_recharge_fen"] += deposit
            step(CardOp.OPENING_DEPOSIT, amount_fen=deposit, payable_fen=deposit,
                 principal_delta_fen=deposit)

        step(OpType.ISSUE)
        if t.fees_on_balance and deposit:
            deposit_step()
        for op_type, fee in ((CardOp.ISSUE_FEE, t.issue_fee_fen), (CardOp.ANNUAL_FEE, annual)):
            if fee <= 0:
                continue
            if op_type == CardOp.ANNUAL_FEE:
                cards["fee_paid_until_s"] = add_years(ctx.now, 1, tz)
            if not t.fees_on_balance:
                step(op_type, amount_fen=fee, payable_fen=fee, op_flags=OpFlag.PAY_EXTERNAL)
            elif supp:
                # The balance a supplementary card spends from pays its fees: one record
                # per card on the primary; the card's own record shows the fee paid.
                for _ in range(n):
                    _charge_fee(ctx, op_type, ctx.card(int(primary_card_no)), fee, False,
                                "issue")
                step(op_type, amount_fen=0)
            else:
                # A new card holds principal only: the fee is principal.
                cards["principal_fen"] -= fee
                step(op_type, amount_fen=fee, payable_fen=fee, principal_delta_fen=-fee)
        if not t.fees_on_balance and deposit:
            deposit_step()
        after = {"status": "ACTIVE", "expires_at_s": int(cards["expires_at_s"][0]),
                 "level": t.initial_level, "issue_fee_fen": t.issue_fee_fen,
                 "annual_fee_fen": annual, "fees_on_balance": t.fees_on_balance,
                 "deposit_fen": deposit, "primary_card_no": int(primary_card_no),
                 "count_service": t.count_service, "count_uses": t.count_uses}
        ctx.detail = {"cards": n, "card_no": int(nos[0]), "type_id": int(type_id),
                      "member_id": int(members[0]), "after": after,
                      "first_cards": [int(c) for c in nos[:RUN_DETAIL_CARDS_MAX]]}
        return {"cards": n, "card_no": int(nos[0]), "fees_fen": fees, "deposit_fen": deposit,
                "expires_at_s": int(cards["expires_at_s"][0]), "level": t.initial_level,
                "count_uses": t.count_uses}

    # The op is ISSUE like the engine's raw issue, so that metrics (op_type="issue") and
    # dashboards count issues the same whichever path made them.
    return engine.admin(client_id, OpType.ISSUE, build, operator_id=operator_id,
                        store_id=store_id)


def issue(engine: Engine, card_no: int, client_id: bytes, *, type_id: int,
          member_id: int = 0, paid_fen: int = 0, primary_card_no: int = 0,
          supp_limit_fen: int = 0, operator_id: int = 0, store_id: int = 0) -> Future:
    """Issue one card by its type's rules (issue_cards with one card)."""
    return issue_cards(engine, [card_no], client_id, type_id=type_id, member_ids=[member_id],
                       paid_fen=paid_fen, primary_card_no=primary_card_no,
                       supp_limit_fen=supp_limit_fen, operator_id=operator_id,
                       store_id=store_id)


def set_supp_limit(engine: Engine, card_no: int, supp_limit_fen: int, client_id: bytes, *,
                   operator_id: int = 0) -> Future:
    """Change a supplementary card's spend limit (0 = no limit)."""

    def build(ctx: AdminContext):
        card = _need_card(ctx, card_no)
        if not int(card["primary_card_no"]):
            ctx.reject(Result.FAILED_PRECONDITION, f"card {card_no} is not supplementary",
                       "NOT_SUPPLEMENTARY")
        if not 0 <= supp_limit_fen <= FEE_FEN_MAX * 100:
            ctx.reject(Result.INVALID_ARGUMENT, "supp_limit_fen out of range")
        before = int(card["supp_limit_fen"])
        card["supp_limit_fen"] = supp_limit_fen
        ctx.emit(CardOp.SUPP_LIMIT, card, amount_fen=supp_limit_fen)
        ctx.detail = {"card_no": int(card_no), "before": {"supp_limit_fen": before},
                      "after": {"supp_limit_fen": supp_limit_fen}}
        return {"supp_limit_fen": supp_limit_fen}

    return engine.admin(client_id, CardOp.SUPP_LIMIT, build, operator_id=operator_id)


def supplementary_cards(engine: Engine, primary_card_no: int) -> list[int]:
    cards = engine.cards_snapshot()
    return sorted(int(c) for c in cards["card_no"][cards["primary_card_no"] == primary_card_no])


# --- replacement (补卡) -----------------------------------------------------------------

# What moves from the old card to the new one; the rest of the new card is fresh.
_CARRIED = ("member_id", "primary_card_no", "principal_fen", "bonus_fen", "points",
            "spend_total_fen", "recharge_total_fen", "period_spend_fen", "period_points",
            "period_recharge_fen", "expires_at_s", "level_expires_at_s", "last_visit_s",
            "supp_limit_fen", "visits", "count_uses", "type_id", "level", "flags",
            "count_service", "pin_hash", "pin_salt", "lot0_points", "lot1_points",
            "lot2_points", "permanent_points", "supp_spent_fen", "fee_paid_until_s",
            "level_period_start_s", "lot_year")
_ZEROED = ("principal_fen", "bonus_fen", "points", "lot0_points", "lot1_points",
           "lot2_points", "permanent_points", "count_uses")


def replace(engine: Engine, old_card_no: int, new_card_no: int, client_id: bytes, *,
            fee_fen: int | None = None, fee_external: bool = False, operator_id: int = 0,
            store_id: int = 0) -> Future:
    """Replace a card (补卡): the old card (ACTIVE or LOST) is CANCELLED with
    replaced_by = the new card; the new card takes its balance (principal and bonus
    apart), points with their lots, level and level validity, period counters, PIN,
    member, type and the old card's expiry. Supplementary cards of the old card now
    spend from the new one. The fee (the type's replacement_fee_fen, 10 yuan by
    default, or fee_fen) is taken from the moved balance, principal first; if the
    balance cannot pay it the op is rejected unless fee_external (paid at the counter).

    Records: REPLACE on the old card (deltas = minus everything it held), ISSUE on the
    new card (deltas = plus the same), REPLACEMENT_FEE on the new card, REPLACE on each
    re-pointed supplementary card, and REPLACE of kind COUPON for each coupon not yet
    redeemed (it now belongs to the new card; redeemed ones stay with the old card's
    history). The sums over both journals stay equal to the cards' states."""

    def build(ctx: AdminContext):
        old = _need_card(ctx, old_card_no)
        new_no = int(new_card_no)
        if not 0 < new_no < 2**64 or new_no == int(old_card_no):
            ctx.reject(Result.CARD_NO_INVALID, f"card number {new_card_no} is not valid")
        if ctx.card(new_no) is not None:
            ctx.reject(Result.CARD_EXISTS, f"card {new_no} exists")
        status = int(old["status"])
        if not card_move_allowed(status, CardStatus.CANCELLED, "replacement"):
            ctx.reject(Result.FAILED_PRECONDITION, f"a {_status_name(status)} card cannot be "
                       "replaced", "CARD_NOT_REPLACEABLE")
        t = _type_or_default(ctx, int(old["type_id"]))
        fee = t.replacement_fee_fen if fee_fen is None else int(fee_fen)
        if not 0 <= fee <= FEE_FEN_MAX:
            ctx.reject(Result.INVALID_ARGUMENT, "fee_fen out of range")
        if not fee_external and int(old["principal_fen"]) + int(old["bonus_fen"]) < fee:
            ctx.reject(Result.INSUFFICIENT_BALANCE, f"the balance cannot pay the replacement "
                       f"fee of {fee} fen; pay it externally", "FEE_NOT_COVERED")
        new = np.zeros(1, dtype=CARD)[0]
        for name in _CARRIED:
            new[name] = old[name]
        new["card_no"], new["status"], new["issued_at_s"] = new_no, CardStatus.ACTIVE, ctx.now
        moved = {k: int(old[k]) for k in ("principal_fen", "bonus_fen", "points")}
        after_old = old.copy()
        for name in _ZEROED:
            after_old[name] = 0
        after_old["status"], after_old["replaced_by"] = CardStatus.CANCELLED, new_no
        ctx.emit(CardOp.REPLACE, after_old, principal_delta_fen=-moved["principal_fen"],
                 bonus_delta_fen=-moved["bonus_fen"], points_delta=-moved["points"],
                 amount_fen=moved["principal_fen"] + moved["bonus_fen"])
        ctx.emit(OpType.ISSUE, new, principal_delta_fen=moved["principal_fen"],
                 bonus_delta_fen=moved["bonus_fen"], points_delta=moved["points"],
                 amount_fen=moved["principal_fen"] + moved["bonus_fen"])
        charged = _charge_fee(ctx, CardOp.REPLACEMENT_FEE, new, fee, fee_external, "replacement")
        cards = ctx.committed_cards()
        supp_nos = [int(c) for c in cards["card_no"][cards["primary_card_no"] == int(old_card_no)]]
        for no in supp_nos:
            supp = ctx.card(no)
            supp["primary_card_no"] = new_no
            ctx.emit(CardOp.REPLACE, supp)
        coupons = ctx.coupons_of(int(old_card_no))
        coupons = coupons[coupons["coupon_status"] == CouponStatus.COUPON_ISSUED]
        if len(coupons):
            coupons["card_no"] = new_no
            ctx.emit_coupons(CardOp.REPLACE, coupons, new=False)
        coupon_ids = [int(c) for c in coupons["coupon_id"]]
        ctx.put(PREDECESSOR_DB, u64(new_no), u64(int(old_card_no)))
        ctx.detail = {"card_no": int(old_card_no), "new_card_no": new_no,
                      "before": {"status": _status_name(status), **moved},
                      "after": {"status": "CANCELLED", "replaced_by": new_no},
                      "fee": charged, "supplementary_cards": supp_nos, "coupons": coupon_ids}
        return {"new_card_no": new_no, "fee_fen": fee, "moved": moved,
                "supplementary_cards": supp_nos, "coupons": coupon_ids}

    return engine.admin(client_id, CardOp.REPLACE, build, operator_id=operator_id,
                        store_id=store_id)


def predecessors(engine: Engine, card_no: int, limit: int = 100) -> list[int]:
    """The cards this card replaced, newest first (a chain of replacements)."""
    engine.ensure_dbs([PREDECESSOR_DB])
    out: list[int] = []
    with engine.store.read() as txn:
        db = engine.store.db[PREDECESSOR_DB]
        no = int(card_no)
        while len(out) < limit:
            raw = txn.get(u64(no), db=db)
            if raw is None:
                break
            no = from_be(raw)
            out.append(no)
    return out


def card_history(engine: Engine, card_no: int, limit: int, before_seq: int = 0
                 ) -> tuple[np.ndarray, int]:
    """A card's journal with the records of the cards it replaced (seed 002 §2(八):
    the old card's consumption records move to the new card), newest first by seq:
    up to limit records with seq < before_seq (0 = from the newest), and the cursor of
    the next page (the last seq returned; 0 when nothing older is left).

    Each card's records are a chain through prev_seq from its last_seq; the chains of
    the replacement chain (card_predecessor, at most REPLACEMENT_CHAIN_MAX hops) are
    merged by seq, so a record of an old card written after the replacement (a refund
    of one of its swipes) still sits in its place. Records the cursor has passed are
    skipped, so every page reads at most the records newer than its cursor plus one
    page."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    cards = [int(card_no)] + predecessors(engine, card_no, REPLACEMENT_CHAIN_MAX)
    heads = []
    for no in cards:
        c = engine.card(no)
        if c is not None and int(c["last_seq"]):
            heads.append(int(c["last_seq"]))
    out: list[np.void] = []
    more = False
    with engine.store.read() as txn:
        # Per card the newest record below the cursor; then a merge, newest first.
        pending: list[tuple[int, np.void]] = []
        for seq in heads:
            while seq:
                rec = engine.store.journal_record(txn, seq)
                if rec is None:
                    seq = 0
                elif before_seq and seq >= before_seq:
                    seq = int(rec["prev_seq"])
                else:
                    pending.append((seq, rec))
                    break
        while pending:
            pending.sort(key=lambda p: p[0])
            seq, rec = pending.pop()
            if len(out) == limit:
                more = True
                break
            out.append(rec)
            prev = int(rec["prev_seq"])
            if prev:
                nxt = engine.store.journal_record(txn, prev)
                if nxt is not None:
                    pending.append((prev, nxt))
    recs = np.array(out, dtype=JOURNAL) if out else np.zeros(0, dtype=JOURNAL)
    return recs, (int(out[-1]["seq"]) if out and more else 0)


# --- annual fee ------------------------------------------------------------------------


def _annual_fee_of(t: CardType, card: np.void) -> int:
    return t.supp_annual_fee_fen if int(card["primary_card_no"]) else t.annual_fee_fen


def _pay_annual(ctx: AdminContext, card: np.void, fee: int, external: bool) -> dict:
    """Charge one year on card: a supplementary card's fee comes from its primary
    card's balance (the balance it spends from). Extends fee_paid_until_s by a year from
    where it ended (or from now when it never started)."""
    until = int(card["fee_paid_until_s"]) or ctx.now
    year_on = add_years(until, 1, ctx.rules_config.tz_offset_s)
    payer_no = int(card["primary_card_no"]) or int(card["card_no"])
    if external or payer_no == int(card["card_no"]):
        card["fee_paid_until_s"] = year_on
        charged = _charge_fee(ctx, CardOp.ANNUAL_FEE, card, fee, external, "annual")
    else:
        payer = _need_card(ctx, payer_no)
        charged = _charge_fee(ctx, CardOp.ANNUAL_FEE, payer, fee, False, "annual")
        card["fee_paid_until_s"] = year_on
        ctx.emit(CardOp.ANNUAL_FEE, card, amount_fen=0)
        charged["payer_card_no"] = payer_no
    charged["fee_paid_until_s"] = year_on
    return charged


def pay_annual_fee(engine: Engine, card_no: int, client_id: bytes, *, external: bool = False,
                   operator_id: int = 0, store_id: int = 0) -> Future:
    """Charge one year of a card's annual fee (the type's annual_fee_fen, or
    supp_annual_fee_fen for a supplementary card) from its balance or externally."""

    def build(ctx: AdminContext):
        card = _need_card(ctx, card_no)
        if int(card["status"]) == CardStatus.CANCELLED:
            ctx.reject(Result.CARD_CANCELLED, f"card {card_no} is cancelled")
        t = _type_or_default(ctx, int(card["type_id"]))
        fee = _annual_fee_of(t, card)
        if fee <= 0:
            ctx.reject(Result.FAILED_PRECONDITION, "the card's type has no annual fee",
                       "NO_ANNUAL_FEE")
        before = int(card["fee_paid_until_s"])
        charged = _pay_annual(ctx, card, fee, external)
        ctx.detail = {"card_no": int(card_no), "before": {"fee_paid_until_s": before},
                      "after": {"fee_paid_until_s": charged["fee_paid_until_s"]},
                      "fee": charged}
        return charged

    return engine.admin(client_id, CardOp.ANNUAL_FEE, build, operator_id=operator_id,
                        store_id=store_id)


def charge_annual_fees(engine: Engine, client_id: bytes, *, operator_id: int = 0) -> Future:
    """The annual fee run: every ACTIVE card of a type with an annual fee whose fee is
    paid up to now or earlier is charged one year from its (or its primary's) balance.
    Cards whose balance cannot pay are left as they are and listed as unpaid. A rerun
    charges nothing twice: a charged card is paid past now (or, a year or more in
    arrears, one year later each run)."""

    def build(ctx: AdminContext):
        types = {t.type_id: t for t in (CardType.from_dict(json.loads(v))
                                        for _k, v in ctx.txn.cursor(db=ctx.db(TYPES_DB)))
                 if t.annual_fee_fen or t.supp_annual_fee_fen}
        cards = ctx.committed_cards()
        due = np.flatnonzero((cards["status"] == CardStatus.ACTIVE)
                             & (cards["fee_paid_until_s"] <= ctx.now)
                             & np.isin(cards["type_id"], list(types))).tolist()
        charged, unpaid, total = [], [], 0
        for i in due:
            card = ctx.card(int(cards[i]["card_no"]))
            fee = _annual_fee_of(types[int(card["type_id"])], card)
            if fee <= 0:
                continue
            payer = ctx.card(int(card["primary_card_no"]) or int(card["card_no"]))
            if payer is None or int(payer["principal_fen"]) + int(payer["bonus_fen"]) < fee:
                unpaid.append(int(card["card_no"]))
                continue
            _pay_annual(ctx, card, fee, False)
            charged.append(int(card["card_no"]))
            total += fee
        ctx.detail = {"charged": len(charged), "unpaid": len(unpaid), "fees_fen": total,
                      "charged_cards": charged[:RUN_DETAIL_CARDS_MAX],
                      "unpaid_cards": unpaid[:RUN_DETAIL_CARDS_MAX]}
        return {"charged": len(charged), "fees_fen": total, "unpaid_cards": unpaid}

    return engine.admin(client_id, CardOp.ANNUAL_FEE_RUN, build, operator_id=operator_id)


# --- expiry to dormant and renewal (续卡) ------------------------------------------------


def expire_dormant(engine: Engine, client_id: bytes, *, operator_id: int = 0) -> Future:
    """Turn every ACTIVE card whose expires_at_s has passed into DORMANT (休眠): balance
    and points stay on the card but it cannot be used (the swipe answers CARD_DORMANT)
    until it is renewed. One EXPIRE_DORMANT record per card; a rerun finds nothing."""

    def build(ctx: AdminContext):
        cards = ctx.committed_cards()
        due = ((cards["status"] == CardStatus.ACTIVE) & (cards["expires_at_s"] != 0)
               & (cards["expires_at_s"] <= ctx.now))
        after = cards[due].copy()
        after["status"] = CardStatus.DORMANT
        ctx.emit_updates(CardOp.EXPIRE_DORMANT, after)
        nos = [int(n) for n in after["card_no"][:RUN_DETAIL_CARDS_MAX]]
        ctx.detail = {"cards": int(len(after)), "first_cards": nos,
                      "before": {"status": "ACTIVE"}, "after": {"status": "DORMANT"}}
        return {"cards": int(len(after))}

    return engine.admin(client_id, CardOp.EXPIRE_DORMANT, build, operator_id=operator_id)


def renew(engine: Engine, card_no: int, client_id: bytes, *, fee_fen: int | None = None,
          fee_external: bool = False, validity_days: int | None = None,
          operator_id: int = 0, store_id: int = 0) -> Future:
    """Renew a DORMANT or expired card (续卡): ACTIVE again, valid from now for its
    type's validity (validity_years calendar years, two by default, or validity_days),
    or validity_days days when given; its balance and points usable again. The fee
    (the type's renewal_fee_fen unless fee_fen) comes from the balance or externally.
    The caller checks the member's ID document before renewing (the seed's rule)."""

    def build(ctx: AdminContext):
        card = _need_card(ctx, card_no)
        status = int(card["status"])
        expired = int(card["expires_at_s"]) != 0 and int(card["expires_at_s"]) <= ctx.now
        if not (status == CardStatus.DORMANT or (status == CardStatus.ACTIVE and expired)):
            ctx.reject(Result.FAILED_PRECONDITION, f"card {card_no} is {_status_name(status)} "
                       "and not expired", "CARD_NOT_RENEWABLE")
        t = _type_or_default(ctx, int(card["type_id"]))
        if validity_days is not None:
            t = dataclasses.replace(t, validity_days=int(validity_days), validity_years=0)
        fee = t.renewal_fee_fen if fee_fen is None else int(fee_fen)
        if not 0 <= t.validity_days <= VALIDITY_DAYS_MAX or not 0 <= fee <= FEE_FEN_MAX:
            ctx.reject(Result.INVALID_ARGUMENT, "validity_days or fee_fen out of range")
        before = {"status": _status_name(status), "expires_at_s": int(card["expires_at_s"])}
        card["status"] = CardStatus.ACTIVE
        card["expires_at_s"] = t.valid_until(ctx.now, ctx.rules_config.tz_offset_s)
        ctx.emit(CardOp.RENEW, card)
        charged = _charge_fee(ctx, CardOp.RENEWAL_FEE, card, fee, fee_external, "renewal")
        ctx.detail = {"card_no": int(card_no), "before": before,
                      "after": {"status": "ACTIVE", "expires_at_s": int(card["expires_at_s"])},
                      "fee": charged}
        return {"expires_at_s": int(card["expires_at_s"]), "fee_fen": fee}

    return engine.admin(client_id, CardOp.RENEW, build, operator_id=operator_id,
                        store_id=store_id)


__all__ = ["CardOp", "CardKind", "CardType", "put_card_type", "get_card_type",
           "list_card_types", "issue", "issue_cards", "set_supp_limit",
           "supplementary_cards", "replace", "predecessors", "card_history", "pay_annual_fee",
           "charge_annual_fees", "expire_dormant", "renew", "split_fee"]
