"""Issue 8, items 3, 4, 6 and 7 against the real server on loopback and the real `mms`
command: IssueCards applies the card type (fees paid at the counter or on the balance,
validity, initial level, count uses that UseCount can spend, deposit, supplementary
cards on a primary with a limit), all or none and idempotent; years are calendar years
in the chain's time zone; a replaced card's journal carries the cards it replaced,
paged; a card whose membership ended pays shelf prices, earns nothing and says so in
GetCard and `mms card show` until ReadmitCard.

The engine runs on a clock the tests move (from 2032-01-01 10:00 in Shanghai), so
sessions are renewed after each move."""

from __future__ import annotations

import datetime
import json
import zoneinfo

import grpc
import pytest
from rpc_chain import region_with_stores
from test_admin_rpc import PW, Env, add_member, bootstrap, cid, failure

from server.cli import main
from server.mms_pb import admin_pb2, pos_pb2, types_pb2

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
LOGINS = (("desk11", "customer_service"), ("cash11", "cashier"), ("mkt", "marketing"))


def local(y, m, d, hh=0, mm=0) -> int:
    return int(datetime.datetime(y, m, d, hh, mm, tzinfo=SHANGHAI).timestamp())


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    clock = Clock(local(2032, 1, 1, 10))
    e = Env(str(tmp_path_factory.mktemp("card_rules")), clock=clock)
    e.clock = clock
    bootstrap(e)
    region_with_stores(e, (11,))
    for login, role in LOGINS:
        e.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
            client_id=cid(), login=login, password=PW, role=role,
            home_store_id=0 if role == "marketing" else 11))
        e.login(login)
    till = e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=cid(), kind=admin_pb2.NODE_KIND_TERMINAL, parent_id=11, name="till")).node
    tok = e.call("root", "IssueTerminalToken", admin_pb2.IssueTerminalTokenRequest(
        client_id=cid(), terminal_id=till.node_id)).token
    e.till_md = (("authorization", f"Bearer {tok}"),)
    yield e
    e.close()


def move_clock(env, t_s: int) -> None:
    """Set the engine's clock; sessions are timed by it, so log everyone in again."""
    env.clock.now = t_s
    for who in ("root", *(login for login, _ in LOGINS)):
        env.login(who)


def put_type(env, **fields) -> None:
    env.call("mkt", "PutCardType", admin_pb2.PutCardTypeRequest(
        client_id=cid(), card_type=admin_pb2.CardType(**fields)))


def get_card(env, no: int) -> types_pb2.Card:
    return env.pos.GetCard(pos_pb2.GetCardRequest(card_no=no), metadata=env.till_md,
                           timeout=30).card


def journal(env, no: int, limit: int = 1000, before: int = 0):
    return env.call("desk11", "GetCardJournal", admin_pb2.GetCardJournalRequest(
        card_no=no, limit=limit, before_seq=before))


def ops_of(env, no: int) -> list[str]:
    return [e.op for e in journal(env, no).entries][::-1]


def swipe(env, no: int, fen: int, **kw) -> types_pb2.OpResult:
    return env.pos.Swipe(pos_pb2.SwipeRequest(client_id=cid(), card_no=no, amount_fen=fen, **kw),
                         metadata=env.till_md, timeout=30).result


def recharge(env, no: int, fen: int) -> None:
    env.pos.Recharge(pos_pb2.RechargeRequest(client_id=cid(), card_no=no, amount_fen=fen),
                     metadata=env.till_md, timeout=30)


def mms(capsys, env, who: str, *argv: str, rc: int = 0) -> str:
    got = main([*argv, "--target", f"127.0.0.1:{env.server.port}",
                f"--session={env.sessions[who]}"])
    out = capsys.readouterr()
    assert got == rc, out.err
    return out.out.strip() if rc == 0 else out.err.strip()


# --- item 3: the card type governs the card -------------------------------------------------

