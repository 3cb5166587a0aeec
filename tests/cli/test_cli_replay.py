"""`mms replay`: bad rows skipped with line numbers, idempotent, resumable."""

from __future__ import annotations

import io
import uuid

import grpc
import pytest

from server.cli.main import main
from server.cli.replay import client_id_of, replay
from server.client import CHANNEL_OPTIONS
from server.mms_pb import pos_pb2_grpc
from tests.cli._shared import funded_child, principal

CARDS = [501, 502, 503]


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    c = funded_child(tmp_path_factory, "replay", CARDS)
    yield c
    assert c.terminate() == 0


def test_client_ids():
    u = uuid.uuid4()
    assert client_id_of(str(u)) == u.bytes
    assert client_id_of(u.hex.upper()) == u.bytes
    assert client_id_of("row-1") == client_id_of("row-1") != client_id_of("row-2")
    assert client_id_of("row-1", "fileA") != client_id_of("row-1", "fileB")
    assert len(client_id_of("x")) == 16


def test_replay_twice_applies_once_and_reports_bad_rows(child, tmp_path, capsys):
    csv = tmp_path / "recharges.csv"
    csv.write_text(
        "client_id,card_no,amount_fen\n"           # line 1: header
        f"{uuid.uuid4()},501,1000\n"                # 2
        "r-3,502,2000\n"                            # 3
        "r-4,503,12.50\n"                           # 4: not integer fen
        "r-5,503,-7\n"                              # 5: negative
        ",503,100\n"                                # 6: empty id
        "r-7,abc,100\n"                             # 7: bad card
        "r-8,503\n"                                 # 8: two columns
        "r-9,999999,500\n"                          # 9: unknown card (server)
        "r-10,503,0\n"                              # 10: zero
        "\n"                                        # 11: blank, ignored
        "r-12,503,3000\n"                           # 12
        "r-3,502,2000\n")                           # 13: same id as line 3
    before = [principal(child, no) for no in CARDS]
    args = ["replay", str(csv), "--target", child.target, "--token", child.token()]
    assert main(args) == 3
    out, err = capsys.readouterr()
    for line in (4, 5, 6, 7, 8, 10):
        assert f"recharges.csv:{line}: skipped" in err
    assert "recharges.csv:9: rejected by the server: RESULT_CARD_NOT_FOUND" in err
    assert "5 rows sent, 3 applied (6000 fen), 1 already applied, 1 rejected, 6 bad" in out
    after = [principal(child, no) for no in CARDS]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1000, 2000, 3000]

    # Again: the progress file says it is done, nothing is sent.
    assert main(args) == 3
    assert [principal(child, no) for no in CARDS] == after
    # Again from scratch: every row is recognised by its client id.
    assert main([*args, "--restart"]) == 3
    out, _ = capsys.readouterr()
    assert "5 rows sent, 0 applied (0 fen), 4 already applied, 1 rejected" in out
    assert [principal(child, no) for no in CARDS] == after


class _Cut(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "cut"


class _FailAfter:
    """A stub that lets `calls` BulkRecharge calls through, then fails."""

    def __init__(self, stub, calls: int) -> None:
        self.stub, self.calls = stub, calls

    def BulkRecharge(self, it, **kw):  # noqa: N802
        if self.calls == 0:
            raise _Cut()
        self.calls -= 1
        return self.stub.BulkRecharge(it, **kw)


def test_interrupted_replay_resumes(child, tmp_path):
    csv = tmp_path / "big.csv"
    rows = [f"id-{i},{CARDS[i % 3]},{10 + i}" for i in range(40)]
    csv.write_text("\n".join(rows) + "\n")
    expected = [sum(10 + i for i in range(40) if i % 3 == k) for k in range(3)]
    before = [principal(child, no) for no in CARDS]
    with grpc.insecure_channel(child.target, options=CHANNEL_OPTIONS) as ch:
        stub = pos_pb2_grpc.PosServiceStub(ch)
        with pytest.raises(grpc.RpcError):
            replay(str(csv), _FailAfter(stub, 2), child.token(), chunk_rows=4, call_rows=8,
                   out=io.StringIO(), err=io.StringIO())
        out = io.StringIO()
        prog, bad = replay(str(csv), stub, child.token(), chunk_rows=4, call_rows=8, out=out,
                           err=io.StringIO())
    assert "resuming after line 16" in out.getvalue()
    assert (prog.rows, prog.applied, prog.replayed, bad) == (40, 40, 0, [])
    after = [principal(child, no) for no in CARDS]
    assert [a - b for a, b in zip(after, before, strict=True)] == expected


def test_replay_needs_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MMS_TOKEN", raising=False)
    f = tmp_path / "x.csv"
    f.write_text("a,1,1\n")
    assert main(["replay", str(f), "--target", "127.0.0.1:1", "--token", ""]) == 2
