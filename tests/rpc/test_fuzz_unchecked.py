"""Well-formed requests with hostile values, through the real server on loopback, to every
method of AdminService, ReportService and CampaignService with a chain admin's
credentials and valid client ids, so that each call gets past its id check into the code
that reads the rest (the hostile fuzz in test_hostile_input.py breaks the ids, so it
stops there). Every answer is OK or a status with an ErrorInfo reason, never UNKNOWN or
INTERNAL; and no request reaches the last resort of server/rpc/admin/base.py
(`_failure`'s "unchecked input" warning: a ValueError, TypeError, KeyError,
OverflowError or RecursionError from code that did not check its input). Each such gap
found is closed with an explicit check where the input enters, with its own reason.

This server is the fuzz's own: its state changes (the calls are valid enough to apply)."""

from __future__ import annotations

import logging

import grpc
import pytest
from fuzz_requests import ADMIN_SERVICE, FORBIDDEN, methods, requests_of
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from test_admin_rpc import Env
from test_hostile_input import UncheckedInput, setup_chain

# Calls a chain admin's fuzzed request must not make: they end the admin's session or
# lock it out (the hostile fuzz sends them with broken ids or no credentials).
SPARED = frozenset({"Bootstrap", "Login", "Logout", "DisableOperator", "ResetPassword"})
FUZZED = [m for m in methods() if m.service != "mms.v1.PosService" and m.name not in SPARED]
EXAMPLES = 40
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(str(tmp_path_factory.mktemp("fuzz")))
    setup_chain(e)
    h = UncheckedInput()
    logging.getLogger("mms.admin").addHandler(h)
    e.unchecked = h
    yield e
    logging.getLogger("mms.admin").removeHandler(h)
    e.close()


def _send(e: Env, m, msg) -> tuple[grpc.StatusCode, bool]:
    """The call's status and whether a refusal carried an ErrorInfo."""
    md = e.md("root")
    body = msg.SerializeToString()
    try:
        if m.client_streaming:
            e.channel.stream_unary(m.path)(iter([body]), metadata=md, timeout=TIMEOUT_S)
        elif m.server_streaming:
            for _ in e.channel.unary_stream(m.path)(body, metadata=md, timeout=TIMEOUT_S):
                pass
        else:
            e.channel.unary_unary(m.path)(body, metadata=md, timeout=TIMEOUT_S)
    except grpc.RpcError as err:
        got = rpc_status.from_call(err)
        return err.code(), got is not None and len(got.details) > 0
    return grpc.StatusCode.OK, True


def _fuzz(e: Env, m, msg) -> None:
    before = len(e.unchecked.seen)
    code, info = _send(e, m, msg)
    assert code not in FORBIDDEN, (m.name, code, msg)
    assert info, f"{m.name}: {code.name} without an ErrorInfo: {msg}"
    assert len(e.unchecked.seen) == before, (m.name, msg, e.unchecked.seen[before:])


@pytest.mark.parametrize("m", FUZZED, ids=lambda m: f"{m.service.split('.')[-1]}.{m.name}")
def test_no_request_reaches_unchecked_code(env, m):
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(msg=requests_of(m.request))
    def one(msg):
        _fuzz(env, m, msg)

    one()


def test_the_fuzz_covers_every_admin_method_but_the_spared():
    names = {m.name for m in FUZZED if m.service == ADMIN_SERVICE}
    every = {m.name for m in methods() if m.service == ADMIN_SERVICE}
    assert names == every - SPARED and len(names) > 40


def test_the_check_itself_sees_the_warning(env):
    """The handler hears the warning _failure logs (so a silent run means none was)."""
    from server.rpc.admin.base import _failure

    before = len(env.unchecked.seen)
    assert _failure(TypeError("x")).code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(env.unchecked.seen) == before + 1
    env.unchecked.seen.pop()