def test_issue_charges_the_types_fees_and_sets_validity_and_level(env):
    move_clock(env, local(2032, 1, 1, 10))
    put_type(env, type_id=41, name="Gold stored value", issue_fee_fen=500, annual_fee_fen=1_000,
             validity_years=1, initial_level=1)
    req = admin_pb2.IssueCardsRequest(client_id=cid(), card_nos=[4101, 4102], type_id=41,
                                      paid_fen=10_000)
    r1 = env.call("cash11", "IssueCards", req)
    assert (r1.cards, r1.fees_fen, r1.deposit_fen, r1.level) == (2, 1_500, 8_500, 1)
    assert r1.expires_at_s == local(2033, 1, 1, 10) and not r1.replayed
    r2 = env.call("cash11", "IssueCards", req)
    assert r2.replayed and (r2.cards, r2.fees_fen, r2.seq) == (2, 1_500, r1.seq)
    for no in (4101, 4102):
        c = get_card(env, no)
        assert (c.principal_fen, c.bonus_fen, c.level, c.type_id) == (8_500, 0, 1, 41)
        assert c.expires_at_s == local(2033, 1, 1, 10)
        assert c.fee_paid_until_s == local(2033, 1, 1, 10)
        # Fees paid at the counter: their own records, the deposit as principal.
        assert ops_of(env, no) == ["ISSUE", "ISSUE_FEE", "ANNUAL_FEE", "OPENING_DEPOSIT"]
        entries = journal(env, no).entries
        assert [(e.amount_fen, e.principal_delta_fen) for e in entries[::-1]] == [
            (0, 0), (500, 0), (1_000, 0), (8_500, 8_500)]
    # Not enough paid for the fees: nothing is issued.
    assert failure(env.call, "cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4103], type_id=41, paid_fen=1_499)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "FEE_NOT_PAID")
    assert failure(env.pos.GetCard, pos_pb2.GetCardRequest(card_no=4103),
                   metadata=env.till_md)[1] == "RESULT_CARD_NOT_FOUND"
    assert failure(env.call, "cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4103], type_id=99)) == (grpc.StatusCode.NOT_FOUND,
                                                            "CARD_TYPE_NOT_FOUND")


def test_fees_on_the_balance_come_out_of_the_deposit(env):
    put_type(env, type_id=42, name="Fee from deposit", issue_fee_fen=500, annual_fee_fen=1_000,
             fees_on_balance=True)
    r = env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4201], type_id=42, paid_fen=10_000))
    assert (r.fees_fen, r.deposit_fen) == (1_500, 10_000)
    assert get_card(env, 4201).principal_fen == 8_500
    assert ops_of(env, 4201) == ["ISSUE", "OPENING_DEPOSIT", "ISSUE_FEE", "ANNUAL_FEE"]
    deltas = [e.principal_delta_fen for e in journal(env, 4201).entries]
    assert sum(deltas) == 8_500 and sorted(deltas) == [-1_000, -500, 0, 10_000]
    assert failure(env.call, "cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4202], type_id=42, paid_fen=1_000))[1] == "FEE_NOT_COVERED"


def test_count_cards_get_their_service_and_uses(env):
    put_type(env, type_id=43, name="10 car washes", kind=4, count_service=7, count_uses=10,
             issue_fee_fen=30_000)
    r = env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4301], type_id=43, paid_fen=30_000))
    assert (r.count_uses, r.deposit_fen) == (10, 0)
    c = get_card(env, 4301)
    assert (c.count_service, c.count_uses) == (7, 10)
    used = env.pos.UseCount(pos_pb2.UseCountRequest(client_id=cid(), card_no=4301, service=7,
                                                    uses=2), metadata=env.till_md, timeout=30)
    assert used.result.code == types_pb2.RESULT_OK and get_card(env, 4301).count_uses == 8
    assert failure(env.pos.UseCount, pos_pb2.UseCountRequest(
        client_id=cid(), card_no=4301, service=8, uses=1),
        metadata=env.till_md)[1] == "RESULT_SERVICE_MISMATCH"
    # A count card takes no deposit.
    assert failure(env.call, "cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4302], type_id=43, paid_fen=30_001))[1] == \
        "DEPOSIT_NOT_ALLOWED"


def test_supplementary_cards_on_a_primary_with_a_limit(env):
    mid = add_member(env, "cash11", "Family Head", "13700000001", store=11)
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4400], member_ids=[mid]))
    recharge(env, 4400, 20_000)
    put_type(env, type_id=44, name="Family card", kind=5, supp_annual_fee_fen=300,
             fees_on_balance=True)
    req = admin_pb2.IssueCardsRequest(client_id=cid(), card_nos=[4401, 4402], type_id=44,
                                      primary_card_no=4400, supp_limit_fen=5_000)
    r = env.call("cash11", "IssueCards", req)
    assert r.cards == 2 and r.fees_fen == 300
    assert get_card(env, 4400).principal_fen == 20_000 - 600   # both fees from the primary
    s = get_card(env, 4401)
    assert (s.primary_card_no, s.supp_limit_fen, s.principal_fen) == (4400, 5_000, 0)
    assert s.fee_paid_until_s == local(2033, 1, 1, 10)
    assert ops_of(env, 4401) == ["ISSUE", "ANNUAL_FEE"]
    # It spends from the primary, within its limit.
    assert swipe(env, 4401, 3_000).code == types_pb2.RESULT_OK
    assert get_card(env, 4400).principal_fen == 20_000 - 600 - 3_000
    assert failure(env.pos.Swipe, pos_pb2.SwipeRequest(client_id=cid(), card_no=4401,
                                                       amount_fen=2_001),
                   metadata=env.till_md)[1] == "RESULT_SUPP_LIMIT_EXCEEDED"
    assert failure(env.call, "cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4403], type_id=44))[1] == "PRIMARY_NOT_FOUND"
    assert failure(env.call, "cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4403], primary_card_no=4400))[1] == "NOT_SUPPLEMENTARY"


def test_a_refused_card_refuses_the_whole_batch(env):
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(client_id=cid(),
                                                                 card_nos=[4501]))
    before = env.engine.stats()["last_seq"]
    assert failure(env.call, "cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4502, 4501, 4503])) == (grpc.StatusCode.ALREADY_EXISTS,
                                                           "RESULT_CARD_EXISTS")
    assert env.engine.card(4502) is None and env.engine.card(4503) is None
    assert env.engine.stats()["last_seq"] == before


def test_cli_issues_by_type_and_shows_the_card(env, capsys):
    move_clock(env, local(2032, 1, 1, 10))
    assert mms(capsys, env, "mkt", "card-type", "add", "46", "--name", "Trial",
               "--validity-days", "90", "--issue-fee", "2") == "card type 46 created"
    assert "46\tTrial\tstored_value\tvalid 90 days" in mms(capsys, env, "cash11",
                                                          "card-type", "list")
    assert mms(capsys, env, "cash11", "card", "issue", "4601", "--type", "46",
               "--paid", "50") == ("1 card(s) issued: level 0, fees 2.00 yuan, deposit "
                                     "48.00 yuan each, valid until 2032-03-31")
    out = mms(capsys, env, "desk11", "card", "show", "4601")
    assert out.startswith("card 4601 ACTIVE; level 0; balance 48.00 yuan (principal 48.00, "
                          "bonus 0.00); 0 pts")
    assert out.endswith("valid until 2032-03-31") and "MEMBERSHIP ENDED" not in out
    assert mms(capsys, env, "cash11", "card", "issue", "4602", "--type", "43", "--paid",
               "300").endswith("each, 10 uses, valid until 2034-01-01")
    assert "10 uses of service 7" in mms(capsys, env, "desk11", "card", "show", "4602")
    shown = json.loads(mms(capsys, env, "desk11", "card", "show", "4601", "--json"))
    assert shown["card"]["principal_fen"] == 4800


# --- item 4: calendar years ---------------------------------------------------------------

def test_validity_is_calendar_years_in_the_chains_zone(env):
    # 2032 is a leap year: two years of 730 days would end on 2033-12-31.
    move_clock(env, local(2032, 1, 1, 10))
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(client_id=cid(),
                                                                 card_nos=[4701]))
    assert get_card(env, 4701).expires_at_s == local(2034, 1, 1, 10)
    recharge(env, 4701, 1_000_000)
    r = swipe(env, 4701, 1_000_000)                  # 10,000 yuan: 10,000 points -> silver
    assert r.level == 1
    assert get_card(env, 4701).level_expires_at_s == local(2034, 1, 1, 10)
    # 29 February plus a year is 28 February.
    put_type(env, type_id=47, name="One year", validity_years=1, annual_fee_fen=100)
    move_clock(env, local(2032, 2, 29, 23, 30))
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[4702], type_id=47, paid_fen=100))
    c = get_card(env, 4702)
    assert c.expires_at_s == c.fee_paid_until_s == local(2033, 2, 28, 23, 30)
    # Renewal: the type's years again from the day of renewal.
    move_clock(env, local(2036, 2, 29, 9))
    r = env.call("desk11", "RenewCard", admin_pb2.RenewCardRequest(client_id=cid(),
                                                                   card_no=4702,
                                                                   fee_external=True))
    assert r.expires_at_s == local(2037, 2, 28, 9)


