"""`mms replay FILE.csv --target HOST:PORT --token T`: bulk recharges via BulkRecharge.

The CSV has the columns client_id, card_no, amount_fen (a header row with those names
is optional). Each row's 16-byte client id is what makes the replay idempotent:

- 32 hex digits (a UUID, dashes allowed) are used as they are;
- any other non-empty value becomes sha256("mms.replay.v1" NUL namespace NUL value),
  first 16 bytes, so the same row always maps to the same id. `--namespace` keeps two
  unrelated files whose ids are plain counters ("1", "2", ...) apart.

Rows are never identified by line number, so an edited file (a row inserted above)
still replays without applying anything twice.

Rows are checked before sending: a bad row (wrong column count, empty id, card number
or amount that is not a positive integer; amounts are integer fen, "12.50" is refused)
is reported with its line number and skipped. The server rejects rows it cannot apply
(unknown card, frozen card, balance limit), also reported with line numbers; a row is
applied whole or not at all.

Rows go in calls of --call-rows rows; after each call returns (everything in it is
durable) the progress file FILE.csv.mms-progress records the last line done, so an
interrupted replay resumes after it. Without the progress file, or with --restart, the
whole file is sent again and the server's idempotency applies nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field

import grpc

from core.records import is_ascii_digits
from server.client import SyncFollowingStub, auth, split_targets
from server.mms_pb import pos_pb2, types_pb2

CHUNK_ROWS_MAX = 4096
CARD_NO_MAX = 2**64 - 1
AMOUNT_FEN_MAX = 2**63 - 1
# Bad rows printed one per line; beyond this only counted.
BAD_ROWS_PRINTED_MAX = 1000
_HEX_ID = re.compile(r"^[0-9a-fA-F]{32}$")


def client_id_of(value: str, namespace: str = "") -> bytes:
    compact = value.replace("-", "")
    if _HEX_ID.match(compact):
        return bytes.fromhex(compact)
    digest = hashlib.sha256(b"mms.replay.v1\0" + namespace.encode() + b"\0" + value.encode())
    return digest.digest()[:16]


@dataclass
class Row:
    line: int
    client_id: bytes
    card_no: int
    amount_fen: int


def parse_row(fields: list[str], namespace: str) -> tuple[Row | None, str]:
    """(row, "") or (None, why it is bad)."""
    if len(fields) != 3:
        return None, f"expected 3 columns (client_id,card_no,amount_fen), got {len(fields)}"
    cid, card, amount = (f.strip() for f in fields)
    if not cid:
        return None, "empty client_id"
    if not is_ascii_digits(card) or not 0 < int(card) <= CARD_NO_MAX:
        return None, f"card_no {card!r} is not a positive integer"
    if not is_ascii_digits(amount):
        return None, f"amount_fen {amount!r} is not a positive integer number of fen"
    value = int(amount)
    if not 0 < value <= AMOUNT_FEN_MAX:
        return None, f"amount_fen {amount!r} is out of range"
    return Row(0, client_id_of(cid, namespace), int(card), value), ""


def read_rows(path: str, namespace: str, bad: list[tuple[int, str]]):
    """Yield good rows with line numbers; append (line, why) for bad ones."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        first = True
        for fields in reader:
            line = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if first:
                first = False
                if [x.strip().lower() for x in fields] == ["client_id", "card_no", "amount_fen"]:
                    continue
            row, why = parse_row(fields, namespace)
            if row is None:
                bad.append((line, why))
                continue
            row.line = line
            yield row


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Progress:
    file_sha256: str
    done_through_line: int = 0
    rows: int = 0
    applied: int = 0
    replayed: int = 0
    rejected: int = 0
    applied_fen: int = 0
    rejected_rows: list = field(default_factory=list)

    def save(self, path: str) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
        os.replace(tmp, path)


def _chunks(rows: list[Row], chunk_rows: int, operator_id: int = 0):
    for lo in range(0, len(rows), chunk_rows):
        part = rows[lo:lo + chunk_rows]
        yield pos_pb2.BulkRechargeRequest(
            client_ids=b"".join(r.client_id for r in part),
            card_nos=[r.card_no for r in part], amount_fen=[r.amount_fen for r in part],
            line_numbers=[r.line for r in part], operator_id=operator_id)


