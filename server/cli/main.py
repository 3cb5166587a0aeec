"""The `mms` command: serve, demo, replay, bench, terminal tokens, and the back office
(login, member, card, operator, points, audit, chain: server/cli/admin.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys


def whole(text: str) -> int:
    """argparse's type for numbers: ASCII digits only (server.cli.admin.whole)."""
    from server.cli.admin import whole as parse

    return parse(text)


def _cmd_serve(args) -> int:
    from server.rpc import config as config_mod
    from server.rpc.serve import serve

    try:
        cfg = config_mod.load(args.config) if args.config else config_mod.ServeConfig()
    except (OSError, ValueError) as e:
        print(f"mms serve: {e}", file=sys.stderr)
        return 2
    if args.listen:
        cfg.listen = args.listen
    if args.metrics:
        cfg.metrics = args.metrics
    if args.terminals:
        cfg.terminals_file = args.terminals
    data = args.data or cfg.data
    if not data:
        print("mms serve: --data DIR is required (or data = ... in --config)", file=sys.stderr)
        return 2
    if args.no_terminals_file:
        cfg.terminals_file = None
    if args.front_ends is not None:
        cfg.front_ends = args.front_ends
    for key in ("standby_of", "epoch", "replication_mode", "replication_token_file"):
        value = getattr(args, key, None)
        if value is not None:
            cfg.replication[key.removeprefix("replication_")] = value
    # Without a terminals file the server takes the chain's terminal tokens only (issued
    # with `mms terminal add --store-id S`); serve() says so when it starts.
    return asyncio.run(serve(data, cfg))


def _cmd_terminal_add(args) -> int:
    from server.rpc.auth import Terminal, load_terminals, new_token, save_terminals, token_hash

    if args.file is None:
        from server.cli import admin as admin_cli

        return admin_cli.run(admin_cli.cmd_terminal_add_chain, args)
    if args.terminal_id is None:
        print("mms terminal add --file: --terminal-id is required", file=sys.stderr)
        return 2
    terms = load_terminals(args.file) if os.path.exists(args.file) else []
    if any(t.terminal_id == args.terminal_id for t in terms):
        print(f"terminal {args.terminal_id} exists in {args.file}", file=sys.stderr)
        return 1
    token = new_token()
    term = Terminal(args.terminal_id, args.store_id, token_hash(token), args.role, args.name)
    terms.append(term)
    save_terminals(args.file, terms)
    # The token is shown once; only its hash is stored.
    if args.json:
        print(json.dumps({"terminal_id": term.terminal_id, "store_id": term.store_id,
                          "role": term.role, "name": term.name, "file": args.file,
                          "token": token}, ensure_ascii=False))
    else:
        print(token)
    return 0