# --- item 6: the journal follows replacements ----------------------------------------------

def test_journal_follows_the_replacement_chain_page_by_page(env, capsys):
    move_clock(env, local(2032, 6, 1, 12))
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(client_id=cid(),
                                                                 card_nos=[4801]))
    recharge(env, 4801, 50_000)
    for fen in (1_000, 2_000, 3_000):
        swipe(env, 4801, fen)
    env.call("desk11", "ReplaceCard", admin_pb2.ReplaceCardRequest(
        client_id=cid(), old_card_no=4801, new_card_no=4802))
    swipe(env, 4802, 4_000)
    env.call("desk11", "ReplaceCard", admin_pb2.ReplaceCardRequest(
        client_id=cid(), old_card_no=4802, new_card_no=4803))
    swipe(env, 4803, 5_000)
    whole = journal(env, 4803).entries
    assert [(e.card_no, e.op) for e in whole][::-1] == [
        (4801, "ISSUE"), (4801, "RECHARGE"), (4801, "SWIPE"), (4801, "SWIPE"),
        (4801, "SWIPE"), (4801, "REPLACE"),
        (4802, "ISSUE"), (4802, "REPLACEMENT_FEE"), (4802, "SWIPE"), (4802, "REPLACE"),
        (4803, "ISSUE"), (4803, "REPLACEMENT_FEE"), (4803, "SWIPE")]
    seqs = [e.seq for e in whole]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    # The old card's consumption is on the new card's history; money adds up over it.
    assert sum(e.principal_delta_fen + e.bonus_delta_fen for e in whole
               if e.card_no == 4803) == get_card(env, 4803).principal_fen
    # Pages of 4 give the same records in the same order, then the end.
    paged, before = [], 0
    for _ in range(10):
        page = journal(env, 4803, limit=4, before=before)
        paged += list(page.entries)
        before = page.next_before_seq
        if not before:
            break
    assert [e.seq for e in paged] == seqs and len(paged) == 13
    assert journal(env, 4803, limit=13).next_before_seq == 0
    assert journal(env, 4803, limit=12).next_before_seq == seqs[11]
    # The old card's own journal is unchanged: it does not show its successors.
    assert [e.card_no for e in journal(env, 4801).entries] == [4801] * 6
    out = mms(capsys, env, "desk11", "card", "journal", "4803", "--limit", "3")
    assert out.splitlines()[-1] == f"3 of 13 records; older records: --before {seqs[2]}"
    out = mms(capsys, env, "desk11", "card", "journal", "4803", "--before", str(seqs[-2]))
    assert len(out.splitlines()) == 2 and out.splitlines()[-1] == "1 of 13 records"
    assert "\tISSUE\t" in out and "\tcard 4801\t" in out