def replay(path: str, stub, token: str, *, namespace: str = "", chunk_rows: int = 2048,
           call_rows: int = 65_536, restart: bool = False, out=None,
           err=None, timeout_s: float = 300.0) -> tuple[Progress, list[tuple[int, str]]]:
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    chunk_rows = max(1, min(chunk_rows, CHUNK_ROWS_MAX))
    call_rows = max(chunk_rows, call_rows)
    progress_path = path + ".mms-progress"
    digest = file_digest(path)
    prog = Progress(digest)
    if not restart and os.path.exists(progress_path):
        with open(progress_path) as f:
            saved = Progress(**json.load(f))
        if saved.file_sha256 == digest:
            prog = saved
            if prog.done_through_line:
                print(f"resuming after line {prog.done_through_line}", file=out)
        else:
            print("the file changed since the saved progress; replaying it whole "
                  "(rows already applied are recognised by their client ids)", file=out)
    tty = out.isatty()
    bad: list[tuple[int, str]] = []
    batch: list[Row] = []
    started = time.monotonic()
    sent = 0

    def flush() -> None:
        nonlocal sent
        if not batch:
            return
        summary = stub.BulkRecharge(_chunks(batch, chunk_rows), metadata=auth(token),
                                    timeout=timeout_s)
        prog.rows += summary.rows
        prog.applied += summary.applied
        prog.replayed += summary.replayed
        prog.rejected += summary.rejected
        prog.applied_fen += summary.applied_fen
        prog.rejected_rows.extend([r.line_number, types_pb2.Result.Name(r.code)]
                                  for r in summary.rejected_rows)
        prog.done_through_line = batch[-1].line
        prog.save(progress_path)
        sent += len(batch)
        rate = sent / max(time.monotonic() - started, 1e-9)
        msg = (f"line {prog.done_through_line}: {prog.rows} rows, {prog.applied} applied, "
               f"{prog.replayed} already applied, {prog.rejected} rejected, "
               f"{len(bad)} bad ({rate:,.0f} rows/s)")
        print(("\r" + msg) if tty else msg, end="" if tty else "\n", file=out, flush=True)
        batch.clear()

    for row in read_rows(path, namespace, bad):
        if row.line <= prog.done_through_line:
            continue
        batch.append(row)
        if len(batch) >= call_rows:
            flush()
    flush()
    if tty:
        print(file=out)
    for line, why in bad[:BAD_ROWS_PRINTED_MAX]:
        print(f"{path}:{line}: skipped: {why}", file=err)
    if len(bad) > BAD_ROWS_PRINTED_MAX:
        print(f"... and {len(bad) - BAD_ROWS_PRINTED_MAX} more bad rows", file=err)
    for line, reason in prog.rejected_rows[:BAD_ROWS_PRINTED_MAX]:
        print(f"{path}:{line}: rejected by the server: {reason}", file=err)
    print(f"done: {prog.rows} rows sent, {prog.applied} applied "
          f"({prog.applied_fen} fen), {prog.replayed} already applied, "
          f"{prog.rejected} rejected, {len(bad)} bad rows skipped", file=out)
    return prog, bad


def main_replay(args) -> int:
    if not args.token:
        print("mms replay: --token (or $MMS_TOKEN) is required", file=sys.stderr)
        return 2
    # --target may name every node of a pair or trio: each call goes to the leader, and a
    # call refused with NOT_LEADER is sent again, same rows and ids, to the node it names.
    stub = SyncFollowingStub(split_targets(args.target), "pos", args.ca)
    try:
        try:
            prog, bad = replay(args.file, stub, args.token,
                               namespace=args.namespace, chunk_rows=args.chunk_rows,
                               call_rows=args.call_rows, restart=args.restart)
        except grpc.RpcError as e:
            print(f"\nmms replay: {e.code().name}: {e.details()} "
                  "(progress is saved; run again to resume)", file=sys.stderr)
            return 1
    finally:
        stub.close()
    return 3 if (bad or prog.rejected) else 0
