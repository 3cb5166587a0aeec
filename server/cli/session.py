"""The connection and session of the back-office commands: the target, the saved
session, client ids, the call with its timeout, and how an answer or a refusal is
printed. Shared by every `mms` command that talks to a running server."""

from __future__ import annotations

import getpass
import json
import os
import sys
import uuid

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from core.domain import units
from core.records import CLIENT_ID_BYTES, is_ascii_digits
from server.mms_pb import admin_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:7000"
CALL_TIMEOUT_SECONDS = 120.0



class CliError(Exception):
    pass


# --- session and channel ----------------------------------------------------------------

def session_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "mms", "session")


def saved_session() -> dict:
    try:
        with open(session_path()) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def save_session(doc: dict) -> str:
    path = session_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)
    return path


def target_of(args) -> str:
    return args.target or os.environ.get("MMS_TARGET") or saved_session().get("target") or DEFAULT_TARGET


def open_channel(args) -> grpc.Channel:
    target = target_of(args)
    if args.ca:
        with open(args.ca, "rb") as f:
            return grpc.secure_channel(target, grpc.ssl_channel_credentials(f.read()))
    return grpc.insecure_channel(target)


def auth_metadata(args, token: str | None = None):
    token = token or args.session or os.environ.get("MMS_SESSION") or saved_session().get("session")
    if not token:
        raise CliError("no session: run `mms login` or pass --session / set MMS_SESSION")
    return (("authorization", f"Bearer {token}"),)


def client_id_arg(args) -> bytes:
    if getattr(args, "client_id", None):
        cid = bytes.fromhex(args.client_id)
        if len(cid) != CLIENT_ID_BYTES:
            raise CliError(f"--client-id is {2 * CLIENT_ID_BYTES} hex digits")
        return cid
    return uuid.uuid4().bytes


def read_password(args, attr: str = "password", prompt: str = "password: ") -> str:
    value = getattr(args, attr, None) or os.environ.get("MMS_PASSWORD")
    return value if value else getpass.getpass(prompt)


# protobuf's JSON mapping writes 64-bit integers as strings (for JavaScript's doubles);
# `--json` is for programs, so they get numbers: fen, points, seqs and unix seconds.
_INT64_TYPES = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64,
                          FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_FIXED64,
                          FieldDescriptor.TYPE_SFIXED64})


def _numbers(desc, doc: dict) -> dict:
    """doc (MessageToDict of a message of desc) with its 64-bit integers as ints."""
    for f in desc.fields:
        if f.name not in doc:
            continue
        v = doc[f.name]
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            vf = f.message_type.fields_by_name["value"]
            if vf.type in _INT64_TYPES:
                doc[f.name] = {k: int(x) for k, x in v.items()}
            elif vf.message_type is not None:
                doc[f.name] = {k: _numbers(vf.message_type, x) for k, x in v.items()}
        elif f.message_type is not None:
            if f.message_type.full_name.startswith("google.protobuf."):
                continue
            doc[f.name] = ([_numbers(f.message_type, x) for x in v] if isinstance(v, list)
                           else _numbers(f.message_type, v))
        elif f.type in _INT64_TYPES:
            doc[f.name] = [int(x) for x in v] if isinstance(v, list) else int(v)
    return doc


def json_doc(msg) -> dict:
    """A reply as `--json` prints it: protobuf's JSON mapping, field names as in the
    .proto, every integer a JSON number."""
    return _numbers(msg.DESCRIPTOR, MessageToDict(msg, preserving_proto_field_name=True))


def emit(args, msg, line: str) -> None:
    if args.json:
        print(json.dumps(json_doc(msg), ensure_ascii=False))
    else:
        print(line)


def emit_rows(args, msg, rows, line) -> None:
    """The whole answer as JSON, or one line per row for people."""
    if args.json:
        emit(args, msg, "")
    else:
        for row in rows:
            print(line(row))


def call_admin(args, method: str, request, *, token: str | None = None, auth: bool = True):
    with open_channel(args) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        md = auth_metadata(args, token) if auth else None
        return getattr(stub, method)(request, metadata=md, timeout=CALL_TIMEOUT_SECONDS)


def failure_text(e: grpc.RpcError) -> str:
    reason = ""
    st = rpc_status.from_call(e) if hasattr(e, "trailing_metadata") else None
    for d in st.details if st is not None else ():
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            reason = info.reason
    details = e.details() or ""
    if reason and details.startswith(reason + ": "):  # a server that repeats its reason
        details = details[len(reason) + 2:]
    return f"{e.code().name} {reason}: {details}".replace(" :", ":")


# --- money and time as people write them (core.domain.units) -----------------------------

def tz_offset_s(args) -> int:
    """The chain's time zone (RulesConfig.tz_offset_s: seconds east of UTC, +08:00 =
    Asia/Shanghai by default), read from the server once per command."""
    if getattr(args, "_tz_offset_s", None) is None:
        from server.mms_pb import admin_pb2

        rules = json.loads(call_admin(args, "GetRules", admin_pb2.GetRulesRequest()).rules_json)
        args._tz_offset_s = int(rules.get("tz_offset_s", units.DEFAULT_TZ_OFFSET_S))
    return args._tz_offset_s


def when(args, text: str | None) -> int | None:
    """A time option (ISO date or date-time in the chain's zone, or unix seconds) as
    unix seconds; None stays None."""
    if text is None:
        return None
    if is_ascii_digits(text):
        return int(text)
    try:
        return units.parse_time(text, tz_offset_s(args))
    except ValueError as e:
        raise CliError(str(e)) from None


def shown_time(args, t_s: int) -> str:
    """Unix seconds as an ISO date-time in the chain's zone; "-" for 0 (not set)."""
    return units.iso_time(t_s, tz_offset_s(args)) if t_s else "-"


def shown_date(args, t_s: int) -> str:
    """Unix seconds as an ISO date in the chain's zone; "-" for 0 (not set)."""
    return units.iso_date(t_s, tz_offset_s(args)) if t_s else "-"


def yuan(fen: int) -> str:
    """Integer fen as yuan with two decimals (core.domain.units.yuan_text)."""
    return units.yuan_text(fen)


def bp_text(bp: int) -> str:
    """Integer basis points as a percent with two decimals: 8800 -> "88.00%"."""
    sign = "-" if bp < 0 else ""
    return f"{sign}{abs(bp) // 100}.{abs(bp) % 100:02d}%"


def member_price_text(args, c) -> str:
    """A card's plan member price for people ("" when it has none): the share of the
    shelf price paid, the day it ends, the plan that gave it."""
    if not c.plan_price_bp:
        return ""
    return (f"member price {bp_text(c.plan_price_bp)} until {shown_date(args, c.plan_price_until_s)}"
            f" (plan {c.plan_price_plan})")


def run(func, args) -> int:
    try:
        return int(func(args) or 0)
    except CliError as e:
        print(f"mms: {e}", file=sys.stderr)
        return 2
    except grpc.RpcError as e:
        print(f"mms: {failure_text(e)}", file=sys.stderr)
        return 1
