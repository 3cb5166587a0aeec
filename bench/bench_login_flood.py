"""Member-search latency while bad logins arrive, against a real server on loopback.

    python3 bench/bench_login_flood.py [--members N] [--rate R] [--seconds S]

Three phases of S seconds each (default 5): member searches alone; searches while R
(default 100) failed logins per second arrive from one address with the chain's real
scrypt cost (the throttle answers most of them LOGIN_THROTTLED, unhashed); and the same
with the address throttle lifted, so every login is hashed and only the password pool
(PASSWORD_HASH_WORKERS threads) stands between them and the searches. Prints p50/p99 of
SearchMembers per phase and the logins' answers. A benchmark, not a test: nothing here
asserts a speed (the issue's target: searches within 2x while 100 bad logins/s arrive).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import grpc  # noqa: E402

import server.rpc.auth  # noqa: E402
from core import Engine  # noqa: E402
from core.domain.chain import Chain, ChainConfig  # noqa: E402
from core.domain.members import MemberStore, write_csv  # noqa: E402
from server.mms_pb import admin_pb2, admin_pb2_grpc  # noqa: E402
from server.tools.launch import serving_in_thread  # noqa: E402

BOOT = "bench-boot"
PW = "bench-password-1"


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=100.0, help="bad logins per second")
    ap.add_argument("--seconds", type=float, default=5.0, help="per phase")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mms-loginflood-") as data:
        engine = Engine(data)
        chain = Chain(engine, ChainConfig())  # the real scrypt cost
        members = MemberStore(engine, key=bytes(32))
        with serving_in_thread(engine, chain=chain, members=members, bootstrap_token=BOOT,
                               timeout_s=120) as (target, srv):
            channel = grpc.insecure_channel(target)
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            try:
                admin.Bootstrap(admin_pb2.BootstrapRequest(
                    client_id=os.urandom(16), chain_name="Bench", admin_login="root",
                    admin_password=PW), metadata=(("authorization", f"Bearer {BOOT}"),), timeout=60)
                token = admin.Login(admin_pb2.LoginRequest(login="root", password=PW),
                                    timeout=60).session_token
                md = (("authorization", f"Bearer {token}"),)
                csv_path = os.path.join(data, "m.csv")
                write_csv(csv_path, ["name", "phone"],
                          ((f"Member{i}", f"139{i:08d}") for i in range(args.members)))
                members.import_file(csv_path, file_id="bench")

                def search_phase(flood: bool) -> tuple[list[float], Counter]:
                    stop = threading.Event()
                    answers: Counter = Counter()

                    def flood_logins() -> None:
                        interval, nxt, i = 1.0 / args.rate, time.perf_counter(), 0
                        pool = []
                        while not stop.is_set():
                            now = time.perf_counter()
                            if now < nxt:
                                time.sleep(nxt - now)
                                continue
                            nxt += interval
                            i += 1
                            fut = admin.Login.future(admin_pb2.LoginRequest(
                                login=f"guess{i}", password="wrong-password"), timeout=120)
                            pool.append(fut)
                        for f in pool:
                            try:
                                f.result()
                            except grpc.RpcError as e:
                                answers[e.code().name] += 1

                    t = threading.Thread(target=flood_logins)
                    if flood:
                        t.start()
                    lat: list[float] = []
                    end = time.perf_counter() + args.seconds
                    n = 0
                    while time.perf_counter() < end:
                        n += 1
                        t0 = time.perf_counter()
                        admin.SearchMembers(admin_pb2.SearchMembersRequest(
                            name=f"Member{(n * 7919) % args.members}"), metadata=md, timeout=60)
                        lat.append(time.perf_counter() - t0)
                    stop.set()
                    if flood:
                        t.join()
                    return lat, answers

                out = {"members": args.members, "login_rate_per_s": args.rate,
                       "password_hash_workers": server.rpc.auth.PASSWORD_HASH_WORKERS,
                       "cpus": os.cpu_count()}
                for name, flood in (("alone", False), ("flood_throttled", True)):
                    lat, answers = search_phase(flood)
                    out[name] = {"searches": len(lat), "p50_ms": round(_pct(lat, 0.5) * 1e3, 2),
                                 "p99_ms": round(_pct(lat, 0.99) * 1e3, 2),
                                 "mean_ms": round(statistics.mean(lat) * 1e3, 2),
                                 "logins": dict(answers)}
                # The same flood with the address throttle lifted: every login is hashed.
                srv.admin.logins._peers.max = 10**9
                srv.admin.logins._peers._keys.clear()
                lat, answers = search_phase(True)
                out["flood_unthrottled"] = {"searches": len(lat),
                                            "p50_ms": round(_pct(lat, 0.5) * 1e3, 2),
                                            "p99_ms": round(_pct(lat, 0.99) * 1e3, 2),
                                            "mean_ms": round(statistics.mean(lat) * 1e3, 2),
                                            "logins": dict(answers)}
                print(json.dumps(out, indent=1))
            finally:
                channel.close()
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
