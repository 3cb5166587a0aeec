"""Prometheus metrics for one server instance, and the HTTP endpoint that serves them.

Every server owns its CollectorRegistry, so two servers in one process (tests, the
demo) never share or clash. No metric has a card, member or client id as a label: the
label sets are bounded by the services, methods, codes, op types and results.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from core.records import RESULT_NAMES, op_label

# Latency buckets from 0.1 ms to 10 s: a lone swipe commits in about a millisecond,
# a full stream batch in tens of milliseconds.
LATENCY_BUCKETS_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                           0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS_OPS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                          65536)


def build_version() -> str:
    """The installed mms package's version (pyproject.toml), for mms_build_info."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mms")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class CallStats:
    """One method's grpc_server_* figures as plain numbers: what `rpc_method` (and the
    guard) update on every call, on the server's event loop only. prometheus_client's
    Counter and Histogram take a mutex per update and look the bucket up in Python,
    about 6 us for the three updates of a unary call; this is under 1 us. They are
    exported at scrape time by `_CallCollector` under the same names, labels and
    types, so /metrics reads as before."""

    __slots__ = ("labels", "created", "started", "ok", "codes", "buckets", "sum")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels            # (grpc_type, grpc_service, grpc_method)
        self.created = time.time()
        self.started = 0
        self.ok = 0                     # handled with OK, the common case
        self.codes: dict = {}           # grpc.StatusCode (not OK) -> handled
        # Calls per latency bucket (LATENCY_BUCKETS_SECONDS, then +Inf), not cumulative.
        self.buckets = [0] * (len(LATENCY_BUCKETS_SECONDS) + 1)
        self.sum = 0.0

    def handled_ok(self, seconds: float) -> None:
        self.ok += 1
        self.buckets[bisect_left(LATENCY_BUCKETS_SECONDS, seconds)] += 1
        self.sum += seconds

    def handled(self, code, seconds: float) -> None:
        """A call that ended with code (a grpc.StatusCode) after seconds."""
        if code.name == "OK":
            self.handled_ok(seconds)
            return
        self.codes[code] = self.codes.get(code, 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS_SECONDS, seconds)] += 1
        self.sum += seconds


class _CallCollector:
    """grpc_server_started_total, grpc_server_handled_total and
    grpc_server_handling_seconds from every method's CallStats, read at scrape time (on
    the HTTP thread: ints and a copied dict and list are read whole under the GIL)."""

    _LABELS = ["grpc_type", "grpc_service", "grpc_method"]

    def __init__(self, calls: dict) -> None:
        self._calls = calls

    def describe(self):
        return []

    def collect(self):
        started = CounterMetricFamily("grpc_server_started", "RPCs started on the server.",
                                      labels=self._LABELS)
        handled = CounterMetricFamily("grpc_server_handled",
                                      "RPCs completed on the server, by status code.",
                                      labels=[*self._LABELS, "grpc_code"])
        handling = HistogramMetricFamily("grpc_server_handling_seconds",
                                         "Time from an RPC's start to its completion.",
                                         labels=self._LABELS)
        for st in list(self._calls.values()):
            labels = list(st.labels)
            started.add_metric(labels, st.started, created=st.created)
            codes = list(st.codes.items())
            if st.ok:
                codes.append((None, st.ok))
            for code, n in codes:
                handled.add_metric([*labels, "OK" if code is None else code.name], n,
                                   created=st.created)
            counts, total, cumulative = list(st.buckets), st.sum, 0
            buckets = []
            for bound, n in zip((*LATENCY_BUCKETS_SECONDS, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))
            handling.add_metric(labels, buckets, total)
            handling.samples.append(Sample("grpc_server_handling_seconds_created",
                                           dict(zip(self._LABELS, labels, strict=True)),
                                           st.created))
        yield started
        yield handled
        yield handling


