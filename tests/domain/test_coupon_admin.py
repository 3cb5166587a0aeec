"""Coupon administration in the engine: templates as rules versions, issue inside
other admin ops (Engine.put_coupons)."""

import os

import numpy as np
import pytest

from core import Engine, RulesConfig
from core.records import OP, OpType, Result
from core.rules import BonusTier, CouponTemplate


@pytest.fixture
def eng(tmp_path):
    e = Engine(str(tmp_path / "d"), rules=RulesConfig(tiers=(BonusTier(10_000, 500),)))
    yield e
    e.close()


def test_template_put_keeps_the_other_rules_and_survives_restart(tmp_path):
    path = str(tmp_path / "d")
    eng = Engine(path, rules=RulesConfig(tiers=(BonusTier(10_000, 500),)))
    v0 = eng.rules.version
    t1 = CouponTemplate(1, "5 off", "fixed", value_fen=500)
    r = eng.put_coupon_template(t1, os.urandom(16)).result()
    assert r.code == Result.OK and r.value == {"template_id": 1, "created": True,
                                               "version": v0 + 1}
    changed = CouponTemplate(1, "6 off", "fixed", value_fen=600)
    assert eng.put_coupon_template(changed, os.urandom(16)).result().value["created"] is False
    eng.put_coupon_template(CouponTemplate(2, "10%", "percent", percent_bp=9_000),
                            os.urandom(16)).result()
    assert eng.rules.tiers == (BonusTier(10_000, 500),)
    assert [t.name for t in sorted(eng.rules.coupon_templates, key=lambda t: t.template_id)] == \
        ["6 off", "10%"]
    eng.close()
    eng = Engine(path)
    assert eng.rules.version == v0 + 3 and eng.rules.coupon_template(1) == changed
    # The template is in force in the swipe.
    eng.issue_cards([7], os.urandom(16)).result()
    eng.recharge(7, 10_000, os.urandom(16)).result()
    cid = eng.issue_coupons(1, [7], os.urandom(16)).result().value["coupon_ids"]
    ops = np.zeros(1, dtype=OP)
    ops["client_lo"], ops["card_no"], ops["amount_fen"] = 9, 7, 1_000
    ops["op_type"], ops["coupons_n"] = OpType.SWIPE, 1
    res = eng.submit(ops, None, np.array(cid, np.uint64)).result()
    assert res.codes[0] == Result.OK and int(res.record(0)["coupon_fen"]) == 600
    eng.close()


def test_bad_template_changes_nothing(eng):
    before = eng.rules
    for bad in (CouponTemplate(0, "x", "fixed", value_fen=1), CouponTemplate(3, "", "fixed", value_fen=1),
                CouponTemplate(3, "x", "cash", value_fen=1), CouponTemplate(3, "x", "fixed"),
                CouponTemplate(3, "x", "gift", value_fen=100)):
        r = eng.put_coupon_template(bad, os.urandom(16)).result()
        assert r.code == Result.INVALID_ARGUMENT and r.reason == "TEMPLATE_INVALID", bad
    assert eng.rules == before
