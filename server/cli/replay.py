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
or amount that is not a positive integer, or one with spaces around it; amounts are
integer fen, "12.50" is refused) is reported with its line number as it is found, and
skipped. The server rejects rows it cannot apply (unknown card, frozen card, balance
limit), reported with line numbers after each call; a row is applied whole or not at
all. `--dry-run` reads and checks the whole file the same way and sends nothing.

The file is UTF-8, with or without a byte-order mark; any other encoding (GBK, UTF-16)
is refused whole before anything is sent (exit 2). A line longer than LINE_CHARS_MAX
characters, or one the csv module refuses (a quoted field past its limit), is a bad row;
it is never held whole in memory. Cells are data, never formulas: "=1+2" is not an amount.

Rows go in calls of --call-rows rows; after each call returns (everything in it is
durable) the progress file FILE.csv.mms-progress records the last line done, so an
interrupted replay (Ctrl-C, a lost connection) resumes after it. Without the progress
file, or with --restart, the whole file is sent again and the server's idempotency
applies nothing twice. On a terminal a progress bar (tqdm) shows rows done of the
total, the rate, the percentage and the time left; elsewhere only the result is printed.

With --session (an operator's `mms login` session, or $MMS_SESSION) the recharges are
journalled as that operator's; the server checks that the operator may recharge at
the terminal's store.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field

import grpc
from tqdm import tqdm

from core.domain.textlines import BoundedLines
from core.records import is_ascii_digits
from server.client import SyncFollowingStub, auth, split_targets
from server.mms_pb import pos_pb2, types_pb2

CHUNK_ROWS_MAX = 4096
CARD_NO_MAX = 2**64 - 1
AMOUNT_FEN_MAX = 2**63 - 1
# Bad rows printed one per line; beyond this only counted.
BAD_ROWS_PRINTED_MAX = 1000
# A line of the file, in characters: a good row is under 100 (an id of 32 hex digits or
# a short tag, two numbers); a longer line is a bad row, never held whole (a wrong file).
LINE_CHARS_MAX = 4096
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


# A cell quoted in a bad row's reason: at most this many characters of it.
SHOWN_CHARS_MAX = 40


def _shown(value: str) -> str:
    """value as a reason quotes it: repr, cut to SHOWN_CHARS_MAX characters."""
    return repr(value if len(value) <= SHOWN_CHARS_MAX else value[:SHOWN_CHARS_MAX] + "\u2026")


class BadRows(list):
    """(line, why) of the bad rows: the first BAD_ROWS_PRINTED_MAX are kept (what is
    printed), the rest only counted, so a wrong file of millions of bad lines takes no
    memory for them. len() is how many there were."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def append(self, item) -> None:
        self.total += 1
        if super().__len__() < BAD_ROWS_PRINTED_MAX:
            super().append(item)

    def __len__(self) -> int:
        return self.total

    def __bool__(self) -> bool:
        return self.total > 0


def parse_row(fields: list[str], namespace: str) -> tuple[Row | None, str]:
    """(row, "") or (None, why it is bad)."""
    if len(fields) != 3:
        return None, f"expected 3 columns (client_id,card_no,amount_fen), got {len(fields)}"
    cid, card, amount = fields[0].strip(), fields[1], fields[2]
    if not cid:
        return None, "empty client_id"
    for name, value in (("card_no", card), ("amount_fen", amount)):
        if value != value.strip():
            # Never trimmed: " 8800001" may be a cell pasted with part of another.
            return None, f"{name} {_shown(value)} has spaces around it; a number cell is digits only"
    if not is_ascii_digits(card) or not 0 < int(card) <= CARD_NO_MAX:
        return None, f"card_no {_shown(card)} is not a positive integer"
    if not is_ascii_digits(amount):
        return None, f"amount_fen {_shown(amount)} is not a positive integer number of fen"
    value = int(amount)
    if not 0 < value <= AMOUNT_FEN_MAX:
        return None, f"amount_fen {_shown(amount)} is out of range"
    return Row(0, client_id_of(cid, namespace), int(card), value), ""


def _records(path: str):
    """(line, fields, why) of each data row of the file: fields None and why set for a
    row the csv reader or the line bound refuses; blank lines and the header row left
    out. UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8" writes one: without
    this the header went unrecognised, and a headerless file's first client id got the
    mark in its hash); any other encoding raises UnicodeDecodeError."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        lines = BoundedLines(f, LINE_CHARS_MAX)
        reader = csv.reader(lines)
        first, end = True, 0
        while True:
            start = end + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                end = reader.line_num
                yield end, None, f"not a CSV row: {e}"
                continue
            end = reader.line_num
            if lines.any_too_long(start, end):
                yield end, None, f"a line longer than {LINE_CHARS_MAX} characters"
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if first:
                first = False
                if [x.strip().lower() for x in fields] == ["client_id", "card_no", "amount_fen"]:
                    continue
            yield end, fields, ""


