"""`mms serve --config FILE`: one TOML file for the server, the engine and the rules.

    listen = "0.0.0.0:7000"            # overridden by --listen
    metrics = "0.0.0.0:9100"           # overridden by --metrics
    terminals_file = "terminals.json"  # relative to this file; see server/rpc/auth.py
    inflight_ops_max = 131072
    shutdown_grace_s = 10
    drain_delay_s = 0                  # on SIGTERM: /readyz 503 this long before the port closes
    front_ends = 0                     # N gRPC front-end processes on the port (--front-ends)

    [tls]                              # optional
    cert_file = "server.crt"
    key_file = "server.key"
    client_ca_file = "clients-ca.crt"  # optional: require client certificates

    [engine]                           # optional: core.EngineConfig fields (an old name
                                       # such as batch_max is read with a warning)
    sync = true

    [rules]                            # optional: core.RulesConfig, applied at bootstrap

    [chain]                            # optional: core.domain.chain.ChainConfig fields
    session_ttl_s = 43200

    [ha]                               # optional: leadership in etcd (server/rpc/leader.py)
    etcd = ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]
    name = "node-a"                    # unique in the cluster
    advertise = "10.0.0.11:7000"       # where clients reach this node (default: --listen)
    cluster = "mms"                    # the etcd key prefix /mms/<cluster>/
    lease_ttl_s = 10
    [replication]                      # optional (docs/operating.md, "A standby")
    token_file = "replication.token"   # both nodes; MMS_REPLICATION_TOKEN overrides
    mode = "sync"                      # primary: "async" (default) or "sync"
    on_standby_lost = "async"          # sync: "wait" (default) or "async" after timeout_s
    timeout_s = 2.0
    epoch = 1                          # primary: --epoch; bumped at every promotion
    standby_of = "10.0.0.1:7000"       # standby: --standby-of
    campaign_lag_records_max = 0       # [ha]: a standby further behind does not campaign
    # With [ha] and a token, leadership decides each node's side: no epoch, no standby_of.

Operators and the chain's terminals live in the data directory (core/domain/chain.py); a
terminals file is still read when given, so both kinds of terminal token work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

from core import EngineConfig
from server.rpc.app import TlsConfig
from server.rpc.constants import INFLIGHT_OPS_MAX, SHUTDOWN_GRACE_SECONDS

KNOWN_KEYS = {"listen", "metrics", "terminals_file", "inflight_ops_max", "shutdown_grace_s",
              "drain_delay_s",
              "tls", "engine", "rules", "data", "chain", "replication"}
KNOWN_KEYS |= {"ha"}  # [ha]: leadership in etcd (server/rpc/leader.py, HaConfig)
KNOWN_KEYS |= {"front_ends"}  # gRPC front-end processes on one port (server/rpc/front.py)
REPLICATION_KEYS = {"token_file", "mode", "on_standby_lost", "timeout_s", "epoch", "standby_of",
                    "campaign_lag_records_max"}


@dataclass
class ServeConfig:
    listen: str | None = None
    metrics: str | None = None
    data: str | None = None
    terminals_file: str | None = None
    inflight_ops_max: int = INFLIGHT_OPS_MAX
    shutdown_grace_s: float = SHUTDOWN_GRACE_SECONDS
    # After SIGTERM, how long /readyz answers 503 while the port still takes calls.
    drain_delay_s: float = 0.0
    tls: TlsConfig | None = None
    engine: EngineConfig = field(default_factory=EngineConfig)
    rules: dict | None = None
    chain: dict = field(default_factory=dict)
    ha: dict | None = None
    replication: dict = field(default_factory=dict)
    # gRPC front-end processes on the listen port (server/rpc/front.py); 0: one process.
    front_ends: int = 0


def load(path: str) -> ServeConfig:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    unknown = set(doc) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    base = os.path.dirname(os.path.abspath(path))

    def rel(p: str | None) -> str | None:
        return None if p is None else os.path.join(base, p)

    repl = dict(doc.get("replication", {}))
    if set(repl) - REPLICATION_KEYS:
        raise ValueError(f"{path}: unknown replication keys {sorted(set(repl) - REPLICATION_KEYS)}")
    if "token_file" in repl:
        repl["token_file"] = rel(repl["token_file"])
    tls = None
    if "tls" in doc:
        t = doc["tls"]
        tls = TlsConfig(rel(t["cert_file"]), rel(t["key_file"]), rel(t.get("client_ca_file")))
    return ServeConfig(
        listen=doc.get("listen"), metrics=doc.get("metrics"), data=rel(doc.get("data")),
        terminals_file=rel(doc.get("terminals_file")),
        inflight_ops_max=int(doc.get("inflight_ops_max", INFLIGHT_OPS_MAX)),
        shutdown_grace_s=float(doc.get("shutdown_grace_s", SHUTDOWN_GRACE_SECONDS)),
        drain_delay_s=float(doc.get("drain_delay_s", 0.0)),
        tls=tls, engine=EngineConfig.from_mapping(dict(doc.get("engine", {})), source=f"{path} [engine]"),
        rules=doc.get("rules"),
        chain=dict(doc.get("chain", {})),
        ha=dict(doc["ha"]) if "ha" in doc else None,
        replication=repl,
        front_ends=_front_ends(doc.get("front_ends", 0), path),
    )


def _front_ends(value, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{path}: front_ends is 0 (one process) or the number of "
                         f"front-end processes, not {value!r}")
    return value
