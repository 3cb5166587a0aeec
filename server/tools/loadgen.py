"""The native load driver of `mms bench grpc --unary --driver native`.

`server/tools/loadgen.cc` is a small C++ gRPC client (the generic stub, no generated code)
that keeps --streams unary Swipe calls outstanding, or starts them at a fixed rate,
and counts a call only when its gRPC status is OK. It costs the machine a few percent
of a core where the Python client takes a whole one, so on a 2-core machine the server
gets the other core instead of sharing it with its load.

It is compiled on first use with g++ against the system's grpc++ (Debian:
`apt-get install g++ libgrpc++-dev pkg-config`) into a cache directory, keyed by the
source's hash. Without them, build() raises NativeUnavailable with what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loadgen.cc")
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "mms")
BUILD_TIMEOUT_SECONDS = 300.0
# Beyond the load itself: connecting, and the calls still running at the end.
RUN_SLACK_SECONDS = 60.0


class NativeUnavailable(RuntimeError):
    """The native driver cannot be built here; the message says what is missing."""


def _compile_flags() -> list[str]:
    pkg = shutil.which("pkg-config")
    if pkg is None:
        raise NativeUnavailable("pkg-config not found (Debian: apt-get install pkg-config)")
    out = subprocess.run([pkg, "--cflags", "--libs", "grpc++"], capture_output=True, text=True)
    if out.returncode != 0:
        raise NativeUnavailable("grpc++ development files not found "
                                "(Debian: apt-get install libgrpc++-dev)")
    return out.stdout.split()


def build(cache_dir: str = CACHE_DIR) -> str:
    """The path of the compiled driver, compiling it if this source was not built yet."""
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    binary = os.path.join(cache_dir, f"mms-loadgen-{digest}")
    if os.access(binary, os.X_OK):
        return binary
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise NativeUnavailable("no C++ compiler found (Debian: apt-get install g++)")
    flags = _compile_flags()
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mms-loadgen-", dir=cache_dir)
    os.close(fd)
    try:
        out = subprocess.run([cxx, "-O2", "-std=c++17", "-o", tmp, SOURCE, *flags, "-lpthread"],
                             capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS)
        if out.returncode != 0:
            raise NativeUnavailable("compiling server/tools/loadgen.cc failed:\n" + out.stderr[-2000:])
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)  # atomic: a concurrent build finds a whole binary or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary


def run(binary: str, target: str, token: str, *, streams: int, seconds: float,
        rate: float = 0.0, card_base: int, cards: int, amount_max: int) -> dict:
    """Run the driver once; its JSON report (calls, ok, elapsed_s, p50/p99/max_ms,
    offered, skipped, connections, errors by status name)."""
    cmd = [binary, "--target", target, "--token", token, "--streams", str(streams),
           "--seconds", repr(float(seconds)), "--rate", repr(float(rate)),
           "--card-base", str(card_base), "--cards", str(cards),
           "--amount-max", str(amount_max)]
    out = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=seconds + RUN_SLACK_SECONDS)
    if out.returncode != 0:
        raise RuntimeError(f"mms-loadgen failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


def summary(report: dict, *, streams: int, rate: float) -> dict:
    """The driver's report in the shape of the Python driver's summary."""
    elapsed = report["elapsed_s"]
    out = {
        "mode": "unary", "streams": streams, "batch": 1, "seconds": round(elapsed, 3),
        "swipes": report["ok"], "rejected": report["calls"] - report["ok"],
        "swipes_per_s": round(report["ok"] / elapsed, 1) if elapsed else 0.0,
        "p50_ms": report["p50_ms"], "p99_ms": report["p99_ms"], "max_ms": report["max_ms"],
        "calls": report["calls"], "errors": report["errors"], "driver": "native",
    }
    if rate:
        out["offered_per_s"] = rate
        out["skipped"] = report["skipped"]
    return out
