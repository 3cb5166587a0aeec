"""The standby's apply, repeatable (issue 14): record a replication stream from a live
primary under the bench's streamed load, then replay it into a copy of the standby's
store, as often as wanted, measuring the CPU per journal record of the apply alone
(Replica.apply_many: decode, the transaction, its fsyncs, the publish). The live bench
(`mms bench grpc --replication`) moves with the machine's load; the same frames applied
the same way do not (or far less), and callgrind can run on the replay.

    python3 bench/replication_replay.py record DIR [--seconds 4] [--mode sync]
    python3 bench/replication_replay.py replay DIR [--group 1] [--runs 3] [--json]
    valgrind --tool=callgrind python3 bench/replication_replay.py replay DIR --runs 1

record: a primary (`mms serve`, the given mode) with a standby (`mms serve
--standby-of`), the bench's cards, a hot copy taken into DIR/base before the load, the
load, then every frame after the copy's frame into DIR/frames.bin (u32 length, frame).
replay: DIR/base copied, a Replica opened on the copy, the frames applied `group` at a
time (1: one transaction a frame, as a sync standby that keeps up writes them).
Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import struct
import sys
import tempfile
import time

_LEN = struct.Struct("<I")


def load_frames(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        raw = f.read()
    frames, off = [], 0
    while off < len(raw):
        (n,) = _LEN.unpack_from(raw, off)
        off += _LEN.size
        frames.append(raw[off:off + n])
        off += n
    return frames


def save_frames(path: str, frames) -> None:
    with open(path, "wb") as f:
        for frame in frames:
            f.write(_LEN.pack(len(frame)))
            f.write(frame)


def record(out: str, seconds: float, mode: str, cards: int = 2000) -> dict:
    from server.mms_pb import replication_pb2
    from server.rpc.replication import _channel, bootstrap, parse_chunk, status_of
    from server.tools.bench import _setup, run_load
    from server.tools.launch import ChildServer, TerminalSpec

    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with tempfile.TemporaryDirectory(prefix="mms-replay-rec-") as tmp:
        token = os.urandom(16).hex()
        token_file = os.path.join(tmp, "replication.token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 1, "pos")]
        for d in ("p", "s"):
            os.makedirs(os.path.join(tmp, d))
        with ChildServer(os.path.join(tmp, "p"), terms, extra={"replication": {
                "token_file": token_file, "mode": mode}}) as primary:
            standby = ChildServer(os.path.join(tmp, "s"), terms, extra={"replication": {
                "token_file": token_file, "standby_of": primary.target}}).start()
            try:
                nos = asyncio.run(_setup(primary.target, primary.token("admin"),
                                         primary.token("pos"), cards))
                frame, epoch = bootstrap(os.path.join(out, "base"), primary.target, token)
                load = asyncio.run(run_load(primary.target, primary.token("pos"), nos, streams=2,
                                            seconds=seconds, batch=512, unary=False))
                last = status_of(primary.target, token)["frame"]
                frames = _subscribe(primary.target, token, frame, epoch, last,
                                    _channel, parse_chunk, replication_pb2)
            finally:
                standby.terminate()
    save_frames(os.path.join(out, "frames.bin"), frames)
    return {"mode": mode, "swipes_per_s": load["swipes_per_s"], "after_frame": frame,
            "frames": len(frames), "bytes": sum(len(f) for f in frames)}


def _subscribe(target, token, frame, epoch, last, channel, parse_chunk, pb) -> list[bytes]:
    """Every frame after frame up to last, one a message, as the primary's feed holds them."""
    import threading

    done = threading.Event()
    with channel(target) as ch:
        sub = ch.stream_stream("/mms.v1.ReplicationService/Subscribe",
                               request_serializer=pb.SubscribeRequest.SerializeToString,
                               response_deserializer=parse_chunk)

        def requests():
            yield pb.SubscribeRequest(after_frame=frame, epoch=epoch, standby="replay-recorder")
            done.wait()

        call = sub(requests(), metadata=(("authorization", f"Bearer {token}"),))
        try:
            next(call)  # the acceptance
            from server.rpc.replication import _Frames
            got = _Frames()
            out: list[bytes] = []
            for chunk in call:
                got.add(chunk)
                out.extend(bytes(f) for f in got.complete)
                got.complete.clear()
                if frame + len(out) >= last:
                    return out
            return out
        finally:
            done.set()
            call.cancel()


def replay_into(directory: str, dest: str, group: int = 1) -> dict:
    """DIR/base copied to dest and DIR/frames.bin applied to it, group frames a
    transaction; the CPU and wall time of the apply alone per journal record."""
    from core import Replica
    from core.engine.replication import decode_frame

    frames = load_frames(os.path.join(directory, "frames.bin"))
    records = 0
    for data in frames:
        f = decode_frame(data)
        if f.first_seq:
            records += f.last_seq - f.first_seq + 1
    shutil.copytree(os.path.join(directory, "base"), dest)
    replica = Replica(dest)
    try:
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for i in range(0, len(frames), group):
            replica.apply_many(frames[i:i + group])
        r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    finally:
        replica.close()
    per = 1e6 / max(1, records)
    return {"frames": len(frames), "records": records, "group": group,
            "user_us_per_record": round((r1.ru_utime - r0.ru_utime) * per, 3),
            "sys_us_per_record": round((r1.ru_stime - r0.ru_stime) * per, 3),
            "wall_us_per_record": round((w1 - w0) * per, 3),
            "loadavg": os.getloadavg()[0]}


def replay(directory: str, group: int = 1, runs: int = 1) -> list[dict]:
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="mms-replay-", dir=directory) as tmp:
            out.append(replay_into(directory, os.path.join(tmp, "standby"), group))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("dir")
    rec.add_argument("--seconds", type=float, default=4.0)
    rec.add_argument("--mode", choices=("async", "sync"), default="sync")
    rep = sub.add_parser("replay")
    rep.add_argument("dir")
    rep.add_argument("--group", type=int, default=1)
    rep.add_argument("--runs", type=int, default=1)
    for q in (rec, rep):
        q.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "record":
        res = record(args.dir, args.seconds, args.mode)
        print(json.dumps(res) if args.json else res)
        return 0
    if args.group < 1 or args.runs < 1:
        print("--group and --runs are at least 1")
        return 2
    for r in replay(args.dir, args.group, args.runs):
        print(json.dumps(r) if args.json else r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
