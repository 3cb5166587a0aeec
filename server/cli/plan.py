"""`mms plan ...` and `mms campaign ...`: targeted plans and the built-in campaigns over
CampaignService (docs/campaigns.md).

    mms plan create --file spring.json
    mms plan run 3 --run-id spring-1
    mms plan results spring-1 --csv spring-1.csv
    mms campaign set sign_in --config '{"points": 5}'
    mms campaign sign-in 10001
"""

from __future__ import annotations

import json

from core.domain import report_export
from server.cli import session
from server.cli.admin import _common, whole
from server.mms_pb import campaign_pb2, campaign_pb2_grpc

# Result columns that are money (shown in yuan) and basis points (shown as percent).
_FEN = ("reached_sales_fen", "holdout_sales_fen", "face_redeemed_fen", "points_cost_fen",
        "member_price_fen", "cost_fen", "holdout_sales_scaled_fen", "incremental_sales_fen")
_BP = ("redemption_rate_bp", "roi_bp")


def _call(args, method: str, req):
    with session.open_channel(args) as ch:
        return getattr(campaign_pb2_grpc.CampaignServiceStub(ch), method)(
            req, metadata=session.auth_metadata(args, None), timeout=session.CALL_TIMEOUT_SECONDS)


def _plan_line(p) -> str:
    return f"{p.plan_id}\t{p.status}\tstore {p.store_id or 'all'}\t{p.name}"


def _run_line(r) -> str:
    return (f"run {r.run_id}\tplan {r.plan_id}\t{r.state}\ttargets {r.targets}\tholdout {r.holdout}"
            f"\treached {r.reached}\tcoupons {r.coupons}\tpoints {r.points}\tnotices {r.notices}"
            f"\tno budget {r.no_budget}")


def cmd_create(args) -> int:
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    else:
        text = args.plan
    if not text:
        raise session.CliError("give the plan: --file PLAN.json or --plan JSON")
    r = _call(args, "CreatePlan", campaign_pb2.CreatePlanRequest(
        client_id=session.client_id_arg(args), plan_json=text))
    session.emit(args, r, _plan_line(r.plan))
    return 0


def cmd_list(args) -> int:
    r = _call(args, "ListPlans", campaign_pb2.ListPlansRequest(store_id=args.store or 0))
    session.emit_rows(args, r, r.plans, _plan_line)
    return 0


def cmd_show(args) -> int:
    r = _call(args, "GetPlan", campaign_pb2.GetPlanRequest(plan_id=args.plan_id))
    session.emit(args, r, json.dumps(json.loads(r.plan.plan_json), ensure_ascii=False, indent=2))
    return 0


def cmd_pause(args) -> int:
    r = _call(args, "PausePlan", campaign_pb2.PausePlanRequest(
        client_id=session.client_id_arg(args), plan_id=args.plan_id, paused=not args.resume))
    session.emit(args, r, _plan_line(r.plan))
    return 0


def cmd_run(args) -> int:
    r = _call(args, "StartRun", campaign_pb2.StartRunRequest(
        client_id=session.client_id_arg(args), plan_id=args.plan_id, run_id=args.run_id or "",
        chunk=args.chunk or 0, wait=not args.no_wait))
    session.emit(args, r, _run_line(r.run))
    return 0


def cmd_status(args) -> int:
    r = _call(args, "GetRun", campaign_pb2.GetRunRequest(run_id=args.run_id))
    session.emit(args, r, _run_line(r.run))
    return 0


def cmd_results(args) -> int:
    r = _call(args, "RunResults", campaign_pb2.GetRunRequest(run_id=args.run_id))
    fields = [f.name for f in campaign_pb2.RunResultsReply.DESCRIPTOR.fields]
    row = {f: getattr(r, f) for f in fields}
    if args.csv:
        cols = [f for f in fields if isinstance(row[f], int)]
        with open(args.csv, "w", encoding="utf-8", newline="") as f:
            f.write(report_export.to_csv(cols, [row]))
    if args.json:
        session.emit(args, r, "")
        return 0
    for f in fields:
        v = row[f]
        if f in _FEN:
            print(f"{f[:-4]}_yuan\t{report_export.yuan_text(v)}")
        elif f in _BP:
            print(f"{f[:-3]}\t{session.bp_text(v)}")
        else:
            print(f"{f}\t{v}")
    return 0


