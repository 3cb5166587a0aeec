"""`mms demo` explains itself: the rejects it injects and why, what "till p99" is, no
path it deletes, and the next three commands, which work as printed (with --keep: a till
token, an admin login, a member lookup against the demo's own server)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

from common import FAULTHANDLER_ENV, patience_s, wait_exit

from server.cli.main import main
from server.tools.demo import INJECTED_REJECTS

MMS = [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main())"]


def _paths(text: str) -> list[str]:
    return re.findall(r"(/[\w.+-]+(?:/[\w.+-]+)+)", text)


def test_demo_explains_its_rejects_and_deletes_what_it_does_not_show(capsys):
    assert main(["demo", "--seconds", "1", "--cards", "200"]) == 0
    out = capsys.readouterr().out
    for reason in INJECTED_REJECTS:
        assert re.search(rf"^  {reason} +\S", out, re.MULTILINE), reason
    assert "till p99 = the time within which 99% of the last 2,000 unary Swipe calls" in out
    # Every reject in the summary says whether it was on purpose; here all are.
    rejects = re.findall(r"^    (\w+) +[\d,]+  \((.*)\)$", out, re.MULTILINE)
    assert rejects and all(why == "on purpose" for _, why in rejects), rejects
    assert "data in a temporary directory, deleted when the demo ends" in out
    assert _paths(out) == [], _paths(out)  # /metrics is a URL's path, not a file's
    tail = out.rstrip().split("\n")[-7:]
    assert tail[0] == "next, try:"
    assert [ln.strip() for ln in tail[2::2]] == [
        "mms demo --keep", "mms bench grpc --seconds 5", "mms serve --data ./mms-data"]


class _Lines:
    """The child's output lines, read by a thread (a select() on a buffered pipe can miss
    lines already read into the buffer); wait() returns once a line holds the text."""

    def __init__(self, proc) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self.thread.start()

    def _pump(self, proc) -> None:
        for line in proc.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append("")  # EOF
            self.changed.notify_all()

    def wait(self, text: str, timeout: float = 300.0) -> str:
        with self.changed:
            ok = self.changed.wait_for(
                lambda: any(text in ln for ln in self.lines) or "" in self.lines,
                patience_s(timeout))
            out = "".join(self.lines)
        assert ok and text in out, out
        return out


def test_demo_keep_ends_with_three_commands_that_work(tmp_path):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"), **FAULTHANDLER_ENV)
    for k in ("MMS_SESSION", "MMS_TARGET", "MMS_PASSWORD", "MMS_TOKEN"):
        env.pop(k, None)
    data = tmp_path / "demo-data"
    proc = subprocess.Popen([*MMS, "demo", "--keep", "--seconds", "1", "--cards", "100",
                             "--data", str(data)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    lines = _Lines(proc)
    try:
        out = lines.wait("Ctrl-C to stop")
        assert f"data in {data}/data" in out  # a directory of the user's, kept: shown
        commands = re.findall(r"^  [123]\. (.*):\n     (.*)$", out, re.MULTILINE)
        assert len(commands) == 3, out
        assert "till's token" in commands[0][0] and "admin" in commands[1][0] \
            and "member" in commands[2][0]
        results = []
        for _, command in commands:
            p = subprocess.run(["bash", "-c", command.replace("mms ", " ".join(
                               f"'{a}'" for a in MMS) + " ")], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=patience_s(120))
            assert p.returncode == 0, (command, p.stdout, p.stderr)
            results.append(p.stdout)
        assert "1 rows sent, 1 applied (1000 fen)" in results[0]
        assert "logged in as admin (admin)" in results[1]
        shown = results[2]
        assert "Demo Member" in shown and "phone 138****0000" in shown
        # The member's card: the demo's 500.00 yuan with its tier's 80.00 bonus, and the
        # till's 10.00 just recharged.
        assert re.search(r"card 8799999999 .*\n.*\n\s+balance 590\.00 yuan", shown), shown
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        # Its exit is the event (the server's stop included, which takes a final
        # checkpoint); a hang shows the demo's stacks in its output below.
        wait_exit(proc, 120)
        lines.thread.join(patience_s(60))
        proc.stdout.close()
    out = "".join(lines.lines)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