def _cmd_terminal_revoke(args) -> int:
    from server.rpc.auth import revoke_terminal

    if args.file is None:
        from server.cli import admin as admin_cli

        return admin_cli.run(admin_cli.cmd_terminal_revoke_chain, args)
    if not revoke_terminal(args.file, args.terminal_id):
        print(f"no terminal {args.terminal_id} in {args.file}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args) -> int:
    from server.tools.demo import main_demo

    return main_demo(args)


def _cmd_replay(args) -> int:
    from server.cli.replay import main_replay

    return main_replay(args)


def _cmd_bench_grpc(args) -> int:
    if args.replication:  # a primary and a standby per replication mode
        from server.tools.bench_replication import main_pair

        return main_pair(args)
    from server.tools.bench import main_grpc

    return main_grpc(args)


def _cmd_cluster_demo(args) -> int:
    from server.tools.cluster import main_cluster_demo

    return main_cluster_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mms", description="Membership and stored-value core.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve gRPC and metrics over a data directory")
    s.add_argument("--data", help="LMDB data directory (created if missing)")
    s.add_argument("--listen", help="gRPC HOST:PORT (default 127.0.0.1:7000)")
    s.add_argument("--metrics", help="metrics HOST:PORT for /metrics, /livez, /readyz")
    s.add_argument("--config", help="TOML config file (see docs/operating.md)")
    s.add_argument("--terminals", help="terminals registry JSON (overrides the config)")
    s.add_argument("--no-terminals-file", action="store_true",
                   help="ignore the config's terminals file: only the chain's terminal tokens "
                        "(the default without --terminals or terminals_file)")
    s.add_argument("--standby-of", metavar="HOST:PORT",
                   help="serve as a standby of this primary (reads only; docs/operating.md)")
    s.add_argument("--epoch", type=whole, help="primary: the epoch (term) stamped on every "
                   "replicated commit (default 1, or the config's)")
    s.add_argument("--replication-mode", choices=("async", "sync"),
                   help="primary: acknowledge before (async) or after (sync) the standby's fsync")
    s.add_argument("--replication-token-file",
                   help="the replication token both nodes share (or MMS_REPLICATION_TOKEN)")
    s.add_argument("--front-ends", type=whole, metavar="N",
                   help="N gRPC front-end processes on the port (SO_REUSEPORT), handing "
                        "unary swipes to this process over shared memory (default 0: one "
                        "process; docs/operating.md)")
    s.set_defaults(func=_cmd_serve)

    t = sub.add_parser("terminal", help="terminal tokens: in a registry file (--file) or in "
                                        "the server's chain (without --file)")
    tsub = t.add_subparsers(dest="terminal_command", required=True)
    ta = tsub.add_parser("add", help="add a terminal and print its new token once")
    ta.add_argument("--file", help="registry file; without it, the chain of --target")
    ta.add_argument("--terminal-id", type=whole, help="required with --file; else the next id")
    ta.add_argument("--store-id", type=whole, required=True)
    ta.add_argument("--role", choices=("pos", "admin"), default="pos")
    ta.add_argument("--name", default="")
    ta.set_defaults(func=_cmd_terminal_add)
    tr = tsub.add_parser("revoke", help="revoke a terminal's token")
    tr.add_argument("--file", help="registry file; without it, the chain of --target")
    tr.add_argument("--terminal-id", type=whole, required=True)
    tr.set_defaults(func=_cmd_terminal_revoke)
    from server.cli import admin as admin_cli

    admin_cli.add_chain_terminal_args(ta, tr)
    admin_cli.add_commands(sub, tsub)
    from server.cli import segment as segment_cli

    segment_cli.add_commands(sub)

    from server.cli import plan as plan_cli

    plan_cli.add_commands(sub)

    d = sub.add_parser("demo", help="run a demo chain with a simulated POS fleet")
    d.add_argument("--data", help="data directory (default: a temporary one)")
    d.add_argument("--seconds", type=float, default=20.0)
    d.add_argument("--cards", type=whole, default=5000)
    d.add_argument("--keep", action="store_true", help="keep serving after the summary")
    d.add_argument("--listen", default="127.0.0.1:0")
    d.add_argument("--metrics", default="127.0.0.1:0")
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("replay", help="replay a recharge CSV through BulkRecharge")
    r.add_argument("file", help="CSV with columns client_id,card_no,amount_fen")
    r.add_argument("--target",
                   help="server HOST:PORT, or every node of a pair/trio, comma-separated "
                        "(required unless --dry-run)")
    r.add_argument("--token", default=os.environ.get("MMS_TOKEN"),
                   help="terminal token (default: $MMS_TOKEN)")
    r.add_argument("--ca", help="CA certificate for a TLS server")
    r.add_argument("--namespace", default="",
                   help="mixed into ids derived from non-hex client_id values")
    r.add_argument("--chunk-rows", type=whole, default=2048)
    r.add_argument("--call-rows", type=whole, default=65536,
                   help="rows per BulkRecharge call; progress is saved after each call")
    r.add_argument("--restart", action="store_true", help="ignore a saved progress file")
    from server.cli.replay import add_options as add_replay_options

    add_replay_options(r)
    r.set_defaults(func=_cmd_replay)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    be = bsub.add_parser("engine", help="the engine alone (server.tools.bench_engine)", add_help=False)
    be.add_argument("rest", nargs=argparse.REMAINDER)
    be.set_defaults(func=None)
    bm = bsub.add_parser("memory", help="resident memory per million cards, members and ops "
                         "(server.tools.bench_memory)", add_help=False)
    bm.add_argument("rest", nargs=argparse.REMAINDER)
    bm.set_defaults(func=None)
    bg = bsub.add_parser("grpc", help="end-to-end load through gRPC")
    bg.add_argument("--streams", type=whole, default=4)
    bg.add_argument("--seconds", type=float, default=5.0)
    bg.add_argument("--batch", type=whole, default=1024)
    bg.add_argument("--unary", action="store_true", help="unary Swipe calls instead of streams")
    bg.add_argument("--replication", metavar="MODES",
                    help="none,async,sync: the same streamed load against a lone primary and "
                         "against a primary with a standby per mode, with ratios to none")
    bg.add_argument("--rate", type=float, default=0.0,
                    help="unary only: offered swipes/s in total (0 = as fast as possible)")
    bg.add_argument("--driver", choices=("python", "native"), default="python",
                    help="unary load client: grpc.aio here, or server/tools/loadgen.cc compiled "
                         "(g++, libgrpc++-dev; falls back to python with a message)")
    bg.add_argument("--ceiling", action="store_true",
                    help="unary only: also drive a no-op grpc.aio server on the same stubs with "
                         "the same client; report ceiling_per_s and ratio")
    bg.add_argument("--ceiling-processes", type=whole, default=1, metavar="N",
                    help="with --ceiling: N no-op servers on one port (SO_REUSEPORT), one "
                         "process each; every caller has a connection of its own")
    bg.add_argument("--front-ends", type=whole, default=0, metavar="N",
                    help="start the server with N gRPC front-end processes on its port "
                         "(mms serve --front-ends N; 0: one process)")
    bg.add_argument("--cards", type=whole, default=10_000)
    bg.add_argument("--target", help="an existing server (needs --token and cards), or every "
                                     "node of a pair/trio, comma-separated")
    bg.add_argument("--token", default=os.environ.get("MMS_TOKEN"))
    bg.add_argument("--json", action="store_true")
    bg.set_defaults(func=_cmd_bench_grpc)

    cl = sub.add_parser("cluster", help="a loopback cluster: etcd and three mms nodes")
    clsub = cl.add_subparsers(dest="cluster_command", required=True)
    cd = clsub.add_parser("demo", help="start etcd, a primary and two standbys; kill the "
                                       "primary and show the takeover")
    cd.add_argument("--lease-ttl-s", type=whole, default=2)
    cd.set_defaults(func=_cmd_cluster_demo)

    k = sub.add_parser("backup", help="copy a data directory consistently, also while it serves")
    k.add_argument("--data", required=True, help="the data directory (live or not)")
    k.add_argument("dest", help="an empty or new directory for the copy")
    k.set_defaults(func=_cmd_backup)
    return p


def _cmd_backup(args) -> int:
    from core import backup

    last = backup(args.data, args.dest)
    print(f"backup of {args.data} in {args.dest}: journal up to seq {last}")
    return 0


# Options whose value is a secret that may begin with "-": a token issued before tokens
# stopped doing so, or a password. argparse reads `--session -x...` as two options.
SECRET_OPTIONS = frozenset({"--session", "--token", "--bootstrap-token", "--password",
                            "--admin-password", "--old-password", "--new-password"})


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of parser and its subcommands."""
    out: set[str] = set()
    for action in parser._actions:
        out.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _option_strings(sub)
    return out


def join_secret_values(argv: list[str], known: set[str]) -> list[str]:
    """`--session -x...` as `--session=-x...`: a secret option takes the next argument
    as its value even when it starts with "-", unless that argument is itself one of
    mms's options (the value was left out). `--session=-x...` needs no help."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        if (arg in SECRET_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-")
                and argv[i + 1] not in known and argv[i + 1] != "--"):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `mms bench engine ...` belongs to server.tools.bench_engine; hand it the rest untouched.
    if argv[:2] == ["bench", "engine"]:
        from server.tools.bench_engine import main_engine

        return main_engine(argv[2:])
    if argv[:2] == ["bench", "memory"]:
        from server.tools.bench_memory import main as main_memory

        return main_memory(argv[2:])
    parser = build_parser()
    args = parser.parse_args(join_secret_values(argv, _option_strings(parser)))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)

