"""The permission matrix: each role holds exactly what it needs, and store-scoped roles
act only within their home store. The expected table is written out here on purpose,
independently of core.domain.rbac.MATRIX, so a change to the matrix has to change both."""

import pytest

from core.domain.chain import Principal
from core.domain.rbac import (
    MATRIX,
    NOT_AUTHENTICATED,
    OPERATOR_DISABLED,
    OTHER_STORE,
    PERMISSION_NOT_GRANTED,
    PERMISSIONS,
    ROLE_NOT_GRANTABLE,
    STORE_REQUIRED,
    PermissionDenied,
    Role,
    authorize,
    check_grant,
    store_filter,
)

EXPECTED = {
    Role.ADMIN: {"chain.write", "operator.write", "terminal.write", "rules.write",
                 "member.read", "member.write", "card.issue", "report.read", "audit.read",
                 "notify.send", "segment.read", "segment.write", "plan.read", "plan.write"},
    Role.STORE_MANAGER: {"member.read", "member.write", "card.issue", "card.status",
                         "card.replace", "recharge", "swipe", "refund", "points.adjust",
                         "coupon.issue", "report.read", "export", "operator.write",
                         "terminal.write", "audit.read", "segment.read", "plan.read"},
    Role.CASHIER: {"member.read", "member.write", "card.issue", "recharge", "swipe"},
    Role.CUSTOMER_SERVICE: {"member.read", "member.write", "card.status", "card.replace",
                            "points.adjust", "coupon.issue"},
    Role.FINANCE: {"member.read", "report.read", "export", "audit.read", "segment.read", "plan.read"},
    Role.MARKETING: {"member.read", "coupon.template", "coupon.issue", "rules.write",
                     "report.read", "segment.read", "segment.write", "plan.read", "plan.write"},
    Role.AUDITOR: {"member.read", "report.read", "audit.read", "segment.read", "plan.read"},
}
SCOPED = {Role.STORE_MANAGER, Role.CASHIER, Role.CUSTOMER_SERVICE}
HOME, OTHER = 10, 11


def principal(role):
    return Principal(operator_id=7, role=role, home_store_id=HOME if role in SCOPED else 0)


def denied(p, perm, store_id=None):
    with pytest.raises(PermissionDenied) as e:
        authorize(p, perm, store_id)
    return e.value


def test_the_matrix_is_the_expected_one():
    assert {r: set(ps) for r, ps in MATRIX.items()} == EXPECTED
    # Every permission is held by someone, and by no role it is not listed for.
    assert set().union(*EXPECTED.values()) == set(PERMISSIONS)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("perm", PERMISSIONS)
def test_each_role_can_do_exactly_its_permissions(role, perm):
    p = principal(role)
    store = HOME if role in SCOPED else None
    if perm in EXPECTED[role]:
        authorize(p, perm, store)
    else:
        e = denied(p, perm, store)
        assert e.reason == PERMISSION_NOT_GRANTED
        assert e.permission == perm
        assert e.to_dict()["reason"] == PERMISSION_NOT_GRANTED


@pytest.mark.parametrize("role", sorted(SCOPED, key=lambda r: r.value))
def test_store_roles_act_only_in_their_store(role):
    p = principal(role)
    for perm in EXPECTED[role]:
        authorize(p, perm, HOME)
        assert denied(p, perm, OTHER).reason == OTHER_STORE
        assert denied(p, perm, None).reason == STORE_REQUIRED
    assert store_filter(p) == HOME


@pytest.mark.parametrize("role", [r for r in Role if r not in SCOPED])
def test_chain_roles_act_in_every_store(role):
    p = principal(role)
    for perm in EXPECTED[role]:
        authorize(p, perm, None)
        authorize(p, perm, HOME)
        authorize(p, perm, OTHER)
    assert store_filter(p) is None


def test_hq_does_what_hq_does_and_moves_no_money():
    """HQ imports the chain's members and issues card stock for every store (issue 8);
    no chain role takes money at a counter, and the store roles keep their own store."""
    admin = principal(Role.ADMIN)
    for perm in ("member.write", "card.issue"):
        for store in (None, HOME, OTHER):
            authorize(admin, perm, store)
    money = {"recharge", "swipe", "refund", "points.adjust"}
    for role in Role:
        if role not in SCOPED:
            assert not (EXPECTED[role] & money), role
    for role in SCOPED:
        for perm in ("member.write", "card.issue"):
            if perm in EXPECTED[role]:
                assert denied(principal(role), perm, OTHER).reason == OTHER_STORE


def test_no_principal_and_disabled_operator_are_denied():
    assert denied(None, "member.read").reason == NOT_AUTHENTICATED
    p = Principal(1, Role.ADMIN, 0, disabled=True)
    assert denied(p, "member.read").reason == OPERATOR_DISABLED


def test_unknown_permission_is_a_programming_error():
    with pytest.raises(ValueError):
        authorize(principal(Role.ADMIN), "member.delete")


def test_grants():
    for role in Role:
        check_grant(principal(Role.ADMIN), role)
    mgr = principal(Role.STORE_MANAGER)
    for role in Role:
        if role in (Role.CASHIER, Role.CUSTOMER_SERVICE):
            check_grant(mgr, role)
        else:
            with pytest.raises(PermissionDenied) as e:
                check_grant(mgr, role)
            assert e.value.reason == ROLE_NOT_GRANTABLE
    for role in (Role.CASHIER, Role.FINANCE, Role.AUDITOR, Role.MARKETING,
                 Role.CUSTOMER_SERVICE):
        with pytest.raises(PermissionDenied):
            check_grant(principal(role), Role.CASHIER)
