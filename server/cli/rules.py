"""`mms rules show|diff|apply`: the chain's rules as a TOML file people edit.

    mms rules show > rules.toml      # the rules in force, every field, as TOML
    $EDITOR rules.toml
    mms rules diff rules.toml        # what apply would change, field by field
    mms rules apply rules.toml       # SetRules with the fields the file gives

The file's keys are core.RulesConfig's fields (docs/rules.md describes each): money in
integer fen (`*_fen`), rates and multipliers in basis points (`*_bp`). A field the file
leaves out keeps its value; a field it gives replaces that field whole (a list such as
`levels` or `tiers` is replaced, not merged). `version` is shown but never applied: the
server numbers each change.

apply is idempotent: it sends nothing when the file changes nothing, and its client id is
derived from the rules version it starts from and the change (or --client-id), so a retry
of an apply whose answer was lost replays instead of applying twice.
"""

from __future__ import annotations

import hashlib
import json
import sys

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

from core import RulesConfig, RulesError
from core.domain import units
from core.records import CLIENT_ID_BYTES
from server.cli.session import CliError, call_admin
from server.mms_pb import admin_pb2

# Fields shown first, in this order (the rest follow in RulesConfig's order); each gets a
# comment line in `show`.
_NOTES = {
    "version": "the rules' version (read only: the server numbers each change)",
    "points_per_yuan_bp": "points per yuan paid, in basis points (10000 = 1 point per yuan)",
    "recharge_points_per_yuan_bp": "points per yuan recharged, in basis points",
    "no_points_categories": "exclusions: categories that earn no points",
    "category_points_mult_bp": "points multipliers per category: [category, bp] pairs",
    "store_points_mult_bp": "points multipliers per store: [store id, bp] pairs",
    "offset_points_per_yuan": "points offset at the till: points per yuan of offset",
    "offset_max_bp": "offset cap: the largest share of an order points may pay, in bp",
    "offset_max_points": "offset cap: most points one order may use (0 = no cap)",
    "points_valid_years": "points earned in year Y stay valid to 31 Dec of Y + this (0 = never expire)",
    "tz_offset_s": "the chain's time zone, seconds east of UTC (28800 = Asia/Shanghai)",
    "levels": "levels, lowest first: discount_bp (10000 = full price), points_mult_bp, "
              "upgrade thresholds up_*, keep_spend_fen to keep it, validity",
    "tiers": "recharge bonus tiers, by min_pay_fen rising: bonus_fen and points given",
    "coupon_templates": "coupon templates (also `mms coupon template`)",
    "commission_rules": "staff commission per sku or category",
}


# --- TOML -----------------------------------------------------------------------------------

def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def _yuan_note(name: str, v) -> str:
    if name.endswith("_fen") and isinstance(v, int) and not isinstance(v, bool):
        return f"  # {units.yuan_text(v)} yuan"
    return ""


