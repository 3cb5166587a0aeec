"""The per-call grpc_server_* figures (server/rpc/metrics.py CallStats) export exactly
what prometheus_client's own Counter and Histogram export for the same calls."""

from __future__ import annotations

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from server.rpc.metrics import LATENCY_BUCKETS_SECONDS, Metrics

LABELS = ("unary", "mms.v1.PosService", "Swipe")
# Every bound itself (a value on a bound falls in that bound's bucket), values between
# bounds, zero, and past the last bound (+Inf only).
CALLS = ([(grpc.StatusCode.OK, b) for b in LATENCY_BUCKETS_SECONDS]
         + [(grpc.StatusCode.OK, 0.0), (grpc.StatusCode.OK, 0.0007), (grpc.StatusCode.OK, 42.0),
            (grpc.StatusCode.UNAUTHENTICATED, 0.0), (grpc.StatusCode.NOT_FOUND, 0.003),
            (grpc.StatusCode.NOT_FOUND, 0.3)])


def samples(registry: CollectorRegistry) -> dict:
    out = {}
    for fam in registry.collect():
        if not fam.name.startswith("grpc_server_"):
            continue
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_call_stats_export_what_prometheus_counters_and_histograms_would():
    m = Metrics()
    st = m.calls(*LABELS)
    ref = CollectorRegistry()
    started = Counter("grpc_server_started", "x", ["grpc_type", "grpc_service", "grpc_method"],
                      registry=ref)
    handled = Counter("grpc_server_handled", "x",
                      ["grpc_type", "grpc_service", "grpc_method", "grpc_code"], registry=ref)
    handling = Histogram("grpc_server_handling_seconds", "x",
                         ["grpc_type", "grpc_service", "grpc_method"],
                         buckets=LATENCY_BUCKETS_SECONDS, registry=ref)
    for code, seconds in CALLS:
        st.started += 1
        started.labels(*LABELS).inc()
        if code == grpc.StatusCode.OK:
            st.handled_ok(seconds)
        else:
            st.handled(code, seconds)
        handled.labels(*LABELS, code.name).inc()
        handling.labels(*LABELS).observe(seconds)
    st.started += 1  # one still in progress
    started.labels(*LABELS).inc()
    got, want = samples(m.registry), samples(ref)
    assert got == want
    assert got[("grpc_server_handling_seconds_bucket",
                tuple(sorted({"grpc_type": "unary", "grpc_service": "mms.v1.PosService",
                              "grpc_method": "Swipe", "le": "+Inf"}.items())))] == len(CALLS)
    text = m.text().decode()
    assert 'grpc_server_started_created{grpc_method="Swipe"' in text
    assert "# TYPE grpc_server_handling_seconds histogram" in text


def test_handled_with_ok_as_a_code_counts_as_ok():
    m = Metrics()
    st = m.calls(*LABELS)
    st.handled(grpc.StatusCode.OK, 0.002)
    st.handled_ok(0.002)
    assert st.ok == 2 and st.codes == {}
    assert m.calls(*LABELS) is st