class Metrics:
    """The server's metrics; also the engine's observer (on_commit)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # grpc_server_started / _handled / _handling_seconds: CallStats per method.
        self._calls: dict[tuple[str, str, str], CallStats] = {}
        r.register(_CallCollector(self._calls))
        self.ops = Counter("mms_ops", "Ops the engine evaluated, by type and result.",
                           ["op_type", "result"], registry=r)
        self.batch_size = Histogram("mms_batch_size_ops", "Ops per group commit.",
                                    buckets=BATCH_SIZE_BUCKETS_OPS, registry=r)
        self.commit_duration = Histogram(
            "mms_commit_duration_seconds", "LMDB commit time per group commit, fsync included.",
            buckets=LATENCY_BUCKETS_SECONDS, registry=r)
        self.batch_duration = Histogram(
            "mms_batch_duration_seconds", "Apply, commit and publish time per group commit.",
            buckets=LATENCY_BUCKETS_SECONDS, registry=r)
        self.malformed = Counter(
            "mms_malformed_requests", "Requests (or stream messages) whose body did not decode, "
            "refused with INVALID_ARGUMENT / MALFORMED_REQUEST.", registry=r)
        self.login_throttled = Counter(
            "mms_login_throttled", "Logins answered LOGIN_THROTTLED (too many failures; no "
            "password is hashed while it lasts), by what was throttled: the login name or "
            "the caller's address.",
            ["scope"], registry=r)
        for scope in ("login", "peer"):  # exported at 0 from the start, for rate()
            self.login_throttled.labels(scope)
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds...
        # (prometheus-client's own collector), and which build answers.
        ProcessCollector(registry=r)
        Info("mms_build", "The mms version this server runs.", registry=r).info(
            {"version": build_version()})
        self._engine = None
        self._inflight = None
        self._ready = None
        self._ops: dict = {}
        r.register(_EngineCollector(self))

    def calls(self, grpc_type: str, service: str, method: str) -> CallStats:
        """The method's CallStats (made on its first call)."""
        key = (grpc_type, service, method)
        st = self._calls.get(key)
        if st is None:
            st = self._calls[key] = CallStats(key)
        return st

    def bind(self, engine, inflight_ops=None, ready=None) -> None:
        """Read gauges from this engine (stats()), the server's in-flight counter and
        its readiness (what /readyz answers)."""
        self._engine = engine
        self._inflight = inflight_ops
        self._ready = ready

    # The engine calls this on its writer thread after every commit.
    def on_commit(self, info) -> None:
        self.batch_size.observe(info.n_ops)
        if info.n_records:
            self.commit_duration.observe(info.commit_seconds)
        self.batch_duration.observe(info.batch_seconds)
        op_types, codes = info.op_types, info.codes
        if len(codes) and (op_types == op_types[0]).all() and (codes == codes[0]).all():
            # The common batch (every op a swipe, every one OK): no sort per commit.
            values, counts = [int(op_types[0]) * 256 + int(codes[0])], [len(codes)]
        else:
            keys = op_types.astype(np.uint16) * 256 + codes.astype(np.uint16)
            values, counts = (a.tolist() for a in np.unique(keys, return_counts=True))
        for key, count in zip(values, counts, strict=True):
            child = self._ops.get(key)
            if child is None:
                op_type, code = divmod(key, 256)
                # Names only (core.records' tables): a code outside them is "unknown".
                child = self._ops[key] = self.ops.labels(op_label(op_type),
                                                         RESULT_NAMES.get(code, "unknown"))
            child.inc(count)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector:
    """Gauges read from engine.stats() at scrape time, so they are never stale."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self):
        return []

    def collect(self):
        eng = self._m._engine
        if eng is None:
            return
        try:
            s = eng.stats()
        except Exception:  # a closed engine: nothing to report
            return
        for name, key, doc in (
            ("mms_queue_ops", "queue_ops", "Ops waiting for the writer."),
            ("mms_lmdb_map_used_bytes", "map_used_bytes", "LMDB map bytes in use."),
            ("mms_lmdb_map_size_bytes", "map_size_bytes", "LMDB map size."),
            ("mms_journal_last_seq", "last_seq", "Sequence of the newest journal record."),
            ("mms_cards", "n_cards", "Cards in the card table."),
            ("mms_checkpoint_seq", "checkpoint_seq", "Journal sequence of the last checkpoint."),
            ("mms_zero_id_records", "zero_id_records",
             "Journal records under the all-zero client id (written before such ids were "
             "refused) that recovery applied but left out of the id index."),
        ):
            yield GaugeMetricFamily(name, doc, value=s.get(key, 0))
        for name, key, doc in (
            ("mms_rollups_seq", "rollups_seq", "Journal sequence the report rollups cover."),
            ("mms_rollups_worker_restarts", "rollups_worker_restarts",
             "Rollup worker processes that died and were started again."),
            ("mms_rollups_failing", "rollups_failing",
             "1 while the rollup tailer's last flush failed (the log says why)."),
        ):
            if key in s:        # an engine with rollups
                yield GaugeMetricFamily(name, doc, value=s[key])
        if self._m._inflight is not None:
            yield GaugeMetricFamily("mms_inflight_ops", "Ops accepted by the server, not yet answered.",
                                    value=self._m._inflight())
        if self._m._ready is not None:
            yield GaugeMetricFamily("mms_ready", "1 while the server takes calls (/readyz 200); "
                                    "0 while it starts or drains.", value=int(bool(self._m._ready())))


class HttpEndpoint:
    """/metrics, /livez and /readyz on their own port, served by one daemon thread."""

    def __init__(self, metrics: Metrics, host: str, port: int, ready) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, metrics.text(), CONTENT_TYPE_LATEST)
                elif path == "/livez":
                    self._reply(200, b"ok\n")
                elif path == "/readyz":
                    ok = ready()
                    self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                else:
                    self._reply(404, b"not found\n")

            def _reply(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # noqa: A002
                return

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mms-metrics",
                                        daemon=True)
        del endpoint

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()