def to_toml(rules: dict) -> str:
    """The rules as a TOML document: scalars and plain lists first, then each list of
    records as an array of tables; money fields carry their yuan in a comment."""
    lines = ["# mms rules: `mms rules diff FILE` shows what `mms rules apply FILE` would change.",
             "# Money in fen (*_fen), rates in basis points (*_bp). docs/rules.md has every field.",
             ""]
    tables = []
    for name, v in rules.items():
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
            tables.append((name, v))
            continue
        if name in _NOTES:
            lines.append(f"# {_NOTES[name]}")
        if isinstance(v, (list, tuple)) and not v and name in ("levels", "tiers",
                                                              "coupon_templates",
                                                              "commission_rules"):
            lines.append(f"{name} = []")
            continue
        lines.append(f"{name} = {_value(v)}{_yuan_note(name, v)}")
    for name, rows in tables:
        lines.append("")
        if name in _NOTES:
            lines.append(f"# {_NOTES[name]}")
        for row in rows:
            lines.append(f"[[{name}]]")
            for k, x in row.items():
                lines.append(f"{k} = {_value(x)}{_yuan_note(k, x)}")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def read_file(path: str) -> dict:
    """The fields a rules file gives (version dropped), checked against RulesConfig."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise CliError(f"{path}: not TOML: {e}") from None
    doc.pop("version", None)
    try:
        RulesConfig.from_dict(doc)
    except RulesError as e:
        raise CliError(f"{path}: {e}") from None
    return doc


# --- the comparison -----------------------------------------------------------------------------

def _plain(v):
    """Rules values as JSON would carry them (tuples as lists), for comparing."""
    return json.loads(json.dumps(v, default=list))


def changes(current: dict, wanted: dict) -> list[tuple[str, object, object]]:
    """(path, old, new) for every value apply would change. Lists of records are
    compared record by record (levels[1].discount_bp); other lists whole."""
    out: list[tuple[str, object, object]] = []
    for name, new in wanted.items():
        old = _plain(current.get(name))
        new = _plain(new)
        if old == new:
            continue
        if (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
                and all(isinstance(x, dict) for x in old + new)):
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                for k in sorted(set(a) | set(b)):
                    if a.get(k) != b.get(k):
                        out.append((f"{name}[{i}].{k}", a.get(k), b.get(k)))
        else:
            out.append((name, old, new))
    return out


def _current(args) -> tuple[dict, int]:
    r = call_admin(args, "GetRules", admin_pb2.GetRulesRequest())
    return json.loads(r.rules_json), int(r.version)


def _client_id(args, version: int, wanted: dict) -> bytes:
    if getattr(args, "client_id", None):
        cid = bytes.fromhex(args.client_id)
        if len(cid) != CLIENT_ID_BYTES:
            raise CliError(f"--client-id is {2 * CLIENT_ID_BYTES} hex digits")
        return cid
    body = json.dumps({"from_version": version, "set": _plain(wanted)}, sort_keys=True)
    return hashlib.sha256(b"mms rules apply\0" + body.encode()).digest()[:CLIENT_ID_BYTES]


def _show_changes(diffs) -> None:
    for path, old, new in diffs:
        print(f"{path}: {json.dumps(old, ensure_ascii=False)} -> "
              f"{json.dumps(new, ensure_ascii=False)}")


# --- commands ------------------------------------------------------------------------------------

def cmd_rules_show(args) -> int:
    rules, version = _current(args)
    if args.json:
        print(json.dumps({"version": version, "rules": rules}, ensure_ascii=False))
        return 0
    sys.stdout.write(to_toml(rules))
    return 0


def cmd_rules_diff(args) -> int:
    rules, version = _current(args)
    diffs = changes(rules, read_file(args.file))
    if args.json:
        print(json.dumps({"version": version, "changes": [
            {"field": p, "old": o, "new": n} for p, o, n in diffs]}, ensure_ascii=False))
        return 0
    _show_changes(diffs)
    print(f"{len(diffs)} change(s) to rules version {version}" if diffs
          else f"no changes to rules version {version}")
    return 0


def cmd_rules_apply(args) -> int:
    rules, version = _current(args)
    wanted = read_file(args.file)
    diffs = changes(rules, wanted)
    if not diffs and not getattr(args, "client_id", None):
        if args.json:
            print(json.dumps({"version": version, "changes": 0, "replayed": False}))
        else:
            print(f"no changes; rules stay at version {version}")
        return 0
    r = call_admin(args, "SetRules", admin_pb2.SetRulesRequest(
        client_id=_client_id(args, version, wanted), rules_json=json.dumps(_plain(wanted))))
    if args.json:
        print(json.dumps({"version": r.version, "changes": len(diffs),
                          "replayed": r.outcome.replayed, "seq": r.outcome.seq}))
        return 0
    _show_changes(diffs)
    print(f"rules version {r.version} in force"
          + (" (replay: applied before)" if r.outcome.replayed else
             f" ({len(diffs)} change(s) from version {version})"))
    return 0


def add_rules_commands(sub, cmd) -> None:
    r = sub.add_parser("rules", help="the chain's rules as a TOML file: show, diff, apply")
    rsub = r.add_subparsers(dest="rules_command", required=True)
    cmd(rsub, "show", cmd_rules_show, "print the rules in force as TOML (every field)")
    p = cmd(rsub, "diff", cmd_rules_diff, "what `apply FILE` would change")
    p.add_argument("file", help="a rules TOML file")
    p = cmd(rsub, "apply", cmd_rules_apply, "set the fields the file gives (idempotent)",
            mutating=True)
    p.add_argument("file", help="a rules TOML file")
