"""What tests of every tier share: where the checkout is, client ids, TLS files."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def cid(tag: str | None = None) -> bytes:
    """A client id: a fresh random one, or (given a tag) the same id for the same tag, so a
    test can send an op again under its first id."""
    if tag is None:
        return os.urandom(16)
    return tag.encode().ljust(16, b".")[:16]


def patience_s(seconds: float) -> float:
    """How long to wait for a child's event before calling it a hang: seconds, stretched
    by the load per core (server.tools.cluster.bound_s, the one rule for the bounds of
    the tests' and the demo's waits). Only ever the bound of a wait that ends on an event
    (a line printed, a process's exit); never a measure of speed."""
    from server.tools.cluster import bound_s

    return bound_s(seconds)


# A child of a test started with this in its environment prints every thread's stack on
# SIGABRT (the wait that gave up on it sends one: stack_dump), so a hang says where.
FAULTHANDLER_ENV = {"PYTHONFAULTHANDLER": "1"}


def stack_dump(proc) -> None:
    """Ask a child started with FAULTHANDLER_ENV for its threads' stacks (it then exits)."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGABRT)


def wait_exit(proc, seconds: float) -> int:
    """proc's exit code, waited for patience_s(seconds). A child still running then is
    taken for hung: its stacks are asked for (stack_dump) and its code is -SIGABRT (or
    -SIGKILL if even that did not end it), which the caller's assertion shows with the
    child's output."""
    import subprocess

    try:
        return proc.wait(patience_s(seconds))
    except subprocess.TimeoutExpired:
        stack_dump(proc)
        try:
            return proc.wait(patience_s(30))
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def mutual_tls_files(d: Path) -> dict[str, str]:
    """A test CA, and a server and a client certificate it signed (for 127.0.0.1 and
    localhost), made with openssl in d: the [tls] table of a server that requires client
    certificates (ca.crt, client.key and client.crt stay in d for the client)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", f"{name}.crt")
    return {"cert_file": str(d / "server.crt"), "key_file": str(d / "server.key"),
            "client_ca_file": str(d / "ca.crt")}

def wait_for_file(path: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Wait until a crash test's child has created path (it reached its point and now
    waits to be killed there); fail if the child exits first or never gets there."""
    deadline = time.monotonic() + patience_s(timeout_s)
    while not os.path.exists(path):
        assert proc.poll() is None, f"the child exited ({proc.returncode}) before its point"
        assert time.monotonic() < deadline, "the child never reached its point"
        time.sleep(0.005)


def kill_at_point(code: str, ready: str) -> dict:
    """Run a crash test's child (Python source), wait until it has written its state as
    JSON to ready (it reached its point and now waits to be killed there), SIGKILL it;
    the state it wrote."""
    import json
    import signal
    import sys

    proc = subprocess.Popen([sys.executable, "-c", code])
    wait_for_file(ready, proc)
    with open(ready) as f:
        state = json.load(f)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return state