# --- item 7: a membership that ended ----------------------------------------------------------

def test_membership_ended_pays_shelf_prices_earns_nothing_until_readmitted(env, capsys):
    move_clock(env, local(2032, 1, 1, 10))
    rules = json.loads(env.call("mkt", "GetRules", admin_pb2.GetRulesRequest()).rules_json)
    rules["member_prices"] = [[555, [800, 700, 600]]]          # sku 555: shelf 10 yuan
    env.call("mkt", "SetRules", admin_pb2.SetRulesRequest(client_id=cid(),
                                                          rules_json=json.dumps(rules)))
    put_type(env, type_id=49, name="Never expires", validity_years=0)
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(client_id=cid(),
                                                                 card_nos=[4901], type_id=49))
    assert get_card(env, 4901).expires_at_s == 0
    recharge(env, 4901, 2_000_000)
    assert swipe(env, 4901, 1_000_000).level == 1            # silver until 2034-01-01
    # The first review keeps silver (10,000 yuan spent); the next period has no spend.
    move_clock(env, local(2034, 1, 1, 10))
    assert env.call("mkt", "ReviewLevels", admin_pb2.ReviewLevelsRequest(
        client_id=cid())).kept >= 1
    move_clock(env, local(2036, 1, 1, 10))
    assert env.call("mkt", "ReviewLevels", admin_pb2.ReviewLevelsRequest(
        client_id=cid())).lapsed >= 1
    c = get_card(env, 4901)
    assert c.membership_lapsed and c.level == 0 and c.status == types_pb2.CARD_STATUS_ACTIVE
    assert "MEMBERSHIP ENDED" in mms(capsys, env, "desk11", "card", "show", "4901")
    points = c.points
    # It still pays from its balance, at the shelf price, and earns no points.
    item = types_pb2.LineItem(sku=555, amount_fen=1_000, qty=1)
    r = swipe(env, 4901, 1_000, items=[item])
    assert (r.code, r.payable_fen, r.discount_fen, r.points_delta) == (
        types_pb2.RESULT_OK, 1_000, 0, 0)
    assert swipe(env, 4901, 20_000).points_delta == 0
    assert get_card(env, 4901).points == points
    # Re-admission: the service desk's, with a reason; journalled, idempotent.
    req = admin_pb2.ReadmitCardRequest(client_id=cid(), card_no=4901, reason="asked at desk")
    assert failure(env.call, "cash11", "ReadmitCard", req)[1] == "PERMISSION_NOT_GRANTED"
    assert failure(env.call, "desk11", "ReadmitCard", admin_pb2.ReadmitCardRequest(
        client_id=cid(), card_no=4901))[1] == "REASON_REQUIRED"
    r1, r2 = env.call("desk11", "ReadmitCard", req), env.call("desk11", "ReadmitCard", req)
    assert r1.level == 0 and not r1.outcome.replayed and r2.outcome.replayed
    assert r2.outcome.seq == r1.outcome.seq
    assert ops_of(env, 4901)[-1] == "LEVEL_READMIT"
    assert not get_card(env, 4901).membership_lapsed
    assert "MEMBERSHIP ENDED" not in mms(capsys, env, "desk11", "card", "show", "4901")
    r = swipe(env, 4901, 1_000, items=[item])
    assert (r.payable_fen, r.points_delta) == (800, 8)          # member price and points
    assert failure(env.call, "desk11", "ReadmitCard", admin_pb2.ReadmitCardRequest(
        client_id=cid(), card_no=4901, reason="again"))[1] == "NOT_LAPSED"
    hist = env.call("desk11", "LevelHistory", admin_pb2.LevelHistoryRequest(card_no=4901))
    assert hist.changes[0].op == "LEVEL_READMIT" and "asked at desk" in hist.changes[0].reason
    assert "FAILED_PRECONDITION NOT_LAPSED" in mms(capsys, env, "desk11", "card", "readmit",
                                                   "4901", "--reason", "x", rc=1)

