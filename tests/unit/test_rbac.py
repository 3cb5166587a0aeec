"""The permission matrix: each role holds exactly what it needs, and store-scoped roles
act only within their home store. The expected table is written out here on purpose,
independently of core.domain.rbac.MATRIX, so a change to the matrix has to change both."""

import pytest

from core.domain.chain import Principal
from core.domain.rbac import (
    MATRIX,
    NOT_AUTHENTICATED,
    OPERATOR_DISABLED,
    OTHER_REGION,
    OTHER_STORE,
    PERMISSION_NOT_GRANTED,
    PERMISSIONS,
    REGION_REQUIRED,
    ROLE_NOT_GRANTABLE,
    STORE_REQUIRED,
    PermissionDenied,
    Role,
    authorize,
    check_grant,
    is_chain_wide,
    report_scope,
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
    Role.REGION_MANAGER: {"report.read"},
}
SCOPED = {Role.STORE_MANAGER, Role.CASHIER, Role.CUSTOMER_SERVICE}
REGIONAL = {Role.REGION_MANAGER}
HOME, OTHER = 10, 11
# The region manager's region 5 holds stores HOME and NEIGHBOUR; OTHER is in region 6.
REGION, OTHER_REGION_ID, NEIGHBOUR = 5, 6, 12


def principal(role):
    if role in REGIONAL:
        return Principal(operator_id=7, role=role, home_store_id=0, home_region_id=REGION,
                         region_stores=frozenset({HOME, NEIGHBOUR}))
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
    store = HOME if role in SCOPED | REGIONAL else None
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


@pytest.mark.parametrize("role", [r for r in Role if r not in SCOPED | REGIONAL])
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
        if role not in SCOPED:  # chain-wide and regional roles
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


def test_region_role_acts_only_in_the_stores_of_its_region():
    p = principal(Role.REGION_MANAGER)
    authorize(p, "report.read", HOME)
    authorize(p, "report.read", NEIGHBOUR)
    # Another region's store and a store that does not exist get the same answer.
    said = set()
    for store in (OTHER, 999_999):
        e = denied(p, "report.read", store)
        assert (e.reason, e.store_id) == (OTHER_REGION, store)
        said.add(str(e).replace(str(store), "N"))
    assert len(said) == 1
    assert denied(p, "report.read", None).reason == REGION_REQUIRED
    for perm in set(PERMISSIONS) - {"report.read"}:
        assert denied(p, perm, HOME).reason == PERMISSION_NOT_GRANTED
    assert not is_chain_wide(Role.REGION_MANAGER)
    assert is_chain_wide(Role.FINANCE) and not is_chain_wide(Role.STORE_MANAGER)


def stores_under(region):
    return {REGION: frozenset({HOME, NEIGHBOUR}), OTHER_REGION_ID: frozenset({OTHER})}[region]


def scope_denied(p, store_id=0, region_id=0):
    with pytest.raises(PermissionDenied) as e:
        report_scope(p, store_id, region_id, stores_under)
    return e.value.reason


def test_report_scope_is_decided_per_role():
    region = principal(Role.REGION_MANAGER)
    assert report_scope(region, 0, 0, stores_under) == (0, frozenset({HOME, NEIGHBOUR}))
    assert report_scope(region, 0, REGION, stores_under) == (0, frozenset({HOME, NEIGHBOUR}))
    assert report_scope(region, NEIGHBOUR, 0, stores_under) == (NEIGHBOUR, {NEIGHBOUR})
    assert scope_denied(region, OTHER) == OTHER_REGION
    assert scope_denied(region, 424_242) == OTHER_REGION      # no such store: the same
    assert scope_denied(region, 0, OTHER_REGION_ID) == OTHER_REGION
    assert scope_denied(region, 0, 4_242) == OTHER_REGION     # no such region: the same
    mgr = principal(Role.STORE_MANAGER)
    assert report_scope(mgr, 0, 0, stores_under) == (HOME, {HOME})
    assert report_scope(mgr, HOME, 0, stores_under) == (HOME, {HOME})
    assert scope_denied(mgr, OTHER) == OTHER_STORE
    assert scope_denied(mgr, 0, REGION) == OTHER_STORE        # their own region too
    fin = principal(Role.FINANCE)
    assert report_scope(fin, 0, 0, stores_under) == (0, None)
    assert report_scope(fin, OTHER, 0, stores_under) == (OTHER, {OTHER})
    assert report_scope(fin, 0, OTHER_REGION_ID, stores_under) == (0, {OTHER})
    assert scope_denied(principal(Role.CASHIER)) == PERMISSION_NOT_GRANTED
    assert scope_denied(None) == NOT_AUTHENTICATED
    gone = Principal(7, Role.REGION_MANAGER, 0, disabled=True, home_region_id=REGION,
                     region_stores=frozenset({HOME}))
    assert scope_denied(gone) == OPERATOR_DISABLED
    # A region with no store yet reads nothing, never the chain.
    empty = Principal(7, Role.REGION_MANAGER, 0, home_region_id=REGION)
    assert report_scope(empty, 0, 0, stores_under) == (0, frozenset())