def read_rows(path: str, namespace: str, bad: list[tuple[int, str]], on_bad=None):
    """Yield good rows with line numbers; append (line, why) for bad ones (and tell
    on_bad(line, why) at once, when given). Yields None after a bad row, so that the
    caller can count it as done."""
    for line, fields, why in _records(path):
        row = None
        if fields is not None:
            row, why = parse_row(fields, namespace)
        if row is None:
            bad.append((line, why))
            if on_bad is not None:
                on_bad(line, why)
            yield None
            continue
        row.line = line
        yield row


def count_rows(path: str) -> int:
    """The data rows of the file (what read_rows yields, good or bad): the progress
    bar's total."""
    return sum(1 for _ in _records(path))


class ReplayInterrupted(Exception):
    """Ctrl-C during a replay: what was done and saved before it."""

    def __init__(self, prog: Progress, bad: list[tuple[int, str]], progress_path: str) -> None:
        super().__init__("interrupted")
        self.prog, self.bad, self.progress_path = prog, bad, progress_path


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


def _chunks(rows: list[Row], chunk_rows: int, operator_id: int = 0, operator_session: str = ""):
    for lo in range(0, len(rows), chunk_rows):
        part = rows[lo:lo + chunk_rows]
        yield pos_pb2.BulkRechargeRequest(
            client_ids=b"".join(r.client_id for r in part),
            card_nos=[r.card_no for r in part], amount_fen=[r.amount_fen for r in part],
            line_numbers=[r.line for r in part], operator_id=operator_id,
            operator_session=operator_session)


