"""`mms replay` of hostile files through the real command and a real `mms serve`: a
byte-order mark (the header still recognised, and the same rows map to the same client
ids with or without it), files in another encoding (refused whole, nothing sent), lines
past the bound (a bad row each, never held whole; the lines after keep their numbers),
a quoted field past the csv module's limit, NUL bytes, formulas and odd line endings.
Every answer is a clear line and an exit code; no traceback; nothing applied twice and
nothing applied from a refused file."""

from __future__ import annotations

import ast
import io
import subprocess
import sys

import grpc
import pytest
from common import ROOT

from server.cli.main import main
from server.cli.replay import (
    BAD_ROWS_PRINTED_MAX,
    LINE_CHARS_MAX,
    SHOWN_CHARS_MAX,
    replay,
)
from server.client import CHANNEL_OPTIONS, auth
from server.mms_pb import pos_pb2, pos_pb2_grpc
from tests.cli._shared import funded_child

CARDS = [601, 602, 603]


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    c = funded_child(tmp_path_factory, "replay_hostile", CARDS)
    yield c
    assert c.terminate() == 0


def balances(child) -> list[int]:
    with grpc.insecure_channel(child.target, options=CHANNEL_OPTIONS) as ch:
        stub = pos_pb2_grpc.PosServiceStub(ch)
        return [stub.GetCard(pos_pb2.GetCardRequest(card_no=no),
                             metadata=auth(child.token())).card.principal_fen for no in CARDS]


def run(child, path, capsys) -> tuple[int, str, str]:
    code = main(["replay", str(path), "--target", child.target, "--token", child.token()])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_a_byte_order_mark_is_not_part_of_the_header_or_of_an_id(child, tmp_path, capsys):
    rows = "bom-1,601,100\nbom-2,602,200\n"
    with_bom = tmp_path / "with_bom.csv"
    with_bom.write_bytes(b"\xef\xbb\xbf" + ("client_id,card_no,amount_fen\n" + rows).encode())
    before = balances(child)
    code, out, err = run(child, with_bom, capsys)
    assert code == 0, (out, err)
    assert "skipped" not in err and "2 rows sent, 2 applied (300 fen)" in out
    # The same rows without the mark or the header: the same ids, nothing applied again.
    plain = tmp_path / "plain.csv"
    plain.write_text(rows)
    code, out, err = run(child, plain, capsys)
    assert code == 0 and "0 applied (0 fen), 2 already applied" in out, (out, err)
    # A headerless file with the mark: its first id is the same as without it.
    bare = tmp_path / "bare_bom.csv"
    bare.write_bytes(b"\xef\xbb\xbf" + rows.encode())
    code, out, err = run(child, bare, capsys)
    assert code == 0 and "2 already applied" in out, (out, err)
    assert [a - b for a, b in zip(balances(child), before, strict=True)] == [100, 200, 0]


@pytest.mark.parametrize("encoding", ["gbk", "utf-16", "latin-1"])
def test_a_file_in_another_encoding_is_refused_whole(child, tmp_path, capsys, encoding):
    f = tmp_path / f"{encoding}.csv"
    # Good rows first: nothing of them may be sent once the file proves not UTF-8.
    tag = "café" if encoding == "latin-1" else "会员"
    f.write_bytes(f"enc-1,601,100\nenc-2,602,100\n{tag},603,100\n".encode(encoding))
    before = balances(child)
    code, out, err = run(child, f, capsys)
    assert code == 2, (out, err)
    assert "is not UTF-8 text" in err and "nothing was sent" in err
    assert balances(child) == before


