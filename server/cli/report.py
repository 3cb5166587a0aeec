"""`mms report NAME`: the ReportService reports as text, JSON, CSV or .xlsx, and the
offline `mms report rebuild` and `mms report reconcile`.

    mms report sales --from 2026-11-01 --to 2026-12-01 --by store,day --xlsx out.xlsx
"""

from __future__ import annotations

import sys

from core.domain import report_export
from server.cli import session
from server.mms_pb import report_pb2, report_pb2_grpc

# name -> (RPC, help)
REPORTS = {
    "sales": ("Sales", "sales by store/region/day/hour/terminal/operator/level/category"),
    "top-skus": ("TopSkus", "the skus with the largest line amounts"),
    "liability": ("Liability", "stored value owed per day: opening ... closing"),
    "settlement": ("Settlement", "stored value of one store's cards spent at another"),
    "coupons": ("Coupons", "coupons issued, redeemed, restored per template"),
    "staff": ("Commission", "each operator's swipes, uses, refunds, sales, commission"),
    "points": ("Points", "points owed now per store of issue, level and lot year"),
    "points-expiry": ("PointsExpiry", "points the next year-end expiry run clears, per "
                                      "store of issue and level"),
    "card-stats": ("CardStats", "cards issued, cancelled, renewed, replaced, gone dormant, "
                                "reported lost, in circulation, per month"),
    "members": ("MemberActivity", "members, new, active, visits, first-visit and repeat "
                                  "shares over the window"),
    "visit-frequency": ("VisitFrequency", "members per number of visits in the window"),
    "recharge-settlement": ("RechargeSettlement", "principal recharged at one store spent "
                                                  "at another (FIFO lots by recharge store)"),
}
# Reports of the card table as it is now: no window.
AS_OF_NOW = ("points", "points-expiry")


def _report(name: str):
    def run(args) -> int:
        method = REPORTS[name][0]
        req = report_pb2.ReportRequest(
            from_date=args.from_date or "", to_date=args.to_date or "", store_id=args.store or 0,
            region_id=args.region or 0, top=getattr(args, "top", 0) or 0,
            by=[b for b in (getattr(args, "by", "") or "").split(",") if b],
            by_store=bool(getattr(args, "by_store", False)))
        with session.open_channel(args) as ch:
            resp = getattr(report_pb2_grpc.ReportServiceStub(ch), method)(
                req, metadata=session.auth_metadata(args, None),
                timeout=session.CALL_TIMEOUT_SECONDS)
        columns = list(resp.columns)
        rows = [dict(zip(columns, r.values, strict=True)) for r in resp.rows]
        key = name.replace("-", "_")
        if args.csv:
            with open(args.csv, "w", encoding="utf-8", newline="") as f:
                f.write(report_export.to_csv(columns, rows))
        if args.xlsx:
            report_export.to_xlsx(args.xlsx, key, columns, rows)
        if args.json:
            session.emit(args, resp, "")
        elif not (args.csv or args.xlsx):
            sys.stdout.write(report_export.to_csv(columns, rows).replace(",", "\t"))
        return 0
    return run


def cmd_reconcile(args) -> int:
    with session.open_channel(args) as ch:
        r = report_pb2_grpc.ReportServiceStub(ch).Reconcile(
            report_pb2.ReconcileRequest(), metadata=session.auth_metadata(args, None),
            timeout=session.CALL_TIMEOUT_SECONDS)
    for kind in ("principal", "bonus"):
        a, b = getattr(r, f"{kind}_rollup_fen"), getattr(r, f"{kind}_cards_fen")
        print(f"{kind}\trollups {report_export.yuan_text(a)}\tcards {report_export.yuan_text(b)}"
              f"\tdifference {report_export.yuan_text(a - b)}")
    print("ok" if r.ok else "MISMATCH")
    return 0 if r.ok else 1


def cmd_rebuild(args) -> int:
    """Offline (stop the server first): empty the rollups and sum the journal again."""
    from core import rebuild_rollups

    r = rebuild_rollups(args.data, args.tz_offset_s)
    print(f"rebuilt from {r.records} journal records up to seq {r.seq}")
    print(f"digest before {r.digest_before}\ndigest after  {r.digest_after}\n"
          f"{'identical' if r.digest_before == r.digest_after else 'changed'}")
    return 0


def report_day(text: str) -> str:
    """argparse's type for --from/--to: an ISO date. Reports cut whole days in the chain's
    time zone, so a date-time is refused with that reason rather than cut silently."""
    import argparse
    import datetime

    if len(text) != 10 or not text.isascii():
        raise argparse.ArgumentTypeError(
            f"{text!r}: reports cover whole days in the chain's time zone; give a date "
            "such as 2026-12-01")
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date such as 2026-12-01") from None
    return text


def add_report_commands(rpsub, cmd) -> None:
    for name, (_method, help_) in REPORTS.items():
        p = cmd(rpsub, name, _report(name), help_)
        if name not in AS_OF_NOW:
            p.add_argument("--from", dest="from_date", required=True, type=report_day,
                           help="first day, an ISO date (2026-12-01), chain time")
            p.add_argument("--to", dest="to_date", required=True, type=report_day,
                           help="day after the last, exclusive (ISO date)")
        else:
            p.set_defaults(from_date="", to_date="")
        p.add_argument("--store", type=int, help="only this store (default: your scope)")
        p.add_argument("--region", type=int, help="only this region's stores (HQ roles)")
        p.add_argument("--csv", help="write the report to this CSV file (yuan, ISO dates)")
        p.add_argument("--xlsx", help="write the report to this .xlsx file (with a chart)")
        if name == "sales":
            p.add_argument("--by", default="store",
                           help="comma-separated: store,region,day,hour,terminal,operator,level,category")
        if name == "top-skus":
            p.add_argument("--top", type=int, default=10)
        if name in ("liability", "card-stats", "members", "visit-frequency"):
            p.add_argument("--by-store", action="store_true", help="per store of issue")
    cmd(rpsub, "reconcile", cmd_reconcile,
        "liability from the rollups vs the card table; exit 1 on any fen of difference")
    p = rpsub.add_parser("rebuild", help="offline: rebuild the rollups from the journal "
                                         "(stop the server first)")
    p.add_argument("--data", required=True, help="the data directory")
    p.add_argument("--tz-offset-s", type=int, help="cut days in this zone (default: the rollups')")
    p.set_defaults(func=cmd_rebuild)
