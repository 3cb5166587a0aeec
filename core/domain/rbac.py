"""Roles and permissions: who may do what, and in which stores.

Least privilege: each role holds exactly the permissions its daily work needs, and the
store-scoped roles (store manager, cashier, customer service) act only on their own
store's data. The chain-wide roles (admin, finance, marketing, auditor) work at HQ and
see every store. docs/chain.md gives the reason for every cell of the matrix.

`authorize` is pure: it looks only at the principal it is given (role, home store,
disabled flag) and the permission matrix, so it costs a dict lookup and a set test and
can run on every call. Resolving a session token into a principal is the chain
module's job (core.domain.chain.Chain.principal).
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol


class Role(str, Enum):
    ADMIN = "admin"
    STORE_MANAGER = "store_manager"
    CASHIER = "cashier"
    CUSTOMER_SERVICE = "customer_service"
    FINANCE = "finance"
    MARKETING = "marketing"
    AUDITOR = "auditor"
    REGION_MANAGER = "region_manager"


# Every permission an admin RPC may ask for. A name not in this list is a programming
# error (authorize raises ValueError), never a silent deny.
PERMISSIONS: tuple[str, ...] = (
    "member.read",
    "member.write",
    "card.issue",
    "card.status",
    "card.replace",
    "recharge",
    "swipe",
    "refund",
    "points.adjust",
    "coupon.template",
    "coupon.issue",
    "rules.write",
    "report.read",
    "export",
    "chain.write",
    "operator.write",
    "terminal.write",
    "audit.read",
    "notify.send",
    "segment.read",
    "plan.read",
    "segment.write",
    "plan.write",
)

_P = frozenset

MATRIX: dict[Role, frozenset[str]] = {
    # Runs the system: the chain's structure, staff, terminals and configuration, and
    # HQ's share of the membership: importing the chain's members (a migration, a new
    # store's list) and issuing card stock for any store. Handles no money (recharges,
    # swipes, refunds, point corrections) and no coupons: those belong to the people who
    # answer for them, and an admin account is the one most worth stealing.
    # It also runs the integrations, such as the sender that drains member notices.
    Role.ADMIN: _P({"chain.write", "operator.write", "terminal.write", "rules.write",
                    "member.read", "member.write", "card.issue", "report.read",
                    "audit.read", "notify.send", "segment.read", "segment.write", "plan.read",
                    "plan.write"}),
    # Answers for one store: every counter operation including refunds and point
    # corrections, its staff (cashiers, customer service) and terminals, its reports
    # and exports, and the audit trail of what its staff did.
    Role.STORE_MANAGER: _P({"member.read", "member.write", "card.issue", "card.status",
                            "card.replace", "recharge", "swipe", "refund", "points.adjust",
                            "coupon.issue", "report.read", "export", "operator.write",
                            "terminal.write", "audit.read", "segment.read", "plan.read"}),
    # The counter: registers members, issues cards, takes recharges and swipes. Refunds
    # and point corrections need the manager.
    Role.CASHIER: _P({"member.read", "member.write", "card.issue", "recharge", "swipe"}),
    # The service desk: member data, loss reports, freezes, replacements, make-up points
    # and goodwill coupons. Moves no money.
    Role.CUSTOMER_SERVICE: _P({"member.read", "member.write", "card.status", "card.replace",
                               "points.adjust", "coupon.issue"}),
    # Reconciles money chain-wide: reports, exports and the audit trail; changes nothing.
    Role.FINANCE: _P({"member.read", "report.read", "export", "audit.read", "segment.read", "plan.read"}),
    # Promotions: coupon templates and issues, points and level rules, and the reports
    # that judge them; targeted plans and campaigns (plan.write: create, pause, run).
    # No exports: those carry member data out of the system.
    Role.MARKETING: _P({"member.read", "coupon.template", "coupon.issue", "rules.write",
                        "report.read", "segment.read", "segment.write", "plan.read", "plan.write"}),
    # Reads everything needed to check the books and the staff; changes nothing.
    Role.AUDITOR: _P({"member.read", "report.read", "audit.read", "segment.read", "plan.read"}),
    # Oversees the stores of one region: reads their reports (rolled up over exactly
    # the region's stores, report_scope below) and nothing else. No member data, no
    # exports of member lists, no money, no staff.
    Role.REGION_MANAGER: _P({"report.read"}),
}

# Roles bound to one store (their home store). The others are chain-wide.
STORE_SCOPED_ROLES = frozenset({Role.STORE_MANAGER, Role.CASHIER, Role.CUSTOMER_SERVICE})
# Roles bound to one region (their home region): they act on the data of the region's
# stores, which the principal carries (region_stores, resolved from the chain tree on
# every call). Neither store-scoped nor chain-wide.
REGION_SCOPED_ROLES = frozenset({Role.REGION_MANAGER})

# Which roles an operator of a role may give (create an operator with, or move one to).
# An admin staffs the chain; a store manager staffs the counter and the service desk of
# their own store, never another manager (that would let a manager multiply managers).
GRANTABLE: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset(Role),
    Role.STORE_MANAGER: frozenset({Role.CASHIER, Role.CUSTOMER_SERVICE}),
}

# Machine-readable reasons of PermissionDenied (the gRPC layer sends them as the
# error's reason; clients switch on them).
NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
OPERATOR_DISABLED = "OPERATOR_DISABLED"
PERMISSION_NOT_GRANTED = "PERMISSION_NOT_GRANTED"
STORE_REQUIRED = "STORE_REQUIRED"
OTHER_STORE = "OTHER_STORE"
ROLE_NOT_GRANTABLE = "ROLE_NOT_GRANTABLE"
REGION_REQUIRED = "REGION_REQUIRED"
OTHER_REGION = "OTHER_REGION"


class PermissionDenied(Exception):
    """The principal may not do this. `reason` is one of the constants above."""

    def __init__(self, reason: str, permission: str, message: str, *, operator_id: int = 0,
                 store_id: int | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.permission = permission
        self.operator_id = operator_id
        self.store_id = store_id

    def to_dict(self) -> dict:
        return {"reason": self.reason, "permission": self.permission,
                "operator_id": self.operator_id, "store_id": self.store_id}


class PrincipalLike(Protocol):
    operator_id: int
    role: Role
    home_store_id: int


def role_of(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValueError(f"unknown role {value!r}; roles are {[r.value for r in Role]}") from None


def permissions_of(role: Role | str) -> frozenset[str]:
    return MATRIX[role_of(role)]


def is_store_scoped(role: Role | str) -> bool:
    return role_of(role) in STORE_SCOPED_ROLES


def is_region_scoped(role: Role | str) -> bool:
    return role_of(role) in REGION_SCOPED_ROLES


def is_chain_wide(role: Role | str) -> bool:
    r = role_of(role)
    return r not in STORE_SCOPED_ROLES and r not in REGION_SCOPED_ROLES


def _holder(principal: PrincipalLike | None, permission: str,
            store_id: int | None = None) -> Role:
    """The principal's role once it is authenticated, enabled and holds permission."""
    if permission not in _KNOWN:
        raise ValueError(f"unknown permission {permission!r}")
    if principal is None:
        raise PermissionDenied(NOT_AUTHENTICATED, permission, "no valid session")
    op_id = int(principal.operator_id)
    if getattr(principal, "disabled", False):
        raise PermissionDenied(OPERATOR_DISABLED, permission,
                               f"operator {op_id} is disabled", operator_id=op_id)
    role = role_of(principal.role)
    if permission not in MATRIX[role]:
        raise PermissionDenied(PERMISSION_NOT_GRANTED, permission,
                               f"role {role.value} does not hold {permission}",
                               operator_id=op_id, store_id=store_id)
    return role