def test_long_lines_are_bad_rows_with_their_numbers(child, tmp_path, capsys):
    f = tmp_path / "long.csv"
    f.write_text("long-1,601,100\n"                                   # 1
                 + "long-2,601," + "9" * (LINE_CHARS_MAX + 10) + "\n"  # 2: past the bound
                 + "long-3,602,100\n"                                  # 3
                 + "long-4,603,\x00100\n"                              # 4: a NUL
                 + "long-5,=1+2,100\n"                                 # 5: a formula
                 + "long-6,603,=SUM(A1:A9)\n"                          # 6: a formula
                 + "=HYPERLINK(\"x\"),603,100\r\n"                     # 7: an id, CRLF
                 + "long-8,603,100")                                   # 8: no newline
    before = balances(child)
    code, out, err = run(child, f, capsys)
    assert code == 3, (out, err)
    assert f"long.csv:2: skipped: a line longer than {LINE_CHARS_MAX} characters" in err
    for line in (4, 5, 6):
        assert f"long.csv:{line}: skipped" in err, err
    assert "4 rows sent, 4 applied (400 fen)" in out and "3 bad rows" not in out, (out, err)
    assert [a - b for a, b in zip(balances(child), before, strict=True)] == [100, 100, 200]


def test_a_quoted_field_past_the_csv_limit_is_a_bad_row(child, tmp_path, capsys):
    f = tmp_path / "quoted.csv"
    # One field of 140,000 characters over 140 lines, each under the line bound.
    f.write_text("q-1,601,100\n" + 'q-2,602,"' + ("y" * 1000 + "\n") * 140 + '"\n')
    before = balances(child)
    code, out, err = run(child, f, capsys)
    assert code == 3, (out, err)
    assert "skipped: not a CSV row: field larger than field limit" in err, err
    assert "1 rows sent, 1 applied (100 fen)" in out, (out, err)
    assert [a - b for a, b in zip(balances(child), before, strict=True)] == [100, 0, 0]


_MEASURE = """
import resource, sys
from server.cli.replay import count_rows, read_rows
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
bad = []
rows = [(r.line, r.card_no) for r in read_rows(sys.argv[1], "", bad) if r is not None]
n = count_rows(sys.argv[1])
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10) - before
print(repr((rows, bad, n, grown)))
"""


def test_a_line_of_a_hundred_megabytes_is_never_held(tmp_path):
    """Read by the line bound, in a process of its own (its peak memory is this read's):
    it grows by far less than the line."""
    f = tmp_path / "huge.csv"
    size = 100 << 20
    with open(f, "w") as out:
        out.write("h-1,601,100\n")
        chunk = "z" * (1 << 20)
        for _ in range(size >> 20):
            out.write(chunk)
        out.write(",601,100\nh-3,602,100\n")
    got = subprocess.run([sys.executable, "-c", _MEASURE, str(f)], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    rows, bad, n, grown = ast.literal_eval(got.stdout.strip())
    assert rows == [(1, 601), (3, 602)]
    assert bad == [(2, f"a line longer than {LINE_CHARS_MAX} characters")]
    assert n == 3
    assert grown < size // 4, grown


def test_bad_rows_past_the_printed_bound_are_counted_not_kept(tmp_path, capsys):
    """A wrong file of many bad lines: the first BAD_ROWS_PRINTED_MAX are printed and
    kept, the rest counted; a quoted cell is cut to SHOWN_CHARS_MAX characters."""
    n = BAD_ROWS_PRINTED_MAX + 2_000
    f = tmp_path / "wrong.csv"
    f.write_text("".join(f"w-{i},{'x' * 3000},100\n" for i in range(n)))
    prog, bad = replay(str(f), None, "", dry_run=True, out=io.StringIO(), err=io.StringIO())
    assert len(bad) == n and list.__len__(bad) == BAD_ROWS_PRINTED_MAX
    line, why = bad[0]
    assert line == 1 and len(why) < SHOWN_CHARS_MAX + 60, why
    code = main(["replay", str(f), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 3 and f"0 rows to send (0 fen), {n} bad rows" in out, out
    assert err.count("skipped") == BAD_ROWS_PRINTED_MAX and "the rest are counted" in err
