"""The back office's read of a member and their cards (会员360), and of one card.

Read-only: everything comes from the engine's committed card and coupon tables, the
card types, the rules in force and the journal. Nothing here writes.

    card_view(engine, card_no) -> dict       # the card, its type, level, lots, replacements
    member_journal(engine, card_nos, limit, before_seq) -> (records, next_before_seq)
    member_level_history(engine, card_nos, limit) -> [change]
    journal_total(engine, card_no) -> int     # records of a card and the cards it replaced
"""

from __future__ import annotations

import datetime

import numpy as np

from core.domain.cards import (
    REPLACEMENT_CHAIN_MAX,
    CardKind,
    card_history,
    default_type,
    get_card_type,
    predecessors,
)
from core.domain.levels import level_history
from core.engine.writer import Engine
from core.records import JOURNAL, CardStatus

# Journal records a total walks per card before it stops counting (and says "at least").
JOURNAL_TOTAL_SCAN_MAX = 1_000_000
# Level changes a member view lists.
MEMBER_LEVEL_HISTORY_MAX = 100
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_LOTS = ("lot0_points", "lot1_points", "lot2_points")


def points_lots(card: dict, points_valid_years: int, tz_offset_s: int) -> list[dict]:
    """A card's points by the year they were earned, oldest first, with when each lot is
    cleared: lots earned in year Y are valid to 31 Dec of Y + points_valid_years and
    cleared at 00:00 local time on 1 Jan of the year after (core.domain.points). Empty
    lots are left out; points_valid_years 0 means they never expire (expires_at_s 0)."""
    base = int(card.get("lot_year", 0))
    out = []
    for j, name in enumerate(_LOTS):
        pts = int(card.get(name, 0))
        if not pts:
            continue
        year = base + j
        if points_valid_years and base:
            last = year + points_valid_years
            cleared = _year_start(last + 1, tz_offset_s)
            out.append({"year": year, "points": pts, "expires_at_s": cleared,
                        "valid_until": f"{last:04d}-12-31"})
        else:
            out.append({"year": year, "points": pts, "expires_at_s": 0, "valid_until": ""})
    return out


def _year_start(year: int, tz_offset_s: int) -> int:
    """Unix seconds of 00:00 on 1 January of year, local time (integer arithmetic)."""
    tz = datetime.timezone(datetime.timedelta(seconds=int(tz_offset_s)))
    return (datetime.datetime(year, 1, 1, tzinfo=tz) - _EPOCH) // datetime.timedelta(seconds=1)


def _status_name(status: int) -> str:
    try:
        return CardStatus(int(status)).name.lower()
    except ValueError:
        return str(status)


def card_view(engine: Engine, card_no: int, card: dict | None = None) -> dict | None:
    """One card as the back office reads it (None when there is no such card)."""
    card = card if card is not None else engine.card(int(card_no))
    if card is None:
        return None
    rules = engine.rules
    t = get_card_type(engine, int(card["type_id"])) if int(card["type_id"]) else None
    t = t or default_type(int(card["type_id"]))
    level = int(card["level"])
    level_name = rules.levels[level].name if 0 <= level < len(rules.levels) else str(level)
    snap = engine.cards_snapshot()
    supp = snap["card_no"][snap["primary_card_no"] == np.uint64(int(card["card_no"]))]
    try:
        kind = CardKind(int(t.kind)).name.lower()
    except ValueError:
        kind = str(t.kind)
    return {
        "card": card, "type_name": t.name, "type_kind": kind, "level_name": level_name,
        "lots": points_lots(card, rules.points_valid_years, rules.tz_offset_s),
        "permanent_points": int(card.get("permanent_points", 0)),
        "replaced_by_card_no": int(card.get("replaced_by", 0)),
        "replaced_card_nos": predecessors(engine, int(card["card_no"]), REPLACEMENT_CHAIN_MAX),
        "supplementary_card_nos": sorted(int(n) for n in supp.tolist()),
        "supp_spent_fen": int(card.get("supp_spent_fen", 0)),
        "issued_at_s": int(card.get("issued_at_s", 0)),
        "status_name": _status_name(int(card["status"])),
    }


def member_journal(engine: Engine, card_nos: list[int], limit: int, before_seq: int = 0
                   ) -> tuple[np.ndarray, int]:
    """The journal of several cards (each with the cards it replaced), newest first:
    up to limit records with seq < before_seq (0 = from the newest), and the cursor of
    the next page (0 when nothing older is left). A record reached through two cards
    (an old card the member still holds and its replacement) is listed once."""
    if limit <= 0:
        return np.zeros(0, dtype=JOURNAL), 0
    merged: dict[int, np.void] = {}
    more = False
    for no in card_nos:
        recs, nxt = card_history(engine, int(no), limit, before_seq)
        more = more or bool(nxt)
        for r in recs:
            merged[int(r["seq"])] = r
    seqs = sorted(merged, reverse=True)
    if len(seqs) > limit:
        more = True
    page = seqs[:limit]
    out = np.array([merged[s] for s in page], dtype=JOURNAL) if page else np.zeros(0, dtype=JOURNAL)
    return out, (page[-1] if page and more else 0)


def member_level_history(engine: Engine, card_nos: list[int],
                         limit: int = MEMBER_LEVEL_HISTORY_MAX) -> list[dict]:
    """The level changes of several cards, newest first, each change once."""
    seen: dict[int, dict] = {}
    for no in card_nos:
        for h in level_history(engine, int(no), limit=limit):
            seen.setdefault(int(h["seq"]), h)
    return [seen[s] for s in sorted(seen, reverse=True)[:limit]]


def journal_total(engine: Engine, card_no: int) -> int:
    """How many journal records a card and the cards it replaced hold (walking each
    card's chain of records; at most JOURNAL_TOTAL_SCAN_MAX per card)."""
    total = 0
    nos = [int(card_no)] + predecessors(engine, int(card_no), REPLACEMENT_CHAIN_MAX)
    with engine.store.read() as txn:
        for no in nos:
            c = engine.card(no)
            seq = int(c["last_seq"]) if c is not None else 0
            n = 0
            while seq and n < JOURNAL_TOTAL_SCAN_MAX:
                rec = engine.store.journal_record(txn, seq)
                if rec is None:
                    break
                n += 1
                seq = int(rec["prev_seq"])
            total += n
    return total


__all__ = ["card_view", "journal_total", "member_journal", "member_level_history",
           "points_lots"]