def authorize(principal: PrincipalLike | None, permission: str,
              store_id: int | None = None) -> None:
    """Raise PermissionDenied unless principal may use permission on store_id's data.

    store_id is the store that owns the data (or where the act happens); None means
    data of the whole chain (a chain-wide list, a chain-level setting). Store-scoped
    operators pass only for their own store and never for None: a cashier's search must
    name the store, so it can only ever see that store's members.
    """
    role = _holder(principal, permission, store_id)
    op_id = int(principal.operator_id)
    if role in STORE_SCOPED_ROLES:
        home = int(principal.home_store_id)
        if store_id is None:
            raise PermissionDenied(STORE_REQUIRED, permission,
                                   f"role {role.value} acts only within store {home}; "
                                   "the request must name it", operator_id=op_id)
        if int(store_id) != home:
            raise PermissionDenied(OTHER_STORE, permission,
                                   f"operator {op_id} belongs to store {home}, not {store_id}",
                                   operator_id=op_id, store_id=int(store_id))
    elif role in REGION_SCOPED_ROLES:
        region = int(getattr(principal, "home_region_id", 0))
        if store_id is None:
            raise PermissionDenied(REGION_REQUIRED, permission,
                                   f"role {role.value} acts only within region {region}; "
                                   "the request must name a store of it", operator_id=op_id)
        if int(store_id) not in getattr(principal, "region_stores", ()):
            # The same answer for a store of another region and for no store at all:
            # a region manager cannot probe which store ids exist.
            raise PermissionDenied(OTHER_REGION, permission,
                                   f"store {store_id} is not a store of region {region}",
                                   operator_id=op_id, store_id=int(store_id))


