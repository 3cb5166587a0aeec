"""AdminService handlers of members: create, update, status, the 360 read with audited
reveals, lookup and search, and the import and export of member files."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator

import grpc

from core.domain.member_view import member_journal, member_level_history
from core.domain.members import (
    PROFILE_FIELDS,
    SEARCH_LIMIT_MAX,
    MemberQuery,
    MemberStatus,
    read_csv,
    read_xlsx,
)
from core.domain.rbac import PermissionDenied, Role
from core.records import (
    AuditOp,
)
from server.mms_pb import admin_pb2
from server.rpc.admin.backoffice import (
    card_view_pb,
    coupon_pb,
    journal_entry_pb,
    level_change_pb,
)
from server.rpc.admin.base import (
    _MEMBER_STATUS,
    CARD_JOURNAL_MAX,
    IMPORT_BYTES_MAX,
    IMPORT_ROW_ERRORS_MAX,
    MEMBER_JOURNAL_DEFAULT,
    REVEAL_ROLES,
    SEARCH_LIMIT_DEFAULT,
    Call,
    _check,
    _outcome,
    client_id,
    export_chunks,
    export_format,
    handler,
)
from server.rpc.codec import card_pb
from server.rpc.constants import CLIENT_ID_BYTES
from server.rpc.errors import RpcFailure, invalid, page_limit, seq_cursor

log = logging.getLogger("mms.admin")


# --- members ------------------------------------------------------------------------------

def _profile_dict(p: admin_pb2.MemberProfile, names=PROFILE_FIELDS) -> dict:
    out: dict = {}
    for name in names:
        if name not in PROFILE_FIELDS:
            raise invalid("MEMBER_INVALID", f"unknown profile field {name!r}", field=name)
        v = getattr(p, name)
        if name in ("prefs", "tags"):
            v = list(v)
        elif name == "custom":
            v = dict(v)
        out[name] = v
    return out


def member_pb(m: dict) -> admin_pb2.Member:
    prof = admin_pb2.MemberProfile(
        name=m.get("name") or "", phone=m.get("phone") or "", id_no=m.get("id_no") or "",
        gender=m.get("gender") or "", birthday=m.get("birthday") or "",
        address=m.get("address") or "", photo=m.get("photo") or "",
        source=m.get("source") or "", prefs=m.get("prefs") or [],
        custom={str(k): str(v) for k, v in (m.get("custom") or {}).items()},
        tags=m.get("tags") or [], referrer_id=int(m.get("referrer_id") or 0),
        home_store_id=int(m.get("home_store_id") or 0))
    status = MemberStatus[str(m.get("status", "active")).upper()]
    return admin_pb2.Member(member_id=int(m["member_id"]), profile=prof,
                            status=_MEMBER_STATUS[status], created_s=int(m.get("created_s") or 0),
                            updated_s=int(m.get("updated_s") or 0),
                            version=int(m.get("version") or 0))


@handler("CreateMember")
async def create_member(call: Call, req):
    cid = client_id(req)
    prof = _profile_dict(req.profile)
    store = prof.get("home_store_id") or call.act_store()
    call.authorize("member.write", store)
    r = await call.run(call.members.create, prof, cid, operator_id=call.operator_id,
                       store_id=store or 0)
    return admin_pb2.CreateMemberResponse(member_id=r.member_id, outcome=_outcome(r))


@handler("UpdateMember")
async def update_member(call: Call, req):
    cid = client_id(req)
    if not req.fields:
        raise invalid("MEMBER_INVALID", "name the fields to change in `fields`", field="fields")
    changes = _profile_dict(req.profile, list(req.fields))
    store = call.member_store(req.member_id)
    call.authorize("member.write", store)
    if "home_store_id" in changes:
        call.authorize("member.write", changes["home_store_id"] or None)
    r = await call.run(call.members.update, req.member_id, changes, cid,
                       expected_version=req.expected_version or None,
                       operator_id=call.operator_id, store_id=store or 0)
    return admin_pb2.UpdateMemberResponse(version=int(r.value.get("version", 0)),
                                          changed=r.value.get("changed", []), outcome=_outcome(r))


@handler("SetMemberStatus")
async def set_member_status(call: Call, req):
    cid = client_id(req)
    if req.status not in (1, 2, 3):
        raise invalid("MEMBER_INVALID", "status must be active, frozen or cancelled",
                      field="status")
    store = call.member_store(req.member_id)
    call.authorize("member.write", store)
    r = await call.run(call.members.set_status, req.member_id, MemberStatus(req.status), cid,
                       reason=req.reason, operator_id=call.operator_id, store_id=store or 0)
    return admin_pb2.SetMemberStatusResponse(outcome=_outcome(r))


def _audit_reveal(call: Call, member_id: int, store: int | None) -> None:
    detail = {"member_id": member_id, "fields": ["phone", "id_no"]}

    def build(ctx):
        ctx.detail = detail
        return detail

    r = call.engine.admin(os.urandom(CLIENT_ID_BYTES), AuditOp.MEMBER_REVEAL, build,
                          operator_id=call.operator_id, store_id=store or 0).result()
    _check(r)


@handler("GetMember")
async def get_member(call: Call, req):
    store = call.member_store(req.member_id)
    p = call.authorize("member.read", store)
    if req.reveal:
        if Role(p.role) not in REVEAL_ROLES:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "REVEAL_NOT_GRANTED",
                             f"role {Role(p.role).value} may not see members' phone and ID "
                             "number in full", {"role": Role(p.role).value})
        # Audited before it is shown: a reveal that is not recorded does not happen.
        await call.run(_audit_reveal, call, int(req.member_id), store)
    m = call.members.get(req.member_id, reveal=req.reveal)
    held = call.members.cards_of(req.member_id)
    limit = page_limit(req.journal_limit, MEMBER_JOURNAL_DEFAULT, CARD_JOURNAL_MAX,
                       "journal_limit")
    before = seq_cursor(req.journal_before_seq, "journal_before_seq")
    nos = [int(c["card_no"]) for c in held]
    out = admin_pb2.GetMemberResponse(member=member_pb(m), cards=[card_pb(c) for c in held])
    out.card_views.extend(card_view_pb(call.engine, c) for c in held)
    for no in nos:
        for c in sorted(call.engine.coupons_of(no), key=lambda c: c["coupon_id"]):
            if c["coupon_status"] == 1:
                out.coupons.append(coupon_pb(c))
                out.coupon_card_nos.append(no)
    recs, nxt = await call.run(member_journal, call.engine, nos, limit, before)
    out.journal.extend(journal_entry_pb(r) for r in recs)
    out.journal_next_before_seq = nxt
    hist = await call.run(member_level_history, call.engine, nos)
    out.level_history.extend(level_change_pb(h) for h in hist)
    return out


@handler("FindMemberByPhone")
async def find_member_by_phone(call: Call, req):
    call.principal()
    mid = call.members.id_by_phone(req.phone)
    m = call.members.get(mid) if mid is not None else None
    not_found = RpcFailure(grpc.StatusCode.NOT_FOUND, "MEMBER_NOT_FOUND", "no member has this phone")
    if m is None:
        raise not_found
    try:
        call.authorize("member.read", int(m.get("home_store_id") or 0) or None)
    except PermissionDenied as e:
        # A store role must not learn that the phone belongs to another store's member.
        if e.reason == "OTHER_STORE":
            raise not_found from None
        raise
    return admin_pb2.FindMemberByPhoneResponse(member=member_pb(m))


def _query(call: Call, q: admin_pb2.SearchMembersRequest, permission: str) -> MemberQuery:
    own = call.act_store()
    store = own if own is not None else (q.store_id or None)
    if own is not None and q.store_id and q.store_id != own:
        store = q.store_id  # authorize refuses it with OTHER_STORE
    call.authorize(permission, store)
    return MemberQuery(
        phone=q.phone or None, id_no=q.id_no or None, name=q.name or None,
        name_contains=q.name_contains, card_no=q.card_no or None,
        level=q.level if q.HasField("level") else None, tags=tuple(q.tags), store_id=store,
        spend_min_fen=q.spend_min_fen if q.HasField("spend_min_fen") else None,
        spend_max_fen=q.spend_max_fen if q.HasField("spend_max_fen") else None,
        last_visit_from_s=q.last_visit_from_s if q.HasField("last_visit_from_s") else None,
        last_visit_to_s=q.last_visit_to_s if q.HasField("last_visit_to_s") else None,
        status=MemberStatus(q.status) if q.status else None,
        limit=page_limit(q.limit, SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX), offset=q.offset)


@handler("SearchMembers")
async def search_members(call: Call, req):
    q = _query(call, req, "member.read")
    res = await call.run(call.members.search, q)
    return admin_pb2.SearchMembersResponse(total=res.total,
                                           members=[member_pb(m) for m in res.members])


def _scoped_rows(rows, home: int | None):
    """Rows of an import, with rows for another store refused when the caller is bound
    to one store (the core would import them as they say)."""
    for line, row in rows:
        if home is not None and isinstance(row, dict):
            want = str(row.get("home_store_id") or "").strip()
            if want not in ("", "0", str(home)):
                row = f"home_store_id {want} is not store {home}"
        yield line, row


@handler("ImportMembers", "client_stream")
async def import_members(call: Call, request_iterator):
    home = call.act_store()
    call.authorize("member.write", home)
    fd, path = tempfile.mkstemp(prefix="mms-import-")
    sha = hashlib.sha256()
    name, file_id, size, update_existing = "", "", 0, False
    try:
        with os.fdopen(fd, "wb") as f:
            first = True
            async for msg in request_iterator:
                if first:
                    name, file_id, first = msg.file_name, msg.file_id, False
                    update_existing = msg.update_existing
                size += len(msg.chunk)
                if size > IMPORT_BYTES_MAX:
                    raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "IMPORT_TOO_LARGE",
                                     f"an import file is at most {IMPORT_BYTES_MAX} bytes")
                sha.update(msg.chunk)
                f.write(msg.chunk)
        lower = name.lower()
        if not lower.endswith((".csv", ".xlsx")):
            raise invalid("IMPORT_FORMAT", "file_name must end in .csv or .xlsx", field="file_name")
        if lower.endswith(".xlsx"):
            xpath = path + ".xlsx"  # openpyxl goes by the extension
            os.replace(path, xpath)
            path = xpath
        rows = read_xlsx(path) if lower.endswith(".xlsx") else read_csv(path)
        report = await call.run(call.members.import_rows, _scoped_rows(rows, home),
                                file_id=file_id or sha.hexdigest(),
                                operator_id=call.operator_id, store_id=home or 0,
                                update_existing=update_existing, scope_store=home)
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    errors = sorted(report.errors, key=lambda e: e.line)[:IMPORT_ROW_ERRORS_MAX]
    return admin_pb2.ImportMembersResponse(
        file_id=report.file_id, rows=report.rows, created=report.created,
        already_imported=report.already_imported, errors=report.n_errors,
        updated=report.updated,
        row_errors=[admin_pb2.ImportRowError(line=e.line, reason=e.reason) for e in errors])


@handler("ExportMembers", "server_stream")
async def export_members(call: Call, req) -> AsyncIterator[admin_pb2.ExportMembersResponse]:
    fmt = export_format(req)
    q = _query(call, req.query, "export")
    members = call.members
    async for r in export_chunks(call, fmt, "mms-export-", lambda path: members.export(path, q),
                                 admin_pb2.ExportMembersResponse):
        yield r
