"""`mms` subcommands for the back office: each is one AdminService call to a running server.

    mms login --target HOST:PORT --login alice     # stores the session (0600)
    mms member add --name 张三 --phone 13800138000
    mms card issue 8800001 --member 1
    mms member search --name 张 --json

The session comes from --session, else $MMS_SESSION, else the file `mms login` wrote
($XDG_CONFIG_HOME/mms/session, by default ~/.config/mms/session), which also remembers
the target. Every change sends a fresh 16-byte client id; pass --client-id HEX to retry
a change whose answer was lost without applying it twice. Each command prints one short
line, or the response as JSON with --json; a refused call prints its status and reason
to stderr and exits 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import uuid

from core.domain import units
from core.domain.member_view import MEMBER_LEVEL_HISTORY_MAX
from core.records import is_ascii_digits
from server.cli.session import (
    DEFAULT_TARGET,
    CliError,
    auth_metadata,
    call_admin,
    client_id_arg,
    emit,
    emit_rows,
    member_price_text,
    open_channel,
    read_password,
    run,
    save_session,
    shown_date,
    shown_time,
    target_of,
    when,
    yuan,
)
from server.mms_pb import admin_pb2, admin_pb2_grpc, types_pb2

_CARD_STATUS = {"freeze": ("CARD_STATUS_FROZEN", "frozen"),
                "unfreeze": ("CARD_STATUS_ACTIVE", "active"),
                "lost": ("CARD_STATUS_LOST", "reported lost"),
                "found": ("CARD_STATUS_ACTIVE", "active"),
                "cancel": ("CARD_STATUS_CANCELLED", "cancelled")}

# --- commands -----------------------------------------------------------------------------

def cmd_bootstrap(args) -> int:
    token = args.bootstrap_token
    if not token and args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    if not token:
        raise CliError("pass --token-file <data>/bootstrap.token or --bootstrap-token")
    r = call_admin(args, "Bootstrap", admin_pb2.BootstrapRequest(
        client_id=client_id_arg(args), chain_name=args.name, admin_login=args.admin_login,
        admin_password=read_password(args, "admin_password"), admin_name=args.admin_name),
        token=token)
    emit(args, r, f"chain {args.name!r} created; admin {r.admin.login} is operator "
                   f"{r.admin.operator_id}")
    return 0


def cmd_login(args) -> int:
    r = call_admin(args, "Login", admin_pb2.LoginRequest(login=args.login, password=read_password(args)),
              auth=False)
    path = save_session({"target": target_of(args), "session": r.session_token,
                         "login": r.operator.login, "expires_s": r.expires_s})
    if args.print_token:
        print(r.session_token)
    else:
        emit(args, r.operator, f"logged in as {r.operator.login} ({r.operator.role}); "
                                f"session saved in {path}")
    return 0


def cmd_node_add(args) -> int:
    kind = admin_pb2.NodeKind.Value("NODE_KIND_" + args.kind.upper())
    r = call_admin(args, "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=client_id_arg(args), kind=kind, parent_id=args.parent, name=args.name,
        node_id=args.id or 0))
    emit(args, r, f"{args.kind} {r.node.node_id} {r.node.name!r} under {r.node.parent_id}")
    return 0


def cmd_node_list(args) -> int:
    kind = admin_pb2.NodeKind.Value("NODE_KIND_" + args.kind.upper()) if args.kind else 0
    r = call_admin(args, "ListNodes", admin_pb2.ListNodesRequest(kind=kind))
    if args.json:
        emit(args, r, "")
    else:
        for n in r.nodes:
            kind_name = admin_pb2.NodeKind.Name(n.kind).removeprefix("NODE_KIND_").lower()
            closed = f"\tclosed {shown_date(args, n.closed_s)}" if n.closed_s else ""
            print(f"{n.node_id}\t{kind_name}\t{n.parent_id}\t{n.name}{closed}")
    return 0


def cmd_terminal_add_chain(args) -> int:
    node = call_admin(args, "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=client_id_arg(args), kind=admin_pb2.NODE_KIND_TERMINAL, parent_id=args.store_id,
        name=args.name or f"till {args.terminal_id or ''}".strip(),
        node_id=args.terminal_id or 0)).node
    r = call_admin(args, "IssueTerminalToken", admin_pb2.IssueTerminalTokenRequest(
        client_id=uuid.uuid4().bytes, terminal_id=node.node_id))
    # The token is shown once; only its hash is stored.
    emit(args, r, r.token)
    return 0


def cmd_terminal_token(args) -> int:
    r = call_admin(args, "IssueTerminalToken", admin_pb2.IssueTerminalTokenRequest(
        client_id=client_id_arg(args), terminal_id=args.terminal_id))
    emit(args, r, r.token or "(replay: the token was shown by the first call; issue again)")
    return 0


def cmd_terminal_revoke_chain(args) -> int:
    r = call_admin(args, "RevokeTerminalToken", admin_pb2.RevokeTerminalTokenRequest(
        client_id=client_id_arg(args), terminal_id=args.terminal_id))
    emit(args, r, f"terminal {args.terminal_id}: token revoked")
    return 0


def cmd_operator_add(args) -> int:
    r = call_admin(args, "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=client_id_arg(args), login=args.login, password=read_password(args), role=args.role,
        name=args.name, home_store_id=args.store or 0, home_region_id=args.region or 0))
    o = r.operator
    emit(args, r, f"operator {o.operator_id} {o.login} ({o.role}"
                   f"{f', store {o.home_store_id}' if o.home_store_id else ''}"
                   f"{f', region {o.home_region_id}' if o.home_region_id else ''})")
    return 0


def cmd_operator_disable(args) -> int:
    r = call_admin(args, "DisableOperator", admin_pb2.DisableOperatorRequest(
        client_id=client_id_arg(args), operator_id=args.operator_id))
    emit(args, r, f"operator {r.operator.operator_id} {r.operator.login} disabled")
    return 0


def cmd_operator_passwd(args) -> int:
    own = not args.operator_id
    old = read_password(args, "old_password", "current password: ") if own else ""
    new = args.new_password or os.environ.get("MMS_NEW_PASSWORD") or getpass.getpass("new password: ")
    r = call_admin(args, "ResetPassword", admin_pb2.ResetPasswordRequest(
        client_id=client_id_arg(args), operator_id=args.operator_id or 0, new_password=new,
        old_password=old))
    emit(args, r, "password changed; that operator's sessions have ended")
    return 0


def _profile(args) -> admin_pb2.MemberProfile:
    p = admin_pb2.MemberProfile(name=args.name or "", phone=args.phone or "",
                                id_no=args.id_no or "", gender=args.gender or "",
                                birthday=args.birthday or "", address=args.address or "",
                                source=args.source or "", home_store_id=args.store or 0)
    p.tags.extend(args.tag or [])
    return p


def _member_line(m) -> str:
    p = m.profile
    status = admin_pb2.MemberStatus.Name(m.status).removeprefix("MEMBER_STATUS_").lower()
    return (f"member {m.member_id} {p.name} phone {p.phone or '-'} store {p.home_store_id} "
            f"{status}")


def cmd_member_add(args) -> int:
    r = call_admin(args, "CreateMember", admin_pb2.CreateMemberRequest(client_id=client_id_arg(args),
                                                                   profile=_profile(args)))
    emit(args, r, f"member {r.member_id} {'exists (replay)' if r.outcome.replayed else 'created'}")
    return 0


def _card_lines(args, v) -> list[str]:
    """One card of a member or card view, for people: several lines."""
    c = v.card
    head = (f"card {c.card_no}  {v.status_name}  type {c.type_id} {v.type_name} ({v.type_kind})"
            f"  level {c.level} {v.level_name}")
    if c.level_expires_at_s:
        head += f" until {shown_date(args, c.level_expires_at_s)}"
    lines = [head]
    if v.replaced_by_card_no:
        lines.append(f"  replaced by card {v.replaced_by_card_no}")
    if v.replaced_card_nos:
        lines.append(f"  replaces card(s) {' '.join(str(n) for n in v.replaced_card_nos)}")
    valid = (f"valid until {shown_date(args, c.expires_at_s)}" if c.expires_at_s
             else "never expires")
    lines.append(f"  issued {shown_date(args, v.issued_at_s)}, {valid}"
                 + (f", annual fee paid until {shown_date(args, c.fee_paid_until_s)}"
                    if c.fee_paid_until_s else ""))
    lines.append(f"  balance {yuan(c.principal_fen + c.bonus_fen)} yuan "
                 f"(principal {yuan(c.principal_fen)}, bonus {yuan(c.bonus_fen)})")
    lots = ", ".join(f"{lot.points} earned {lot.year}"
                     + (f" valid until {lot.valid_until}" if lot.valid_until else "")
                     for lot in v.lots)
    perm = f", {v.permanent_points} never expire" if v.permanent_points else ""
    lines.append(f"  points {c.points}" + (f" ({lots}{perm})" if lots or perm else ""))
    if c.count_service:
        lines.append(f"  {c.count_uses} uses left of service {c.count_service}")
    if c.primary_card_no:
        limit = (f"limit {yuan(c.supp_limit_fen)} yuan, spent {yuan(v.supp_spent_fen)}"
                 if c.supp_limit_fen else "no limit")
        lines.append(f"  supplementary: spends from card {c.primary_card_no} ({limit})")
    if v.supplementary_card_nos:
        lines.append("  supplementary cards: "
                     + " ".join(str(n) for n in v.supplementary_card_nos))
    lines.append(f"  spend {yuan(c.spend_total_fen)} yuan, recharged "
                 f"{yuan(c.recharge_total_fen)} yuan, {c.visits} visits, last "
                 f"{shown_time(args, c.last_visit_s)}")
    if c.plan_price_bp:
        lines.append(f"  {member_price_text(args, c)}")
    if c.membership_lapsed:
        lines.append("  MEMBERSHIP ENDED: shelf prices, no points until re-admitted "
                     "(mms card readmit)")
    return lines


def _journal_line(args, e) -> str:
    return (f"{e.seq}\t{shown_time(args, e.time_s)}\t{e.op}\tcard {e.card_no}\t"
            f"store {e.store_id}\toperator {e.operator_id}\t{yuan(e.amount_fen)} yuan\t"
            f"balance {yuan(e.balance_after_fen)}\tpoints {e.points_after}")


def cmd_member_show(args) -> int:
    r = call_admin(args, "GetMember", admin_pb2.GetMemberRequest(
        member_id=args.member_id, reveal=args.reveal, journal_limit=args.journal_limit,
        journal_before_seq=args.journal_before or 0))
    if args.json:
        emit(args, r, "")
        return 0
    m, p = r.member, r.member.profile
    print(_member_line(m))
    print(f"  id no {p.id_no or '-'}, gender {p.gender or '-'}, birthday {p.birthday or '-'}, "
          f"source {p.source or '-'}, joined {shown_date(args, m.created_s)}, "
          f"version {m.version}")
    print(f"  tags: {', '.join(p.tags) or '-'}")
    if p.referrer_id:
        print(f"  referred by member {p.referrer_id}")
    print(f"cards: {len(r.card_views)}")
    for v in r.card_views:
        for line in _card_lines(args, v):
            print(line)
    print(f"coupons held: {len(r.coupons)}")
    for c, no in zip(r.coupons, r.coupon_card_nos, strict=True):
        print(f"  coupon {c.coupon_id}\ttemplate {c.template_id}\tcard {no}\tvalid "
              f"{shown_date(args, c.valid_from_s)}..{shown_date(args, c.valid_to_s)}")
    print(f"level history: {len(r.level_history)}"
          + (" (the latest; mms card level-history CARD for a card's older ones)"
             if len(r.level_history) >= MEMBER_LEVEL_HISTORY_MAX else ""))
    for h in r.level_history:
        print(f"  {_level_change_line(args, h)}")
    print(f"journal: {len(r.journal)} latest records")
    for e in r.journal:
        print(f"  {_journal_line(args, e)}")
    if r.journal_next_before_seq:
        print(f"(older records: --journal-before {r.journal_next_before_seq})")
    return 0


def cmd_member_find(args) -> int:
    r = call_admin(args, "FindMemberByPhone", admin_pb2.FindMemberByPhoneRequest(phone=args.phone))
    emit(args, r, _member_line(r.member))
    return 0


def _search_request(args) -> admin_pb2.SearchMembersRequest:
    q = admin_pb2.SearchMembersRequest(
        phone=args.phone or "", name=args.name or "", name_contains=args.contains,
        card_no=args.card or 0, store_id=args.store or 0, limit=getattr(args, "limit", 0) or 0,
        offset=getattr(args, "offset", 0) or 0)
    q.tags.extend(args.tag or [])
    if args.level is not None:
        q.level = args.level
    if args.spend_min is not None:
        q.spend_min_fen = args.spend_min
    if args.spend_max is not None:
        q.spend_max_fen = args.spend_max
    if args.last_visit_from is not None:
        q.last_visit_from_s = when(args, args.last_visit_from)
    if args.last_visit_to is not None:
        q.last_visit_to_s = when(args, args.last_visit_to)
    if args.status:
        q.status = admin_pb2.MemberStatus.Value("MEMBER_STATUS_" + args.status.upper())
    return q


def cmd_member_search(args) -> int:
    r = call_admin(args, "SearchMembers", _search_request(args))
    emit_rows(args, r, r.members, _member_line)
    if not args.json:
        print(_page_line(len(r.members), r.total, args.offset, "members"))
    return 0


def _page_line(n: int, total: int, offset: int, what: str) -> str:
    """"3 of 120 members (1-3); next page: --offset 3", so a page is never taken for all."""
    line = f"{n} of {total} {what}"
    if n:
        line += f" ({offset + 1}-{offset + n})"
    if offset + n < total:
        line += f"; next page: --offset {offset + n}"
    return line


def cmd_member_status(args) -> int:
    status = {"freeze": admin_pb2.MEMBER_STATUS_FROZEN, "unfreeze": admin_pb2.MEMBER_STATUS_ACTIVE,
              "cancel": admin_pb2.MEMBER_STATUS_CANCELLED,
              "restore": admin_pb2.MEMBER_STATUS_ACTIVE}[args.member_command]
    r = call_admin(args, "SetMemberStatus", admin_pb2.SetMemberStatusRequest(
        client_id=client_id_arg(args), member_id=args.member_id, status=status, reason=args.reason or ""))
    emit(args, r, f"member {args.member_id}: {args.member_command} done")
    return 0


def cmd_member_import(args) -> int:
    from server.cli.member_files import cmd_member_import as run_import

    return run_import(args)


def cmd_member_export(args) -> int:
    fmt = "xlsx" if args.file.lower().endswith(".xlsx") else "csv"
    req = admin_pb2.ExportMembersRequest(query=_search_request(args), format=fmt)
    n = 0
    tmp = args.file + ".part"
    with open_channel(args) as ch, open(tmp, "wb") as f:
        for part in admin_pb2_grpc.AdminServiceStub(ch).ExportMembers(
                req, metadata=auth_metadata(args), timeout=None):
            f.write(part.chunk)
            n = part.members or n
    os.replace(tmp, args.file)
    if args.json:
        print(json.dumps({"members": n, "file": args.file}))
    else:
        print(f"{n} members written to {args.file}")
    return 0


def cmd_card_issue(args) -> int:
    req = admin_pb2.IssueCardsRequest(client_id=client_id_arg(args), card_nos=args.card_nos,
                                      type_id=args.type, store_id=args.store or 0,
                                      paid_fen=args.paid, primary_card_no=args.primary or 0,
                                      supp_limit_fen=args.supp_limit)
    if args.member:
        req.member_ids.extend([args.member] * len(args.card_nos))
    r = call_admin(args, "IssueCards", req)
    valid = (f"valid until {shown_date(args, r.expires_at_s)}" if r.expires_at_s
             else "never expires")
    uses = f", {r.count_uses} uses" if r.count_uses else ""
    emit(args, r, f"{r.cards} card(s) issued: level {r.level}, fees {yuan(r.fees_fen)} yuan, "
                   f"deposit {yuan(r.deposit_fen)} yuan each{uses}, {valid}"
                   f"{' (replay)' if r.replayed else ''}")
    return 0


def cmd_card_show(args) -> int:
    r = call_admin(args, "ShowCard", admin_pb2.ShowCardRequest(card_no=args.card_no))
    if args.detail and not args.json:
        for line in _card_lines(args, r.view):
            print(line)
        return 0
    c = r.card
    status = types_pb2.CardStatus.Name(c.status).removeprefix("CARD_STATUS_")
    parts = [f"card {c.card_no} {status}", f"level {c.level}",
             f"balance {yuan(c.principal_fen + c.bonus_fen)} yuan "
             f"(principal {yuan(c.principal_fen)}, bonus {yuan(c.bonus_fen)})",
             f"{c.points} pts"]
    if c.count_service:
        parts.append(f"{c.count_uses} uses of service {c.count_service}")
    if c.primary_card_no:
        limit = f"limit {yuan(c.supp_limit_fen)} yuan" if c.supp_limit_fen else "no limit"
        parts.append(f"spends from card {c.primary_card_no} ({limit})")
    parts.append(f"valid until {shown_date(args, c.expires_at_s)}" if c.expires_at_s
                 else "never expires")
    if c.plan_price_bp:
        parts.append(member_price_text(args, c))
    if r.view.replaced_by_card_no:
        parts.append(f"replaced by card {r.view.replaced_by_card_no}")
    if c.membership_lapsed:
        parts.append("MEMBERSHIP ENDED: shelf prices, no points until re-admitted "
                     "(mms card readmit)")
    emit(args, r, "; ".join(parts))
    return 0


def cmd_card_recharge(args) -> int:
    r = call_admin(args, "RechargeCard", admin_pb2.RechargeCardRequest(
        client_id=client_id_arg(args), card_no=args.card_no, amount_fen=args.amount))
    o = r.result
    bonus = f" + bonus {yuan(o.bonus_delta_fen)}" if o.bonus_delta_fen else ""
    emit(args, r, f"card {args.card_no}: recharged {yuan(args.amount)} yuan{bonus} by "
                   f"operator {r.operator_id} at store {r.store_id}; balance "
                   f"{yuan(o.principal_fen + o.bonus_fen)} yuan (principal "
                   f"{yuan(o.principal_fen)}, bonus {yuan(o.bonus_fen)})"
                   f"{' (replay)' if o.replayed else ''}")
    return 0


def cmd_card_readmit(args) -> int:
    r = call_admin(args, "ReadmitCard", admin_pb2.ReadmitCardRequest(
        client_id=client_id_arg(args), card_no=args.card_no, reason=args.reason))
    emit(args, r, f"card {args.card_no}: re-admitted at level {r.level}{_replay(r)}")
    return 0


def cmd_card_status(args) -> int:
    name, word = _CARD_STATUS[args.card_command]
    r = call_admin(args, "SetCardStatus", admin_pb2.SetCardStatusRequest(
        client_id=client_id_arg(args), card_no=args.card_no, status=types_pb2.CardStatus.Value(name)))
    emit(args, r, f"card {args.card_no}: {word}")
    return 0


def cmd_card_pin(args) -> int:
    if args.reset:
        r = call_admin(args, "ResetPin", admin_pb2.ResetPinRequest(client_id=client_id_arg(args),
                                                              card_no=args.card_no))
        emit(args, r, f"card {args.card_no}: PIN removed and unlocked")
        return 0
    pin = args.pin or os.environ.get("MMS_PIN") or getpass.getpass("PIN: ")
    r = call_admin(args, "SetPin", admin_pb2.SetPinRequest(client_id=client_id_arg(args), card_no=args.card_no,
                                                      pin=pin))
    emit(args, r, f"card {args.card_no}: PIN set")
    return 0


def cmd_card_journal(args) -> int:
    r = call_admin(args, "GetCardJournal", admin_pb2.GetCardJournalRequest(
        card_no=args.card_no, limit=args.limit, before_seq=args.before or 0))
    emit_rows(args, r, r.entries, lambda e: _journal_line(args, e))
    if not args.json:
        more = f"; older records: --before {r.next_before_seq}" if r.next_before_seq else ""
        print(f"{len(r.entries)} of {r.total} records{more}")
    return 0


def cmd_points(args) -> int:
    if args.points_command == "expire":
        r = call_admin(args, "ExpirePoints", admin_pb2.ExpirePointsRequest(client_id=client_id_arg(args)))
        emit(args, r, f"{r.expired_points} points expired on {r.cards} cards")
    else:
        r = call_admin(args, "RemindExpiringPoints", admin_pb2.RemindExpiringPointsRequest(
            client_id=client_id_arg(args), min_points=args.min_points))
        emit(args, r, f"{r.notices} reminders written to the outbox")
    return 0


def _replay(r) -> str:
    return " (replay)" if r.outcome.replayed else ""


def cmd_card_replace(args) -> int:
    req = admin_pb2.ReplaceCardRequest(client_id=client_id_arg(args), old_card_no=args.old_card_no,
                                       new_card_no=args.new_card_no,
                                       fee_external=args.fee_external)
    if args.fee is not None:
        req.fee_fen = args.fee
    r = call_admin(args, "ReplaceCard", req)
    emit(args, r, f"card {args.old_card_no} replaced by {r.new_card_no}: moved "
                   f"{yuan(r.moved_principal_fen + r.moved_bonus_fen)} yuan and "
                   f"{r.moved_points} pts, fee {yuan(r.fee_fen)} yuan"
                   f"{_coupons_moved(r)}{_replay(r)}")
    return 0


def _coupons_moved(r) -> str:
    return f", {len(r.coupon_ids)} coupons moved" if r.coupon_ids else ""


def cmd_card_renew(args) -> int:
    req = admin_pb2.RenewCardRequest(client_id=client_id_arg(args), card_no=args.card_no,
                                     fee_external=args.fee_external)
    if args.fee is not None:
        req.fee_fen = args.fee
    if args.days is not None:
        req.validity_days = args.days
    r = call_admin(args, "RenewCard", req)
    until = shown_date(args, r.expires_at_s) if r.expires_at_s else "never"
    emit(args, r, f"card {args.card_no}: renewed until {until}, "
                   f"fee {yuan(r.fee_fen)} yuan{_replay(r)}")
    return 0


def cmd_card_annual_fee(args) -> int:
    r = call_admin(args, "PayAnnualFee", admin_pb2.PayAnnualFeeRequest(
        client_id=client_id_arg(args), card_no=args.card_no, external=args.external))
    emit(args, r, f"card {args.card_no}: annual fee {yuan(r.fee_fen)} yuan paid until "
                   f"{shown_date(args, r.fee_paid_until_s)}{_replay(r)}")
    return 0


def cmd_card_expire_dormant(args) -> int:
    r = call_admin(args, "ExpireDormantCards", admin_pb2.ExpireDormantCardsRequest(client_id=client_id_arg(args)))
    emit(args, r, f"{r.cards} cards made dormant{_replay(r)}")
    return 0


def cmd_card_level(args) -> int:
    r = call_admin(args, "SetLevel", admin_pb2.SetLevelRequest(
        client_id=client_id_arg(args), card_no=args.card_no, level=args.level, reason=args.reason,
        approver_id=args.approver))
    emit(args, r, f"card {args.card_no}: level {r.level_before} -> {r.level}{_replay(r)}")
    return 0


def cmd_card_levels_review(args) -> int:
    r = call_admin(args, "ReviewLevels", admin_pb2.ReviewLevelsRequest(client_id=client_id_arg(args)))
    emit(args, r, f"{r.reviewed} cards reviewed: {r.kept} kept, {r.downgraded} downgraded, "
                   f"{r.lapsed} lapsed{_replay(r)}")
    return 0


def cmd_card_level_history(args) -> int:
    r = call_admin(args, "LevelHistory", admin_pb2.LevelHistoryRequest(card_no=args.card_no,
                                                                  limit=args.limit))
    emit_rows(args, r, r.changes, lambda c: _level_change_line(args, c))
    if not args.json:
        more = (f"; there may be older ones: --limit {min(2 * args.limit, 1000)}"
                if len(r.changes) == args.limit else "")
        print(f"{len(r.changes)} level changes, newest first{more}")
    return 0


def _level_change_line(args, c) -> str:
    until = f"\tuntil {shown_date(args, c.level_expires_at_s)}" if c.level_expires_at_s else ""
    return (f"{c.seq}\t{shown_time(args, c.time_s)}\tcard {c.card_no}\t{c.op}\t"
            f"{c.level_before} -> {c.level_after}{until}\toperator {c.operator_id}\t{c.reason}")


def cmd_points_adjust(args) -> int:
    r = call_admin(args, "AdjustPoints", admin_pb2.AdjustPointsRequest(
        client_id=client_id_arg(args), card_no=args.card_no, delta=args.delta, reason=args.reason,
        force=args.force))
    emit(args, r, f"card {args.card_no}: {args.delta:+d} pts, {r.points} pts now{_replay(r)}")
    return 0


def cmd_points_make_up(args) -> int:
    r = call_admin(args, "MakeUpPoints", admin_pb2.MakeUpPointsRequest(
        client_id=client_id_arg(args), card_no=args.card_no, receipt_id=args.receipt, paid_fen=args.paid,
        receipt_time_s=when(args, args.time), receipt_store_id=args.store or 0, category=args.category))
    emit(args, r, f"card {args.card_no}: {r.points_earned} pts for receipt {args.receipt}, "
                   f"{r.points} pts now{_replay(r)}")
    return 0


def cmd_points_gift_add(args) -> int:
    r = call_admin(args, "PutGift", admin_pb2.PutGiftRequest(client_id=client_id_arg(args), gift=admin_pb2.Gift(
        gift_id=args.gift_id, name=args.name, points_cost=args.cost, stock=args.stock,
        active=not args.inactive, coupon_template_id=args.coupon_template)))
    emit(args, r, f"gift {args.gift_id} {'created' if r.created else 'changed'}{_replay(r)}")
    return 0


def cmd_points_gifts(args) -> int:
    r = call_admin(args, "ListGifts", admin_pb2.ListGiftsRequest(active_only=args.active_only))
    if args.json:
        emit(args, r, "")
    else:
        for g in r.gifts:
            state = "" if g.active else "\twithdrawn"
            coupon = f"\tcoupon template {g.coupon_template_id}" if g.coupon_template_id else ""
            print(f"{g.gift_id}\t{g.name}\t{g.points_cost} pts\tstock {g.stock}{coupon}{state}")
    return 0


def cmd_points_redeem(args) -> int:
    r = call_admin(args, "RedeemGift", admin_pb2.RedeemGiftRequest(
        client_id=client_id_arg(args), card_no=args.card_no, gift_id=args.gift_id, qty=args.qty))
    emit(args, r, f"card {args.card_no}: {args.qty} x gift {args.gift_id} for {r.points_cost} "
                   f"pts, {r.points} pts left, stock {r.stock}"
                   f"{f', coupons {list(r.coupon_ids)}' if r.coupon_ids else ''}{_replay(r)}")
    return 0


def cmd_notify_pull(args) -> int:
    req = admin_pb2.PullNoticesRequest(limit=args.limit)
    if args.after is not None:
        req.after_seq = args.after
    r = call_admin(args, "PullNotices", req)
    if args.json:
        emit(args, r, "")
    else:
        for n in r.notices:
            print(f"{n.seq}\t{n.kind}\tcard {n.card_no}\tmember {n.member_id}\t"
                  f"{yuan(n.amount_fen)} yuan\tbalance {yuan(n.balance_fen)}\tpoints {n.points}")
        print(f"next {r.next_seq}")
    return 0


def cmd_notify_ack(args) -> int:
    r = call_admin(args, "AckNotices", admin_pb2.AckNoticesRequest(client_id=client_id_arg(args),
                                                              upto_seq=args.upto_seq))
    emit(args, r, f"cursor {r.cursor}, {r.dropped} reminders dropped{_replay(r)}")
    return 0


def cmd_coupon_template(args) -> int:
    t = admin_pb2.CouponTemplate(
        template_id=args.template_id, name=args.name, kind=args.kind, value_fen=args.value,
        min_spend_fen=args.min_spend, max_off_fen=args.max_off, gift_sku=args.gift_sku,
        stackable=args.stackable, stores=args.store or [], categories=args.category or [],
        levels=args.level or [], valid_days=args.valid_days,
        total_quantity=args.quantity, budget_fen=args.budget)
    if args.percent_bp is not None:
        t.percent_bp = args.percent_bp
    r = call_admin(args, "PutCouponTemplate", admin_pb2.PutCouponTemplateRequest(
        client_id=client_id_arg(args), template=t))
    emit(args, r, f"coupon template {args.template_id} "
                   f"{'created' if r.created else 'changed'} (rules v{r.version}){_replay(r)}")
    return 0


def cmd_coupon_templates(args) -> int:
    r = call_admin(args, "ListCouponTemplates", admin_pb2.ListCouponTemplatesRequest())
    emit_rows(args, r, r.templates, lambda t: (
        f"{t.template_id}\t{t.name}\t{t.kind}\tvalue {yuan(t.value_fen)} yuan\t"
        f"{t.valid_days} days\tquantity {t.total_quantity or 'unlimited'}"))
    return 0


def cmd_coupon_issue(args) -> int:
    req = admin_pb2.IssueCouponsRequest(client_id=client_id_arg(args), template_id=args.template_id,
                                        card_nos=args.card_nos)
    if args.valid_from is not None:
        req.valid_from_s = when(args, args.valid_from)
    r = call_admin(args, "IssueCoupons", req)
    emit(args, r, f"{len(r.coupon_ids)} coupons of template {args.template_id}: "
                   f"{' '.join(str(i) for i in r.coupon_ids)}{_replay(r)}")
    return 0


_COUPON_STATUS = {1: "issued", 2: "redeemed", 3: "void"}


def _coupon_saving(c) -> str:
    return f"\tsaved {yuan(c.redeemed_fen)} yuan" if c.status == 2 else ""


def cmd_coupon_list(args) -> int:
    r = call_admin(args, "ListCardCoupons", admin_pb2.ListCardCouponsRequest(
        card_no=args.card_no, include_used=args.all))
    emit_rows(args, r, r.coupons, lambda c: (
        f"{c.coupon_id}\ttemplate {c.template_id}\t{_COUPON_STATUS.get(c.status, c.status)}\t"
        f"valid {shown_date(args, c.valid_from_s)}..{shown_date(args, c.valid_to_s)}"
        + _coupon_saving(c)))
    return 0


_CARD_KINDS = ("stored_value", "discount", "points", "count", "supplementary")


def cmd_card_type_add(args) -> int:
    t = admin_pb2.CardType(
        type_id=args.type_id, name=args.name, kind=_CARD_KINDS.index(args.kind) + 1,
        issue_fee_fen=args.issue_fee, fees_on_balance=args.fees_on_balance,
        annual_fee_fen=args.annual_fee, supp_annual_fee_fen=args.supp_annual_fee,
        replacement_fee_fen=args.replacement_fee, renewal_fee_fen=args.renewal_fee,
        recharge_allowed=not args.no_recharge, recharge_store_ids=args.recharge_store or [],
        recharge_operator_ids=args.recharge_operator or [], count_service=args.count_service,
        count_uses=args.count_uses, initial_level=args.initial_level)
    if args.validity_days is not None:
        t.validity_days = args.validity_days
    if args.validity_years is not None:
        t.validity_years = args.validity_years
    r = call_admin(args, "PutCardType", admin_pb2.PutCardTypeRequest(client_id=client_id_arg(args), card_type=t))
    emit(args, r, f"card type {args.type_id} {'created' if r.created else 'changed'}{_replay(r)}")
    return 0


def _validity(t) -> str:
    if t.validity_years:
        return f"valid {t.validity_years} years"
    return f"valid {t.validity_days} days" if t.validity_days else "never expires"


def cmd_card_type_list(args) -> int:
    r = call_admin(args, "ListCardTypes", admin_pb2.ListCardTypesRequest())
    emit_rows(args, r, r.card_types, lambda t: (
        f"{t.type_id}\t{t.name}\t{_CARD_KINDS[t.kind - 1] if 1 <= t.kind <= 5 else t.kind}"
        f"\t{_validity(t)}\treplacement {yuan(t.replacement_fee_fen)} yuan"
        f"\tannual {yuan(t.annual_fee_fen)} yuan"))
    return 0


def cmd_audit(args) -> int:
    r = call_admin(args, "AuditLog", admin_pb2.AuditLogRequest(
        since_seq=args.since, operator_id=args.operator or 0, store_id=args.store or 0,
        limit=args.limit))
    emit_rows(args, r, r.events, lambda e: (
        f"{e.seq}\t{shown_time(args, e.time_s)}\t{e.op}\toperator {e.operator_id}\t"
        f"store {e.store_id}\t{e.detail_json}"))
    if not args.json:
        more = f"; next page: --since {r.next_since_seq}" if r.next_since_seq else ""
        print(f"{len(r.events)} of {r.total} events after seq {args.since}{more}")
    return 0


def cmd_operator_list(args) -> int:
    r = call_admin(args, "ListOperators", admin_pb2.ListOperatorsRequest(
        store_id=args.store or 0, limit=args.limit, offset=args.offset,
        include_disabled=args.all))
    emit_rows(args, r, r.operators, lambda o: (
        f"{o.operator_id}\t{o.login}\t{o.role}\tstore {o.home_store_id or '-'}\t"
        f"{o.name or '-'}{chr(9) + 'disabled' if o.disabled else ''}"))
    if not args.json:
        print(_page_line(len(r.operators), r.total, args.offset, "operators"))
    return 0


def cmd_report_commission(args) -> int:
    r = call_admin(args, "CommissionReport", admin_pb2.CommissionReportRequest(
        since_s=when(args, args.since), until_s=when(args, args.until), store_id=args.store or 0))
    emit_rows(args, r, r.rows, lambda w: (
        f"operator {w.operator_id}\t{w.swipes} swipes\t{w.uses} uses\t{w.refunds} refunds"
        f"\tsales {yuan(w.sales_fen)} yuan\tcommission {yuan(w.commission_fen)} yuan"))
    return 0


# --- the parser -------------------------------------------------------------------------------

def whole(text: str) -> int:
    """argparse's type for ids, amounts and counts: ASCII digits 0-9 with an optional
    leading minus. int() alone also takes full-width and Arabic-Indic digits, "_" and
    spaces, which the server and the till would then read differently."""
    if not is_ascii_digits(text[1:] if text.startswith("-") else text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number in digits 0-9")
    return int(text)


def yuan_amount(text: str) -> int:
    """argparse's type for money: yuan as people write them ("12", "12.3", "0.01") ->
    integer fen (core.domain.units.parse_yuan; "12.345" and negatives are refused)."""
    try:
        return units.parse_yuan(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def time_text(text: str) -> str:
    """argparse's type for times: an ISO date or date-time (read in the chain's zone when
    the command runs, session.when) or unix seconds; the form is checked here."""
    if is_ascii_digits(text):
        return text
    try:
        units.parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


TIME_HELP = "ISO date or date-time in the chain's time zone (2026-12-01, 2026-12-01T08:30)"


def _common(p: argparse.ArgumentParser, *, mutating: bool = False) -> None:
    p.add_argument("--target", help="server HOST:PORT (default: $MMS_TARGET, the saved "
                                    f"session's, or {DEFAULT_TARGET})")
    p.add_argument("--session", help="session token (default: $MMS_SESSION or `mms login`'s)")
    p.add_argument("--ca", help="CA certificate for a TLS server")
    p.add_argument("--json", action="store_true", help="print the response as JSON")
    if mutating:
        p.add_argument("--client-id", help="32 hex digits: repeat a change without applying "
                                           "it twice")


def _query_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--contains", action="store_true", help="match the name anywhere")
    p.add_argument("--phone")
    p.add_argument("--card", type=whole)
    p.add_argument("--level", type=whole)
    p.add_argument("--tag", action="append")
    p.add_argument("--store", type=whole)
    p.add_argument("--spend-min", type=yuan_amount, help="yuan (12.30)")
    p.add_argument("--spend-max", type=yuan_amount, help="yuan (12.30)")
    p.add_argument("--last-visit-from", type=time_text, help="latest visit at or after: "
                                                              + TIME_HELP)
    p.add_argument("--last-visit-to", type=time_text, help="latest visit at or before: "
                                                            + TIME_HELP)
    p.add_argument("--status", choices=("active", "frozen", "cancelled"))


def add_commands(sub, terminal_sub) -> None:
    """Add the back-office commands to `mms`'s subparsers (and the chain forms of
    `mms terminal add|revoke`, which apply when --file is not given)."""
    def cmd(parent, name: str, func, help_: str, *, mutating: bool = False):
        p = parent.add_parser(name, help=help_)
        _common(p, mutating=mutating)
        p.set_defaults(func=lambda a: run(func, a))
        return p

    c = sub.add_parser("chain", help="the chain's tree: bootstrap, regions, stores")
    csub = c.add_subparsers(dest="chain_command", required=True)
    p = cmd(csub, "bootstrap", cmd_bootstrap, "create HQ and the first admin", mutating=True)
    p.add_argument("--name", required=True, help="the chain's name")
    p.add_argument("--admin-login", required=True)
    p.add_argument("--admin-password", help="default: $MMS_PASSWORD or a prompt")
    p.add_argument("--admin-name", default="")
    p.add_argument("--token-file", help="the server's <data>/bootstrap.token")
    p.add_argument("--bootstrap-token")
    p = cmd(csub, "add", cmd_node_add, "add a region, store or terminal node", mutating=True)
    p.add_argument("--kind", choices=("region", "store", "terminal"), required=True)
    p.add_argument("--parent", type=whole, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--id", type=whole, help="the node id to use (default: the next)")
    p = cmd(csub, "list", cmd_node_list, "list the tree")
    p.add_argument("--kind", choices=("hq", "region", "store", "terminal"))

    p = cmd(sub, "login", cmd_login, "log in as an operator and save the session")
    p.add_argument("--login", required=True)
    p.add_argument("--password", help="default: $MMS_PASSWORD or a prompt")
    p.add_argument("--print-token", action="store_true", help="print the session token")

    m = sub.add_parser("member", help="members: add, show, find, search, import, export...")
    msub = m.add_subparsers(dest="member_command", required=True)
    p = cmd(msub, "add", cmd_member_add, "enrol a member", mutating=True)
    p.add_argument("--name", required=True)
    for flag in ("--phone", "--id-no", "--gender", "--birthday", "--address", "--source"):
        p.add_argument(flag)
    p.add_argument("--tag", action="append")
    p.add_argument("--store", type=whole, help="home store (default: the operator's)")
    p = cmd(msub, "show", cmd_member_show, "a member's profile, cards, points lots, coupons, "
                                           "level history and latest journal (会员360)")
    p.add_argument("member_id", type=whole)
    p.add_argument("--reveal", action="store_true", help="phone and ID in full (audited)")
    p.add_argument("--journal-limit", type=whole, default=20,
                   help="journal records to show (1..1000)")
    p.add_argument("--journal-before", type=whole,
                   help="only journal records older than this seq (the next page)")
    p = cmd(msub, "find", cmd_member_find, "find a member by phone")
    p.add_argument("phone")
    p = cmd(msub, "search", cmd_member_search, "search members")
    _query_args(p)
    p.add_argument("--limit", type=whole, default=50)
    p.add_argument("--offset", type=whole, default=0)
    p = cmd(msub, "import", cmd_member_import, "import a .csv or .xlsx file")
    p.add_argument("file")
    p.add_argument("--file-id", help="a key for the file (default: its SHA-256)")
    p.add_argument("--errors", help="write the refused rows to this CSV: their cells, line "
                                    "and reason, ready to fix and import again")
    p.add_argument("--update", action="store_true",
                   help="a row whose phone or ID number belongs to a member updates that "
                        "member instead of being refused")
    p = cmd(msub, "export", cmd_member_export, "export members to .csv or .xlsx (masked)")
    p.add_argument("file")
    _query_args(p)
    for name in ("freeze", "unfreeze", "cancel", "restore"):
        p = cmd(msub, name, cmd_member_status, f"{name} a member", mutating=True)
        p.add_argument("member_id", type=whole)
        p.add_argument("--reason")

    k = sub.add_parser("card", help="cards: issue, show, freeze, lost, found, cancel, pin, "
                                   "journal, replace, renew, annual-fee, level, readmit...")
    ksub = k.add_subparsers(dest="card_command", required=True)
    p = cmd(ksub, "issue", cmd_card_issue, "issue cards by their card type's rules",
            mutating=True)
    p.add_argument("card_nos", type=whole, nargs="+")
    p.add_argument("--member", type=whole, help="the member who holds them")
    p.add_argument("--type", type=whole, default=0, help="card type (0: the default type)")
    p.add_argument("--paid", type=yuan_amount, default=0,
                   help="yuan each holder pays: fees at the counter plus the opening deposit")
    p.add_argument("--primary", type=whole, help="supplementary cards: the primary card")
    p.add_argument("--supp-limit", type=yuan_amount, default=0,
                   help="supplementary cards: spend limit in yuan (0: none)")
    p.add_argument("--store", type=whole)
    p = cmd(ksub, "show", cmd_card_show, "a card's state, with its membership")
    p.add_argument("card_no", type=whole)
    p.add_argument("--detail", action="store_true",
                   help="every detail: type, level validity, points lots and their expiry, "
                        "replacements, supplementary cards, totals")
    p = cmd(ksub, "recharge", cmd_card_recharge,
            "pay stored value into a card as your operator (needs the recharge permission)",
            mutating=True)
    p.add_argument("card_no", type=whole)
    p.add_argument("amount", type=yuan_amount, help="yuan paid in (12.30)")
    p = cmd(ksub, "readmit", cmd_card_readmit, "re-admit a card whose membership ended",
            mutating=True)
    p.add_argument("card_no", type=whole)
    p.add_argument("--reason", required=True)
    for name in _CARD_STATUS:
        p = cmd(ksub, name, cmd_card_status, f"{name} a card", mutating=True)
        p.add_argument("card_no", type=whole)
    p = cmd(ksub, "pin", cmd_card_pin, "set a card's PIN, or --reset it", mutating=True)
    p.add_argument("card_no", type=whole)
    p.add_argument("--pin", help="default: $MMS_PIN or a prompt")
    p.add_argument("--reset", action="store_true", help="remove the PIN and its lockout")
    p = cmd(ksub, "journal", cmd_card_journal,
            "a card's journal records with those of the cards it replaced, newest first")
    p.add_argument("card_no", type=whole)
    p.add_argument("--limit", type=whole, default=20)
    p.add_argument("--before", type=whole, help="only records older than this seq (next page)")
    p = cmd(ksub, "replace", cmd_card_replace, "replace a card; the new one takes its balance",
            mutating=True)
    p.add_argument("old_card_no", type=whole)
    p.add_argument("new_card_no", type=whole)
    p.add_argument("--fee", type=yuan_amount,
                   help="yuan (default: the card type's replacement fee)")
    p.add_argument("--fee-external", action="store_true", help="the fee was paid at the counter")
    p = cmd(ksub, "renew", cmd_card_renew, "renew a dormant or expired card", mutating=True)
    p.add_argument("card_no", type=whole)
    p.add_argument("--fee", type=yuan_amount, help="yuan (default: the card type's renewal fee)")
    p.add_argument("--fee-external", action="store_true", help="the fee was paid at the counter")
    p.add_argument("--days", type=whole, help="validity (default: the card type's)")
    p = cmd(ksub, "annual-fee", cmd_card_annual_fee, "charge one year of a card's annual fee",
            mutating=True)
    p.add_argument("card_no", type=whole)
    p.add_argument("--external", action="store_true", help="the fee was paid at the counter")
    cmd(ksub, "expire-dormant", cmd_card_expire_dormant, "make expired cards dormant",
        mutating=True)
    p = cmd(ksub, "level", cmd_card_level, "change a card's level (needs an approver)",
            mutating=True)
    p.add_argument("card_no", type=whole)
    p.add_argument("level", type=whole)
    p.add_argument("--reason", required=True)
    p.add_argument("--approver", type=whole, required=True, help="the approving operator's id")
    cmd(ksub, "levels-review", cmd_card_levels_review, "review levels past their validity",
        mutating=True)
    p = cmd(ksub, "level-history", cmd_card_level_history, "a card's level changes")
    p.add_argument("card_no", type=whole)
    p.add_argument("--limit", type=whole, default=100)

    kt = sub.add_parser("card-type", help="card types: add (or change), list")
    ktsub = kt.add_subparsers(dest="card_type_command", required=True)
    p = cmd(ktsub, "add", cmd_card_type_add, "create or change a card type", mutating=True)
    p.add_argument("type_id", type=whole)
    p.add_argument("--name", required=True)
    p.add_argument("--kind", choices=_CARD_KINDS, default="stored_value")
    p.add_argument("--validity-years", type=whole,
                   help="calendar years a card is valid (default 2 unless --validity-days)")
    p.add_argument("--validity-days", type=whole,
                   help="days a card is valid instead (0 with --validity-years 0: never expires)")
    p.add_argument("--fees-on-balance", action="store_true",
                   help="take the fees at issue from the opening deposit")
    for flag, default in (("--issue-fee", 0), ("--annual-fee", 0), ("--supp-annual-fee", 0),
                          ("--replacement-fee", 1000), ("--renewal-fee", 0)):
        p.add_argument(flag, type=yuan_amount, default=default,
                       help=f"yuan (default {units.yuan_text(default)})")
    p.add_argument("--no-recharge", action="store_true", help="cards may not be recharged")
    p.add_argument("--recharge-store", type=whole, action="append", help="only at this store")
    p.add_argument("--recharge-operator", type=whole, action="append", help="only by this operator")
    p.add_argument("--count-service", type=whole, default=0)
    p.add_argument("--count-uses", type=whole, default=0)
    p.add_argument("--initial-level", type=whole, default=0)
    cmd(ktsub, "list", cmd_card_type_list, "list the card types")

    o = sub.add_parser("operator", help="operators: add, list, disable, passwd")
    osub = o.add_subparsers(dest="operator_command", required=True)
    p = cmd(osub, "list", cmd_operator_list, "the operators, by id (a page, with the total)")
    p.add_argument("--store", type=whole, help="only this store's (store roles: always yours)")
    p.add_argument("--all", action="store_true", help="disabled operators too")
    p.add_argument("--limit", type=whole, default=100)
    p.add_argument("--offset", type=whole, default=0)
    p = cmd(osub, "add", cmd_operator_add, "add an operator", mutating=True)
    p.add_argument("--login", required=True)
    p.add_argument("--role", required=True, choices=("admin", "store_manager", "cashier",
                                                     "customer_service", "finance", "marketing",
                                                     "auditor", "region_manager"))
    p.add_argument("--store", type=whole, help="home store (store roles)")
    p.add_argument("--region", type=whole, help="home region (region_manager)")
    p.add_argument("--name", default="")
    p.add_argument("--password", help="default: $MMS_PASSWORD or a prompt")
    p = cmd(osub, "disable", cmd_operator_disable, "disable an operator", mutating=True)
    p.add_argument("operator_id", type=whole)
    p = cmd(osub, "passwd", cmd_operator_passwd,
            "set an operator's password (yours without an id)", mutating=True)
    p.add_argument("operator_id", type=whole, nargs="?", default=0)
    p.add_argument("--old-password", help="yours, to change your own")
    p.add_argument("--new-password", help="default: $MMS_NEW_PASSWORD or a prompt")

    pt = sub.add_parser("points", help="points: expire, remind, adjust, make-up, gifts, redeem")
    psub = pt.add_subparsers(dest="points_command", required=True)
    cmd(psub, "expire", cmd_points, "clear points past their validity", mutating=True)
    p = cmd(psub, "remind", cmd_points, "remind holders of points expiring this year",
            mutating=True)
    p.add_argument("--min-points", type=whole, default=1)
    p = cmd(psub, "adjust", cmd_points_adjust, "add or take a card's points by hand",
            mutating=True)
    p.add_argument("card_no", type=whole)
    p.add_argument("delta", type=whole, help="points to add, or negative to take")
    p.add_argument("--reason", required=True)
    p.add_argument("--force", action="store_true", help="take more than the card holds")
    p = cmd(psub, "make-up", cmd_points_make_up, "points for a receipt without the card",
            mutating=True)
    p.add_argument("card_no", type=whole)
    p.add_argument("--receipt", required=True, help="the receipt's id")
    p.add_argument("--paid", type=yuan_amount, required=True, help="yuan (12.30)")
    p.add_argument("--time", type=time_text, required=True, help="the receipt's time: " + TIME_HELP)
    p.add_argument("--store", type=whole, help="the receipt's store (default: yours)")
    p.add_argument("--category", type=whole, default=0)
    p = cmd(psub, "gift-add", cmd_points_gift_add, "create or change a gift", mutating=True)
    p.add_argument("gift_id", type=whole)
    p.add_argument("--name", required=True)
    p.add_argument("--cost", type=whole, required=True, help="points")
    p.add_argument("--stock", type=whole, required=True)
    p.add_argument("--inactive", action="store_true", help="withdraw the gift")
    p.add_argument("--coupon-template", type=whole, default=0,
                   help="a coupon for points: the coupon template each unit puts on the card")
    p = cmd(psub, "gifts", cmd_points_gifts, "the gift catalogue")
    p.add_argument("--active-only", action="store_true")
    p = cmd(psub, "redeem", cmd_points_redeem, "exchange a card's points for a gift",
            mutating=True)
    p.add_argument("card_no", type=whole)
    p.add_argument("gift_id", type=whole)
    p.add_argument("--qty", type=whole, default=1)

    nt = sub.add_parser("notify", help="member notices for a sender: pull, ack")
    ntsub = nt.add_subparsers(dest="notify_command", required=True)
    p = cmd(ntsub, "pull", cmd_notify_pull, "notices after a seq (default: the cursor)")
    p.add_argument("--after", type=whole, help="journal seq; default: the acknowledged cursor")
    p.add_argument("--limit", type=whole, default=1000, help="journal records to read")
    p = cmd(ntsub, "ack", cmd_notify_ack, "acknowledge notices up to a seq", mutating=True)
    p.add_argument("upto_seq", type=whole)

    cp = sub.add_parser("coupon", help="coupons: template, templates, issue, list")
    cpsub = cp.add_subparsers(dest="coupon_command", required=True)
    p = cmd(cpsub, "template", cmd_coupon_template, "create or change a coupon template",
            mutating=True)
    p.add_argument("template_id", type=whole)
    p.add_argument("--name", required=True)
    p.add_argument("--kind", required=True, choices=("fixed", "percent", "threshold", "gift"))
    p.add_argument("--value", type=yuan_amount, default=0,
                   help="yuan: the saving, or a gift's value")
    p.add_argument("--percent-bp", type=whole, help="percent: the share paid, 8000 = 20%% off")
    p.add_argument("--min-spend", type=yuan_amount, default=0, help="yuan")
    p.add_argument("--max-off", type=yuan_amount, default=0,
                   help="yuan; percent: the largest saving")
    p.add_argument("--gift-sku", type=whole, default=0)
    p.add_argument("--stackable", action="store_true")
    p.add_argument("--store", type=whole, action="append", help="only at this store")
    p.add_argument("--category", type=whole, action="append", help="only for this category")
    p.add_argument("--level", type=whole, action="append", help="only for this level")
    p.add_argument("--valid-days", type=whole, default=30)
    p.add_argument("--quantity", type=whole, default=0, help="most coupons issued; 0: no limit")
    p.add_argument("--budget", type=yuan_amount, default=0,
                   help="yuan of face value; 0: no limit")
    cmd(cpsub, "templates", cmd_coupon_templates, "the coupon templates in force")
    p = cmd(cpsub, "issue", cmd_coupon_issue, "put a coupon of a template on each card",
            mutating=True)
    p.add_argument("template_id", type=whole)
    p.add_argument("card_nos", type=whole, nargs="+")
    p.add_argument("--valid-from", type=time_text, help=TIME_HELP + "; default now")
    p = cmd(cpsub, "list", cmd_coupon_list, "a card's coupons")
    p.add_argument("card_no", type=whole)
    p.add_argument("--all", action="store_true", help="redeemed and void ones too")

    rp = sub.add_parser("report", help="reports: sales, liability, settlement, ... (commission)")
    rpsub = rp.add_subparsers(dest="report_command", required=True)
    from server.cli.report import add_report_commands
    add_report_commands(rpsub, cmd)
    p = cmd(rpsub, "commission", cmd_report_commission,
            "each operator's swipes, uses, refunds, sales and commission in a window")
    p.add_argument("--since", type=time_text, required=True, help="inclusive: " + TIME_HELP)
    p.add_argument("--until", type=time_text, required=True, help="exclusive: " + TIME_HELP)
    p.add_argument("--store", type=whole, help="only this store (default: your scope)")

    p = cmd(sub, "audit", cmd_audit, "the audit trail, oldest first")
    p.add_argument("--since", type=whole, default=0, help="only events after this seq")
    p.add_argument("--operator", type=whole)
    p.add_argument("--store", type=whole)
    p.add_argument("--limit", type=whole, default=100)

    from server.cli.rules import add_rules_commands
    add_rules_commands(sub, cmd)

    p = cmd(terminal_sub, "token", cmd_terminal_token,
            "issue a new token for a chain terminal (revokes its old one)", mutating=True)
    p.add_argument("--terminal-id", type=whole, required=True)


def add_chain_terminal_args(add: argparse.ArgumentParser, revoke: argparse.ArgumentParser) -> None:
    """`mms terminal add|revoke` without --file talk to the server's chain."""
    for p in (add, revoke):
        _common(p, mutating=True)