def store_filter(principal: PrincipalLike) -> int | None:
    """The store a list or search must be limited to for this principal (None: any)."""
    role = role_of(principal.role)
    return int(principal.home_store_id) if role in STORE_SCOPED_ROLES else None


def report_scope(principal: PrincipalLike | None, store_id: int = 0, region_id: int = 0,
                 stores_under=None) -> tuple[int, frozenset[int] | None]:
    """The one place a report's scope is decided: (the store the report names, 0 when it
    covers several; the stores whose figures it may read, None for the whole chain),
    authorized for report.read, or PermissionDenied.

    store_id / region_id are the request's (0: not named). A store-scoped role reads
    its home store only (another store, or any region, is OTHER_STORE); a region-scoped
    role reads exactly the stores of its home region, one of them or all (another
    region, or a store outside it, existing or not, is OTHER_REGION); a chain-wide role
    reads any store, one region's stores (stores_under(region_id), which raises for a
    node that is not there: HQ may tell), or the whole chain.
    """
    store_id, region_id = int(store_id or 0), int(region_id or 0)
    role = _holder(principal, "report.read")
    op_id = int(principal.operator_id)
    if role in STORE_SCOPED_ROLES:
        home = int(principal.home_store_id)
        authorize(principal, "report.read", store_id or home)
        if region_id:
            raise PermissionDenied(OTHER_STORE, "report.read",
                                   f"operator {op_id} reads store {home} only, not a region",
                                   operator_id=op_id, store_id=home)
        return home, frozenset({home})
    if role in REGION_SCOPED_ROLES:
        region = int(getattr(principal, "home_region_id", 0))
        stores = frozenset(getattr(principal, "region_stores", ()))
        if region_id and region_id != region:
            raise PermissionDenied(OTHER_REGION, "report.read",
                                   f"operator {op_id} reads region {region} only, "
                                   f"not {region_id}", operator_id=op_id)
        if store_id:
            authorize(principal, "report.read", store_id)
            return store_id, frozenset({store_id})
        return 0, stores
    authorize(principal, "report.read", store_id or None)
    if store_id:
        return store_id, frozenset({store_id})
    if region_id:
        return 0, frozenset(stores_under(region_id))
    return 0, None


def check_grant(principal: PrincipalLike, role: Role | str) -> None:
    """Raise PermissionDenied unless principal may give role to an operator."""
    actor = role_of(principal.role)
    target = role_of(role)
    if target not in GRANTABLE.get(actor, frozenset()):
        raise PermissionDenied(ROLE_NOT_GRANTABLE, "operator.write",
                               f"role {actor.value} may not grant role {target.value}",
                               operator_id=int(principal.operator_id))


_KNOWN = frozenset(PERMISSIONS)
assert all(p <= _KNOWN for p in MATRIX.values()), "the matrix names only known permissions"
assert set(MATRIX) == set(Role), "every role has a row"