def replay(path: str, stub, token: str, *, namespace: str = "", chunk_rows: int = 2048,
           call_rows: int = 65_536, restart: bool = False, out=None,
           err=None, timeout_s: float = 300.0, dry_run: bool = False,
           operator_session: str = "") -> tuple[Progress, list[tuple[int, str]]]:
    """Replay the file (or, dry_run, only check it); raises ReplayInterrupted on Ctrl-C
    after saving what was done."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    chunk_rows = max(1, min(chunk_rows, CHUNK_ROWS_MAX))
    call_rows = max(chunk_rows, call_rows)
    progress_path = path + ".mms-progress"
    digest = file_digest(path)
    prog = Progress(digest)
    if not dry_run and not restart and os.path.exists(progress_path):
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
    bar = tqdm(total=count_rows(path), unit=" rows", unit_scale=False, file=out,
               disable=not tty, dynamic_ncols=True, smoothing=0.1,
               desc="dry run" if dry_run else "replay")
    bad = BadRows()
    batch: list[Row] = []
    checked = {"rows": 0, "fen": 0}  # dry run: the rows that would be sent
    pending = 0  # rows read (good or bad) not yet shown on the bar

    def say(text: str) -> None:
        if tty:
            bar.write(text, file=err)
        else:
            print(text, file=err, flush=True)

    def on_bad(line: int, why: str) -> None:
        if len(bad) <= BAD_ROWS_PRINTED_MAX:
            say(f"{path}:{line}: skipped: {why}")
        elif len(bad) == BAD_ROWS_PRINTED_MAX + 1:
            say(f"{path}: more than {BAD_ROWS_PRINTED_MAX} bad rows; the rest are counted")

    def flush() -> None:
        nonlocal pending
        if batch and not dry_run:
            summary = stub.BulkRecharge(_chunks(batch, chunk_rows, 0, operator_session),
                                        metadata=auth(token), timeout=timeout_s)
            prog.rows += summary.rows
            prog.applied += summary.applied
            prog.replayed += summary.replayed
            prog.rejected += summary.rejected
            prog.applied_fen += summary.applied_fen
            new = [[r.line_number, types_pb2.Result.Name(r.code)] for r in summary.rejected_rows]
            for line, reason in new:
                if len(prog.rejected_rows) < BAD_ROWS_PRINTED_MAX:
                    say(f"{path}:{line}: rejected by the server: {reason}")
            prog.rejected_rows.extend(new[:max(0, BAD_ROWS_PRINTED_MAX - len(prog.rejected_rows))])
            prog.done_through_line = batch[-1].line
            prog.save(progress_path)
        elif batch:
            checked["rows"] += len(batch)
            checked["fen"] += sum(r.amount_fen for r in batch)
        bar.update(pending)
        pending = 0
        batch.clear()

    try:
        for row in read_rows(path, namespace, bad, on_bad):
            pending += 1
            if row is None:
                continue
            if row.line <= prog.done_through_line:
                bar.update(pending)
                pending = 0
                continue
            batch.append(row)
            if len(batch) >= call_rows:
                flush()
        flush()
    except KeyboardInterrupt:
        bar.close()
        raise ReplayInterrupted(prog, bad, progress_path) from None
    bar.close()
    if dry_run:
        print(f"dry run: {checked['rows']} rows to send ({checked['fen']} fen), "
              f"{len(bad)} bad rows; nothing was sent", file=out)
        prog.rows = checked["rows"]
        return prog, bad
    print(f"done: {prog.rows} rows sent, {prog.applied} applied "
          f"({prog.applied_fen} fen), {prog.replayed} already applied, "
          f"{prog.rejected} rejected, {len(bad)} bad rows skipped", file=out)
    return prog, bad


def main_replay(args) -> int:
    try:
        return _main_replay(args)
    except KeyboardInterrupt:  # before the replay began or after it ended
        print("mms replay: interrupted", file=sys.stderr)
        return 1
    except UnicodeDecodeError as e:
        # Found while the rows are counted, before anything is sent.
        print(f"mms replay: {args.file} is not UTF-8 text ({e.reason}: "
              f"{e.object[e.start:e.start + 4]!r}); save it as CSV UTF-8; nothing was sent",
              file=sys.stderr)
        return 2


def _main_replay(args) -> int:
    dry_run = getattr(args, "dry_run", False)
    session = getattr(args, "session", None) or ""
    if dry_run:
        prog, bad = replay(args.file, None, "", namespace=args.namespace,
                           chunk_rows=args.chunk_rows, call_rows=args.call_rows, dry_run=True)
        return 3 if bad else 0
    if not args.token or not args.target:
        print("mms replay: --target and --token (or $MMS_TOKEN) are required "
              "(or --dry-run)", file=sys.stderr)
        return 2
    # --target may name every node of a pair or trio: each call goes to the leader, and a
    # call refused with NOT_LEADER is sent again, same rows and ids, to the node it names.
    stub = SyncFollowingStub(split_targets(args.target), "pos", args.ca)
    try:
        try:
            prog, bad = replay(args.file, stub, args.token,
                               namespace=args.namespace, chunk_rows=args.chunk_rows,
                               call_rows=args.call_rows, restart=args.restart,
                               operator_session=session)
        except ReplayInterrupted as e:
            p = e.prog
            where = (f"after line {p.done_through_line}" if p.done_through_line
                     else "before the first call returned")
            print(f"mms replay: interrupted {where}: {p.rows} rows sent, {p.applied} applied "
                  f"({p.applied_fen} fen), {p.replayed} already applied, {p.rejected} rejected, "
                  f"{len(e.bad)} bad; progress saved in {e.progress_path}, run the same "
                  "command to resume", file=sys.stderr)
            return 1
        except grpc.RpcError as e:
            from server.cli.session import failure_text

            print(f"\nmms replay: {failure_text(e)} "
                  "(progress is saved; run again to resume)", file=sys.stderr)
            return 1
    finally:
        stub.close()
    return 3 if (bad or prog.rejected) else 0


def add_options(r) -> None:
    """The options of `mms replay` beyond its first ones (server/cli/main.py)."""
    r.add_argument("--dry-run", action="store_true",
                   help="check every row and print what would be sent; send nothing "
                        "(no --target or --token needed)")
    r.add_argument("--session", default=os.environ.get("MMS_SESSION"),
                   help="an operator's session (`mms login --print-token`; default "
                        "$MMS_SESSION): the recharges are journalled as that operator's")