def cmd_campaign_set(args) -> int:
    r = _call(args, "PutCampaign", campaign_pb2.PutCampaignRequest(
        client_id=session.client_id_arg(args), kind=args.kind, config_json=args.config))
    session.emit(args, r, f"{args.kind}\t{r.config_json}")
    return 0


def cmd_sign_in(args) -> int:
    r = _call(args, "SignIn", campaign_pb2.SignInRequest(
        client_id=session.client_id_arg(args), card_no=args.card_no))
    session.emit(args, r, f"signed in {r.day}\t+{r.points} points\tnow {r.card_points}")
    return 0


def _settle(method: str, what: str):
    def run(args) -> int:
        total = amount = 0
        while True:
            r = _call(args, method, campaign_pb2.SettleRequest(
                client_id=session.client_id_arg(args), name=getattr(args, "name", "") or ""))
            total, amount = total + r.count, amount + r.amount
            # A given --client-id names one settle op: a repeat would only replay it.
            if not r.more or getattr(args, "client_id", None):
                break
        unit = "points" if what == "referrals" else "fen bonus"
        session.emit(args, r, f"{what} {total}\t{amount} {unit}\tup to seq {r.upto_seq}")
        return 0
    return run


def add_commands(sub) -> None:
    def cmd(parent, name: str, func, help_: str, *, mutating: bool = False):
        p = parent.add_parser(name, help=help_)
        _common(p, mutating=mutating)
        p.set_defaults(func=lambda a: session.run(func, a))
        return p

    pl = sub.add_parser("plan", help="targeted plans: create, list, show, pause, run, results")
    psub = pl.add_subparsers(dest="plan_command", required=True)
    p = cmd(psub, "create", cmd_create, "create a plan from JSON (docs/campaigns.md)", mutating=True)
    p.add_argument("--file", help="the plan as a JSON file")
    p.add_argument("--plan", help="the plan as JSON text")
    p = cmd(psub, "list", cmd_list, "the plans you may see")
    p.add_argument("--store", type=whole, help="only this store's plans")
    p = cmd(psub, "show", cmd_show, "a plan as stored, with its spending")
    p.add_argument("plan_id", type=whole)
    p = cmd(psub, "pause", cmd_pause, "pause a plan (--resume: resume it)", mutating=True)
    p.add_argument("plan_id", type=whole)
    p.add_argument("--resume", action="store_true")
    p = cmd(psub, "run", cmd_run, "start a run, or resume the run of --run-id", mutating=True)
    p.add_argument("plan_id", type=whole)
    p.add_argument("--run-id", help="the run's id (default: a schedule plan's period)")
    p.add_argument("--chunk", type=whole, help="members per chunk (default 500)")
    p.add_argument("--no-wait", action="store_true", help="answer once the audience is frozen")
    p = cmd(psub, "status", cmd_status, "a run's progress")
    p.add_argument("run_id")
    p = cmd(psub, "results", cmd_results, "a run's results: reached vs holdout, cost, ROI")
    p.add_argument("run_id")
    p.add_argument("--csv", help="write the results to this CSV file (yuan)")

    cp = sub.add_parser("campaign", help="built-in campaigns: sign-in, referrals, recharge")
    csub = cp.add_subparsers(dest="campaign_command", required=True)
    p = cmd(csub, "set", cmd_campaign_set, "set a campaign: sign_in, referral, recharge:<name>",
            mutating=True)
    p.add_argument("kind")
    p.add_argument("--config", required=True, help="the settings as JSON")
    p = cmd(csub, "sign-in", cmd_sign_in, "the day's sign-in points for a card's member",
            mutating=True)
    p.add_argument("card_no", type=whole)
    cmd(csub, "referrals", _settle("SettleReferrals", "referrals"),
        "reward referrers for first swipes since the last settle", mutating=True)
    p = cmd(csub, "recharge", _settle("SettleRechargeCampaign", "recharges"),
            "credit a recharge campaign's bonuses", mutating=True)
    p.add_argument("name")
