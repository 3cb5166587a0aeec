"""`mms replay` as an operator runs it: the real command against a real server (a child
`mms serve`): Ctrl-C on a terminal saves progress and exits 1 with one line, bad rows
show as they are found, the progress bar only on a terminal, --dry-run sends nothing,
--session attributes the recharges, spaces around numbers are refused, and a closed
pipe ends the command quietly."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import grpc
import pytest
from common import FAULTHANDLER_ENV, patience_s, stack_dump, wait_exit

from server.cli.main import main
from server.client import CHANNEL_OPTIONS, auth
from server.tools.launch import ChildServer, TerminalSpec
from tests.cli._shared import principal

CARDS = [701, 702, 703]
PASSWORD = "replay-pw-1"
MMS = [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 7, "pos")]
    c = ChildServer(str(tmp_path_factory.mktemp("replay-ops")), terms).start()
    with grpc.insecure_channel(c.target, options=CHANNEL_OPTIONS) as ch:
        from server.mms_pb import admin_pb2, admin_pb2_grpc

        admin_pb2_grpc.AdminServiceStub(ch).IssueCards(admin_pb2.IssueCardsRequest(
            client_id=os.urandom(16), card_nos=CARDS), metadata=auth(c.token("admin")),
            timeout=30)
    yield c
    if c.proc is not None and c.proc.poll() is None:
        c.proc.send_signal(signal.SIGCONT)
    assert c.terminate() == 0


def balances(child) -> list[int]:
    return [principal(child, no) for no in CARDS]


def env_for(tmp_path) -> dict:
    env = dict(os.environ)
    env.update(XDG_CONFIG_HOME=str(tmp_path / "cfg"), MMS_PASSWORD=PASSWORD,
               PYTHONWARNINGS="error")
    env.pop("MMS_SESSION", None)
    env.pop("MMS_TOKEN", None)
    return env


def test_spaces_around_numbers_are_refused_not_trimmed(child, tmp_path, capsys):
    f = tmp_path / "spaces.csv"
    f.write_text("s-1, 701,100\n"       # 1: a space before the card number
                 "s-2,701 ,100\n"       # 2: after it
                 "s-3,701, 100\n"       # 3: before the amount
                 "s-4,701,100\n")       # 4: good
    before = balances(child)
    assert main(["replay", str(f), "--target", child.target, "--token", child.token()]) == 3
    out, err = capsys.readouterr()
    for line in (1, 2, 3):
        assert f"spaces.csv:{line}: skipped:" in err and "has spaces around it" in err
    assert "1 rows sent, 1 applied (100 fen)" in out and "3 bad rows skipped" in out
    assert [a - b for a, b in zip(balances(child), before, strict=True)] == [100, 0, 0]


def test_dry_run_checks_and_sends_nothing(child, tmp_path, capsys):
    f = tmp_path / "check.csv"
    f.write_text("client_id,card_no,amount_fen\nd-1,701,100\nd-2,702,12.50\nd-3,703,300\n")
    before = balances(child)
    # No server is needed: the target is one nobody listens on.
    assert main(["replay", str(f), "--dry-run", "--target", "127.0.0.1:1"]) == 3
    out, err = capsys.readouterr()
    assert "check.csv:3: skipped: amount_fen '12.50'" in err
    assert "dry run: 2 rows to send (400 fen), 1 bad rows; nothing was sent" in out
    assert not os.path.exists(str(f) + ".mms-progress")
    good = tmp_path / "good.csv"
    good.write_text("d-1,701,100\n")
    assert main(["replay", str(good), "--dry-run"]) == 0
    assert "dry run: 1 rows to send (100 fen), 0 bad rows" in capsys.readouterr().out
    assert balances(child) == before


def test_quiet_off_a_terminal(child, tmp_path):
    f = tmp_path / "quiet.csv"
    f.write_text("".join(f"q-{i},{CARDS[i % 3]},1\n" for i in range(30)) + "q-x,701,1.5\n")
    p = subprocess.run([*MMS, "replay", str(f), "--target", child.target, "--token",
                        child.token(), "--call-rows", "4", "--chunk-rows", "2"],
                       capture_output=True, text=True, env=env_for(tmp_path), timeout=120)
    assert p.returncode == 3, p.stderr
    # Only the result on stdout: no bar, no carriage returns, no per-call lines.
    assert p.stdout == ("done: 30 rows sent, 30 applied (30 fen), 0 already applied, "
                        "0 rejected, 1 bad rows skipped\n")
    assert p.stderr == f"{f}:31: skipped: amount_fen '1.5' is not a positive integer number of fen\n"


@pytest.fixture(scope="module")
def sessions(child, tmp_path_factory):
    """The chain of the child: HQ, stores 7 and 8, the admin root and a cashier at each
    store; their session tokens by login."""
    cfg = tmp_path_factory.mktemp("cfg")
    saved = {k: os.environ.get(k) for k in ("XDG_CONFIG_HOME", "MMS_PASSWORD", "MMS_SESSION")}
    os.environ.update(XDG_CONFIG_HOME=str(cfg), MMS_PASSWORD=PASSWORD)
    os.environ.pop("MMS_SESSION", None)
    t = ("--target", child.target)
    try:
        def run(*argv: str) -> None:
            assert main(list(argv)) == 0, argv

        run("chain", "bootstrap", *t, "--name", "C", "--admin-login", "root",
            "--token-file", os.path.join(child.data, "bootstrap.token"))
        run("login", *t, "--login", "root")
        run("chain", "add", "--kind", "region", "--parent", "1", "--name", "R")
        for store in ("7", "8"):
            run("chain", "add", "--kind", "store", "--parent", "2", "--name", "S" + store,
                "--id", store)
            run("operator", "add", "--login", "cash" + store, "--role", "cashier",
                "--store", store)
        out = {}
        for login in ("root", "cash7", "cash8"):
            import contextlib
            import io

            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                run("login", *t, "--login", login, "--print-token")
            out[login] = buf.getvalue().strip()
        return out
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_replay_with_an_operator_session_is_attributed(child, sessions, tmp_path, capsys):
    session = sessions["cash7"]  # a cashier of store 7, the terminal's store
    f = tmp_path / "attributed.csv"
    f.write_text("op-1,703,4200\n")
    before = balances(child)
    # Refused before anything is applied: a session that is not one, an operator who
    # may not recharge (the admin), a cashier of another store.
    for other, why in (("not-a-session", "UNAUTHENTICATED SESSION_INVALID: operator_session "
                                         "is unknown"),
                       (sessions["root"], "PERMISSION_DENIED PERMISSION_NOT_GRANTED: role "
                                          "admin does not hold recharge"),
                       (sessions["cash8"], "PERMISSION_DENIED")):
        assert main(["replay", str(f), "--target", child.target, "--token", child.token(),
                     "--session", other, "--restart"]) == 1
        err = capsys.readouterr().err
        assert why in err, err
        assert balances(child) == before
    assert main(["replay", str(f), "--target", child.target, "--token", child.token(),
                 "--session", session, "--restart"]) == 0
    assert "1 rows sent, 1 applied (4200 fen)" in capsys.readouterr().out
    assert balances(child)[2] - before[2] == 4200
    assert main(["card", "journal", "703", "--target", child.target, "--session", session,
                 "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    newest = entries[0]
    assert newest["op"] == "RECHARGE" and newest["amount_fen"] == 4200
    assert newest["operator_id"] == 2  # cash7, the first operator after root


# --- Ctrl-C on a terminal ----------------------------------------------------------------

def _read_until(fd: int, buf: bytearray, pattern: re.Pattern, timeout: float = 120.0):
    deadline = time.monotonic() + patience_s(timeout)
    while True:
        m = pattern.search(buf.decode("utf-8", "replace"))
        if m:
            return m
        left = deadline - time.monotonic()
        assert left > 0, f"no {pattern.pattern!r} in {bytes(buf)[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {pattern.pattern!r}: {bytes(buf)[-2000:]!r}")
            buf += chunk


def _drain(fd: int, buf: bytearray, proc: subprocess.Popen) -> None:
    """Read the child's terminal until it closes (the child ended). A child that neither
    writes nor ends for patience_s(60) is taken for hung: it is asked for its stacks
    (started with FAULTHANDLER_ENV), which are read too, and the test fails with them."""
    hung = False
    while True:
        ready, _, _ = select.select([fd], [], [], patience_s(60))
        if not ready:
            assert not hung, f"the replay neither wrote nor ended: {bytes(buf)[-4000:]!r}"
            hung = True
            stack_dump(proc)
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            assert not hung, f"the replay neither wrote nor ended: {bytes(buf)[-4000:]!r}"
            return
        buf += chunk


def test_ctrl_c_saves_progress_and_exits_1_with_one_line(child, tmp_path):
    n = 3000
    f = tmp_path / "long.csv"
    f.write_text("client_id,card_no,amount_fen\nlong-bad,701,-1\n"
                 + "".join(f"long-{i},{CARDS[i % 3]},{1 + i % 7}\n" for i in range(n)))
    expected = [sum(1 + i % 7 for i in range(n) if i % 3 == k) for k in range(3)]
    before = balances(child)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    argv = [*MMS, "replay", str(f), "--target", child.target, "--token", child.token(),
            "--call-rows", "1", "--chunk-rows", "1"]
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                            env={**env_for(tmp_path), **FAULTHANDLER_ENV},
                            start_new_session=True)
    os.close(slave)
    buf = bytearray()
    stopped = False
    try:
        # The bad row is reported as found, before the replay is anywhere near done.
        _read_until(master, buf, re.compile(r"long\.csv:2: skipped: amount_fen '-1'"))
        # The bar: rows done of the total, percent, elapsed<left, rate.
        m = _read_until(master, buf, re.compile(
            r"(\d+)%\|[^|]*\| *(\d+)/3001 \[\d\d:\d\d<\d\d:\d\d, *[\d.]+ ?rows/s\]"))
        assert int(m.group(2)) >= 1
        # Hold the server so that the replay is mid-file for certain, then Ctrl-C it.
        child.proc.send_signal(signal.SIGSTOP)
        stopped = True
        proc.send_signal(signal.SIGINT)
        _drain(master, buf, proc)
        rc = wait_exit(proc, 60)
    finally:
        if stopped:
            child.proc.send_signal(signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = buf.decode("utf-8", "replace")
    assert rc == 1, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    lines = [ln for ln in re.split(r"[\r\n]+", text) if "mms replay: interrupted" in ln]
    assert len(lines) == 1, text
    m = re.search(r"mms replay: interrupted after line (\d+): (\d+) rows sent, (\d+) applied "
                  r"\((\d+) fen\), 0 already applied, 0 rejected, 1 bad; progress saved in "
                  r"\S+long\.csv\.mms-progress, run the same command to resume", lines[0])
    assert m, lines[0]
    done_line = int(m.group(1))
    saved = json.loads((tmp_path / "long.csv.mms-progress").read_text())
    assert saved["done_through_line"] == done_line and 3 <= done_line < n + 2
    # Run again: it resumes after the saved line and the file is applied exactly once.
    p = subprocess.run(argv[:-4], capture_output=True, text=True, env=env_for(tmp_path),
                       timeout=patience_s(300))
    assert p.returncode == 3, p.stderr  # the bad row is still bad
    assert f"resuming after line {done_line}" in p.stdout
    assert [a - b for a, b in zip(balances(child), before, strict=True)] == expected


# --- a closed pipe -----------------------------------------------------------------------

def test_closed_pipe_ends_quietly(child, sessions, tmp_path):
    """`mms ... | head -1`: head reads one line and exits; mms ends without a traceback."""
    env = env_for(tmp_path)
    env["MMS_SESSION"] = sessions["cash7"]
    # Enough output to fill the pipe many times over: the journal of a busy card.
    f = tmp_path / "many.csv"
    f.write_text("".join(f"pipe-{i},702,1\n" for i in range(600)))
    assert main(["replay", str(f), "--target", child.target, "--token", child.token()]) == 0
    shell = (f"{' '.join(map(repr, MMS))} card journal 702 --limit 1000 --target "
             f"{child.target} | head -1")
    p = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.stdout.count("\n") == 1 and "RECHARGE" in p.stdout
    assert p.stderr == "", p.stderr
    assert p.returncode in (0, 141)
    # Whatever the pipe's timing, a reader that is gone before the first write: quiet too.
    r, w = os.pipe()
    os.close(r)
    q = subprocess.run([*MMS, "card", "journal", "702", "--limit", "1000", "--target",
                        child.target], stdout=w, stderr=subprocess.PIPE, text=True, env=env,
                       timeout=120)
    os.close(w)
    assert q.stderr == "" and q.returncode == 141
