"""`mms segment ...` and `mms tag ...`: SegmentService from the command line.

    mms segment define big --definition '{"field": "spend_90d", "op": "gte", "value": 500000}'
    mms segment count big
    mms segment members big --limit 20
    mms segment export big --out big.xlsx
    mms segment report big --days 90
    mms segment rfm --set '{"frequency": {"quantile_bp": 8000}}'
    mms segment classes
    mms tag define lapsed-60 --rule '{"field": "days_since_visit", "op": "gte", "value": 60}'
    mms tag evaluate
"""

from __future__ import annotations

import json

from core.domain import report_export
from server.cli import session
from server.cli.session import CliError
from server.mms_pb import segment_pb2, segment_pb2_grpc


def _stub_call(args, method: str, request):
    with session.open_channel(args) as ch:
        return getattr(segment_pb2_grpc.SegmentServiceStub(ch), method)(
            request, metadata=session.auth_metadata(args, None),
            timeout=session.CALL_TIMEOUT_SECONDS)


def _json_arg(text: str | None, what: str) -> str:
    if text is None:
        raise CliError(f"{what} is required")
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            text = f.read()
    try:
        json.loads(text)
    except ValueError as e:
        raise CliError(f"{what} is not JSON: {e}") from None
    return text


def _query(args) -> segment_pb2.SegmentQuery:
    if bool(args.name) == bool(args.definition):
        raise CliError("give a saved segment's NAME or --definition JSON (one of them)")
    return segment_pb2.SegmentQuery(
        name=args.name or "", definition_json=_json_arg(args.definition, "--definition")
        if args.definition else "", store_id=args.store or 0,
        offset=getattr(args, "offset", 0) or 0, limit=getattr(args, "limit", 0) or 0)


def cmd_define(args) -> int:
    r = _stub_call(args, "DefineSegment", segment_pb2.DefineSegmentRequest(
        client_id=session.client_id_arg(args), name=args.name,
        definition_json=_json_arg(args.definition, "--definition")))
    session.emit(args, r, f"segment {r.name} saved{' (replayed)' if r.outcome.replayed else ''}")
    return 0


def cmd_list(args) -> int:
    r = _stub_call(args, "ListSegments", segment_pb2.ListSegmentsRequest())
    session.emit_rows(args, r, r.segments, lambda s: f"{s.name}\t{s.definition_json}")
    return 0


def cmd_delete(args) -> int:
    r = _stub_call(args, "DeleteSegment", segment_pb2.DeleteSegmentRequest(
        client_id=session.client_id_arg(args), name=args.name))
    session.emit(args, r, f"segment {args.name} deleted{' (replayed)' if r.replayed else ''}")
    return 0


def cmd_count(args) -> int:
    r = _stub_call(args, "CountSegment", _query(args))
    session.emit(args, r, f"{r.members}")
    return 0


def cmd_members(args) -> int:
    r = _stub_call(args, "ListSegmentMembers", _query(args))
    if args.json:
        session.emit(args, r, "")
    else:
        print(f"total {r.total}")
        for m in r.members:
            print(f"{m.member_id}\t{m.profile.name}\t{m.profile.phone}\t{m.profile.home_store_id}")
    return 0


def cmd_export(args) -> int:
    fmt = "xlsx" if args.out.lower().endswith(".xlsx") else "csv"
    n = 0
    with session.open_channel(args) as ch, open(args.out, "wb") as f:
        stub = segment_pb2_grpc.SegmentServiceStub(ch)
        for part in stub.ExportSegment(segment_pb2.ExportSegmentRequest(query=_query(args), format=fmt),
                                       metadata=session.auth_metadata(args, None),
                                       timeout=session.CALL_TIMEOUT_SECONDS):
            f.write(part.chunk)
            n = part.members or n
    print(f"{n} members written to {args.out}")
    return 0


CLASS_COLUMNS = ("members", "spend_fen", "visits", "share_bp")


def cmd_report(args) -> int:
    r = _stub_call(args, "SegmentReport", segment_pb2.SegmentReportRequest(
        query=_query(args), days=args.days or 0))
    if args.json:
        session.emit(args, r, "")
        return 0
    print(f"members {r.members}\tspend {report_export.yuan_text(r.spend_fen)}\tvisits {r.visits}"
          f"\tshare {r.share_bp / 100:.2f}%\tof {report_export.yuan_text(r.all_spend_fen)}"
          f"\tlast {r.days} days to {r.as_of_date}")
    for c in r.classes:
        print(f"{c.name}\t{c.rfm_class}\t{c.members}\t{report_export.yuan_text(c.spend_fen)}"
              f"\t{c.visits}\t{c.share_bp}")
    return 0


def cmd_rfm(args) -> int:
    if args.set:
        r = _stub_call(args, "SetRfmConfig", segment_pb2.SetRfmConfigRequest(
            client_id=session.client_id_arg(args), config_json=_json_arg(args.set, "--set")))
    else:
        r = _stub_call(args, "GetRfmConfig", segment_pb2.GetRfmConfigRequest())
    session.emit(args, r, r.config_json)
    return 0


