"""`mms member import FILE`: upload a member file, report each refused row (on stderr as
FILE:LINE, and with --errors in a file that can be fixed and imported again) and exit 3
when any row was refused. docs/members.md lists the headings."""

from __future__ import annotations

import csv
import os
import sys

from core.domain.members.files import ERRORS_COLUMNS, excel_text, raw_rows
from server.cli.session import auth_metadata, emit, open_channel
from server.mms_pb import admin_pb2, admin_pb2_grpc

# One upload message: far below the server's message bound.
IMPORT_CHUNK_BYTES = 256 * 1024
# Refused rows printed one per line; the errors file holds every one the server lists.
REFUSED_PRINTED_MAX = 1000
# The exit status of an import that refused rows (as `mms replay` with bad rows).
EXIT_ROWS_REFUSED = 3


def write_errors_file(source: str, dest: str, row_errors) -> int:
    """dest: the source's header, then each refused row's original cells, with the
    columns import_line (its line in the source) and import_error (why). The import
    ignores those two columns, so the fixed file imports as it is. Returns the rows."""
    why = {e.line: e.reason for e in row_errors}
    header: list[str] = []
    rows: list[list[str]] = []
    for line, cells in raw_rows(source):
        if line == 1:
            header = [c for c in cells if c.strip().lower() not in ERRORS_COLUMNS]
            keep = [i for i, c in enumerate(cells) if c.strip().lower() not in ERRORS_COLUMNS]
            continue
        if line in why:
            kept = [excel_text(cells[i]) if i < len(cells) else "" for i in keep]
            rows.append(kept + [""] * (len(header) - len(kept)) + [str(line), why[line]])
    tmp = dest + ".part"
    with open(tmp, "w", newline="", encoding="utf-8-sig") as f:  # with a BOM, for Excel
        w = csv.writer(f)
        w.writerow(header + list(ERRORS_COLUMNS))
        w.writerows(rows)
    os.replace(tmp, dest)
    return len(rows)


def cmd_member_import(args) -> int:
    def chunks():
        yield admin_pb2.ImportMembersRequest(file_name=os.path.basename(args.file),
                                             file_id=args.file_id or "",
                                             update_existing=bool(getattr(args, "update", False)))
        with open(args.file, "rb") as f:
            for block in iter(lambda: f.read(IMPORT_CHUNK_BYTES), b""):
                yield admin_pb2.ImportMembersRequest(chunk=block)

    with open_channel(args) as ch:
        r = admin_pb2_grpc.AdminServiceStub(ch).ImportMembers(
            chunks(), metadata=auth_metadata(args), timeout=None)
    errors = sorted(r.row_errors, key=lambda e: e.line)
    for e in errors[:REFUSED_PRINTED_MAX]:
        print(f"{args.file}:{e.line}: refused: {e.reason}", file=sys.stderr)
    if r.errors > REFUSED_PRINTED_MAX:
        print(f"... and {r.errors - REFUSED_PRINTED_MAX} more refused rows", file=sys.stderr)
    note = ""
    if args.errors and errors:
        n = write_errors_file(args.file, args.errors, errors)
        note = f"; {n} refused rows in {args.errors} (fix them and import that file)"
        if r.errors > n:
            note += f", {r.errors - n} more not listed by the server"
    emit(args, r, f"{r.rows} rows: {r.created} created, {r.updated} updated, "
                  f"{r.already_imported} already imported, {r.errors} refused{note}")
    return EXIT_ROWS_REFUSED if r.errors else 0
