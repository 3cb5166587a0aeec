"""The server that hosts the gRPC services over core.Engine: it assembles them, TLS,
health, reflection and metrics, and drains on shutdown.

Every engine call goes through `Bridge`, which bounds in-flight ops, maps engine
back-pressure to RESOURCE_EXHAUSTED and awaits the engine's concurrent future on the
event loop without blocking it. Batches travel as packed columns and become an OP array
with numpy; nothing loops per op in Python on the batch paths.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from core.records import (
    is_ascii_digits,
)
from server.mms_pb import (
    admin_pb2,
    admin_pb2_grpc,
    campaign_pb2,
    campaign_pb2_grpc,
    pos_pb2,
    pos_pb2_grpc,
    report_pb2,
    report_pb2_grpc,
    segment_pb2,
    segment_pb2_grpc,
)
from server.rpc.auth import ChainTerminals, Registry, TerminalSources
from server.rpc.bridge import Bridge
from server.rpc.constants import (
    ADMIN,
    CAMPAIGN,
    INFLIGHT_OPS_MAX,
    POS,
    REPORT,
    SCHEDULER_TICK_S,
    SEGMENT,
    SERVER_OPTIONS,
    SHUTDOWN_GRACE_SECONDS,
)
from server.rpc.guard import GuardedServer, RequestGuard
from server.rpc.metrics import HttpEndpoint, Metrics
from server.rpc.pos import PosService
from server.rpc.reflection_v1 import SERVICE_NAME as REFLECTION_V1
from server.rpc.reflection_v1 import add_v1_servicer

log = logging.getLogger("mms.server")

# --- the server -----------------------------------------------------------------------

@dataclass
class TlsConfig:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    def credentials(self) -> grpc.ServerCredentials:
        def read(path: str) -> bytes:
            with open(path, "rb") as f:
                return f.read()

        ca = read(self.client_ca_file) if self.client_ca_file else None
        return grpc.ssl_server_credentials([(read(self.key_file), read(self.cert_file))],
                                           root_certificates=ca,
                                           require_client_auth=ca is not None)


def split_hostport(s: str) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep or not is_ascii_digits(port):
        raise ValueError(f"expected HOST:PORT, got {s!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class MmsServer:
    """A grpc.aio server over an open engine, plus its metrics endpoint.

    The engine is the caller's: stop() drains RPCs but leaves engine.close() to the
    owner, who may still want to read from it.
    """

    def __init__(self, engine, registry: Registry, metrics: Metrics, *,
                 listen: str = "127.0.0.1:0", metrics_listen: str | None = "127.0.0.1:0",
                 tls: TlsConfig | None = None, inflight_ops_max: int = INFLIGHT_OPS_MAX,
                 chain=None, members=None, bootstrap_token: str | None = None,
                 role=None, replication=None, node=None,
                 scheduler_tick_s: float = SCHEDULER_TICK_S, forwarded: bool = False) -> None:
        """chain (core.domain.chain.Chain) and members (core.domain.members.MemberStore) turn on the
        operator side of AdminService and the chain's terminal tokens; without them
        only the file registry's terminals work, as before. bootstrap_token is the
        one-time secret Bootstrap asks for (serve.py writes it to the data directory)."""
        self.engine = engine
        self.chain = chain
        self.members = members
        self.bootstrap_token = bootstrap_token
        self.metrics = metrics
        self.bridge = Bridge(engine, inflight_ops_max)
        metrics.bind(engine, lambda: self.bridge.inflight_ops, self.is_ready)
        self.registry = registry
        self._listen = listen
        self._metrics_listen = metrics_listen
        self._tls = tls
        self._ready = False
        self.port = 0
        self.metrics_port = 0
        self.http: HttpEndpoint | None = None
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.admin = None  # the AdminService, once started
        # The node's role (server/rpc/role.py): writes only on the leader; None = single.
        self.role = role
        self.segments = None  # the SegmentService, once started
        # The scheduler (server/rpc/scheduler.py): plans, settles and rule tags, on the
        # leader only; scheduler_tick_s 0 = no loop (tests tick it themselves).
        self.scheduler = None
        self.scheduler_tick_s = scheduler_tick_s
        # Serving front ends only (mms serve --front-ends): calls name their caller's address.
        self.forwarded = forwarded
        # server/rpc/replication.py: ReplicationService (primary) or StandbyService.
        self.replication = replication
        self.pos = self.reports = self.campaigns = None
        from server.rpc.replication import ReplicationCollector
        # A node in [ha] with replication (server/rpc/replication.py ReplicatedNode): the
        # collector reads its current side at every scrape.
        self.node = node
        self.collector = ReplicationCollector(
            feed=getattr(engine, "feed", None), standby=getattr(replication, "standby", None),
            engine=engine, node=node, role=role)
        metrics.registry.register(self.collector)

    def is_ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        self.server = grpc.aio.server(options=list(SERVER_OPTIONS))
        # One interface, two sources: the chain's terminals first, then the file's.
        terminals = (TerminalSources(ChainTerminals(self.chain), self.registry)
                     if self.chain is not None else self.registry)
        from server.rpc.admin import AdminService  # it builds on this module

        # Every service registers through the guard, which decodes requests itself.
        guarded = GuardedServer(self.server, RequestGuard(self.metrics, frozenset({POS, ADMIN, REPORT, SEGMENT, CAMPAIGN}),
                                                               forwarded=self.forwarded))
        pos = self.pos = PosService(self.bridge, terminals, self.metrics, chain=self.chain)
        pos_pb2_grpc.add_PosServiceServicer_to_server(pos, guarded)
        self.admin = AdminService(self.bridge, self.registry, self.metrics, chain=self.chain,
                                  members=self.members, bootstrap_token=self.bootstrap_token)
        pos.role = self.admin.role = self.role  # rpc_method checks it on every write
        admin_pb2_grpc.add_AdminServiceServicer_to_server(self.admin, guarded)
        from server.rpc.report import ReportService
        self.reports = ReportService(self.admin)
        report_pb2_grpc.add_ReportServiceServicer_to_server(self.reports, guarded)
        from server.rpc.segment import SegmentService
        self.segments = SegmentService(self.admin)
        self.segments.role = self.role
        segment_pb2_grpc.add_SegmentServiceServicer_to_server(self.segments, guarded)
        from server.rpc.scheduler import Scheduler
        self.scheduler = Scheduler(self.engine, members=self.members, segments=self.segments.segments,
                                   role=self.role, tick_s=self.scheduler_tick_s)
        self.scheduler.start()
        from server.rpc.campaign import CampaignService
        campaigns = self.campaigns = CampaignService(self.admin)
        campaigns.role = self.role
        campaign_pb2_grpc.add_CampaignServiceServicer_to_server(campaigns, guarded)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, guarded)
        if self.replication is not None:
            from server.mms_pb import replication_pb2_grpc
            replication_pb2_grpc.add_ReplicationServiceServicer_to_server(self.replication, guarded)
        names = (pos_pb2.DESCRIPTOR.services_by_name["PosService"].full_name,
                 admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
                 report_pb2.DESCRIPTOR.services_by_name["ReportService"].full_name,
                 segment_pb2.DESCRIPTOR.services_by_name["SegmentService"].full_name,
                 campaign_pb2.DESCRIPTOR.services_by_name["CampaignService"].full_name,
                 health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1)
        # What reflection.enable_server_reflection does for an aio server, through the guard;
        # v1 (what grpcurl and current clients ask first) and v1alpha (older clients).
        reflector = reflection.aio.ReflectionServicer(names)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflector, guarded)
        add_v1_servicer(reflector, guarded)
        if self._tls is not None:
            self.port = self.server.add_secure_port(self._listen, self._tls.credentials())
        else:
            self.port = self.server.add_insecure_port(self._listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self._listen}")
        if self._metrics_listen:
            host, port = split_hostport(self._metrics_listen)
            self.http = HttpEndpoint(self.metrics, host, port, self.is_ready)
            self.metrics_port = self.http.port
            self.http.start()
        await self.server.start()
        for name in (*names[:2], ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._ready = True

    def swap_engine(self, engine) -> None:
        """Serve from another engine over the same data: leadership promoted this standby,
        turned this primary into a standby, or its store was bootstrapped again. Every
        holder of the engine takes the new one; the chain and the members reload from it
        (handles, operators and sessions, the PII key and the search index). Called from
        the thread that made the engine; each holder's swap is one assignment."""
        self.engine = engine
        self.bridge.engine = engine
        self.metrics.bind(engine, lambda: self.bridge.inflight_ops, self.is_ready)
        if self.chain is not None:
            self.chain.rebind(engine)
        if self.members is not None:
            self.members.rebind(engine)
        for svc in (self.pos, self.admin, self.reports, self.segments, self.campaigns):
            if svc is not None:
                svc.engine = engine
        if self.segments is not None:
            self.segments._segments = None  # built again over the rebound members
        if self.scheduler is not None:
            self.scheduler.engine = engine  # it asks the role before each run
        self.collector.engine = engine

    def mark_draining(self) -> None:
        """/readyz answers 503 (and mms_ready is 0) from now on, while gRPC still has its
        port: load balancers stop routing here before stop() closes it."""
        self._ready = False

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting: new calls are refused, and open streams get UNAVAILABLE on
        their next batch after their earlier batches are answered. Calls already
        waiting on the engine finish (up to grace); the owner then closes the engine,
        which commits everything it accepted."""
        self.mark_draining()
        self.bridge.accepting = False
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.server is not None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(grace)
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.admin is not None:
            self.admin.logins.close()