def cmd_classes(args) -> int:
    r = _stub_call(args, "RfmClassCounts", segment_pb2.RfmClassCountsRequest(store_id=args.store or 0))
    if args.json:
        session.emit(args, r, "")
        return 0
    for c in r.classes:
        print(f"{c.name}\t{c.rfm_class}\t{c.members}")
    print(f"frequency >= {r.frequency_min} visits\tmonetary >= "
          f"{report_export.yuan_text(r.monetary_min_fen)}")
    return 0


def cmd_tag_define(args) -> int:
    r = _stub_call(args, "DefineRuleTag", segment_pb2.DefineRuleTagRequest(
        client_id=session.client_id_arg(args), name=args.name,
        rule_json=_json_arg(args.rule, "--rule"), description=args.description or ""))
    session.emit(args, r, f"rule tag {r.name} saved{' (replayed)' if r.outcome.replayed else ''}")
    return 0


def cmd_tag_list(args) -> int:
    r = _stub_call(args, "ListRuleTags", segment_pb2.ListRuleTagsRequest())
    session.emit_rows(args, r, r.tags,
                      lambda t: f"{t.name}\t{t.members}\t{t.evaluated_s}\t{t.rule_json}")
    return 0


def cmd_tag_delete(args) -> int:
    r = _stub_call(args, "DeleteRuleTag", segment_pb2.DeleteRuleTagRequest(
        client_id=session.client_id_arg(args), name=args.name))
    session.emit(args, r, f"rule tag {args.name} deleted{' (replayed)' if r.replayed else ''}")
    return 0


def cmd_tag_evaluate(args) -> int:
    r = _stub_call(args, "EvaluateRuleTags", segment_pb2.EvaluateRuleTagsRequest(
        client_id=session.client_id_arg(args), name=args.name or ""))
    session.emit_rows(args, r, r.evaluations,
                      lambda e: f"{e.name}\t{e.members}\t+{e.added}\t-{e.removed}")
    return 0


def add_commands(sub) -> None:
    from server.cli.admin import _common, run, whole

    def cmd(parent, name: str, func, help_: str, *, mutating: bool = False):
        p = parent.add_parser(name, help=help_)
        _common(p, mutating=mutating)
        p.set_defaults(func=lambda a: run(func, a))
        return p

    def target(p, paged: bool = False) -> None:
        p.add_argument("name", nargs="?", help="a saved segment")
        p.add_argument("--definition", help="a definition as JSON (or @file) instead of NAME")
        p.add_argument("--store", type=whole, help="only members of this home store")
        if paged:
            p.add_argument("--offset", type=whole, default=0)
            p.add_argument("--limit", type=whole, default=0, help="1..1000 (default 100)")

    sg = sub.add_parser("segment", help="segments: define, list, count, members, export, report, RFM")
    ssub = sg.add_subparsers(dest="segment_command", required=True)
    p = cmd(ssub, "define", cmd_define, "save (create or replace) a segment", mutating=True)
    p.add_argument("name")
    p.add_argument("--definition", required=True, help="JSON, or @file (docs/segments.md)")
    cmd(ssub, "list", cmd_list, "the saved segments")
    p = cmd(ssub, "delete", cmd_delete, "delete a saved segment", mutating=True)
    p.add_argument("name")
    target(cmd(ssub, "count", cmd_count, "how many members a segment holds"))
    target(cmd(ssub, "members", cmd_members, "one page of a segment's members (masked)"), paged=True)
    p = cmd(ssub, "export", cmd_export, "write a segment's members to .csv or .xlsx (masked)")
    target(p)
    p.add_argument("--out", required=True, help="FILE.csv or FILE.xlsx")
    p = cmd(ssub, "report", cmd_report, "size, spend, visits and share of sales, per RFM class")
    target(p)
    p.add_argument("--days", type=whole, default=0, help="the window, 1..366 (default 365)")
    p = cmd(ssub, "rfm", cmd_rfm, "show (or --set) the RFM thresholds", mutating=True)
    p.add_argument("--set", help="the configuration as JSON (docs/segments.md)")
    p = cmd(ssub, "classes", cmd_classes, "members per RFM class now")
    p.add_argument("--store", type=whole, help="only members of this home store")

    tg = sub.add_parser("tag", help="rule tags: define, list, delete, evaluate")
    tsub = tg.add_subparsers(dest="tag_command", required=True)
    p = cmd(tsub, "define", cmd_tag_define, "save a rule tag", mutating=True)
    p.add_argument("name")
    p.add_argument("--rule", required=True, help="a definition as JSON, or @file")
    p.add_argument("--description", default="")
    cmd(tsub, "list", cmd_tag_list, "the rule tags and their last evaluation")
    p = cmd(tsub, "delete", cmd_tag_delete, "delete a rule tag", mutating=True)
    p.add_argument("name")
    p = cmd(tsub, "evaluate", cmd_tag_evaluate, "evaluate one rule tag (or all) now", mutating=True)
    p.add_argument("name", nargs="?")
