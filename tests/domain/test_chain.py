"""The chain and its people: hierarchy, terminal tokens, operators, passwords, sessions,
lockout, RBAC through the chain's own ops, idempotent retries and the audit trail."""

import json
import pathlib

import pytest
from common import cid

from core import Engine, EngineConfig
from core.domain.chain import (
    ALREADY_BOOTSTRAPPED,
    LAST_ADMIN,
    LOGIN_FAILED,
    LOGIN_TAKEN,
    NODE_CLOSED,
    NODE_EXISTS,
    NODE_HAS_OPEN_CHILDREN,
    NOT_A_STORE,
    OPERATOR_DISABLED,
    OPERATOR_LOCKED,
    PARENT_KIND_INVALID,
    AuthFailed,
    Chain,
    ChainConfig,
    ChainError,
    ChainOp,
    NodeKind,
    TerminalRef,
    audit_log,
    token_digest,
)
from core.domain.rbac import (
    OTHER_STORE,
    PERMISSION_NOT_GRANTED,
    ROLE_NOT_GRANTABLE,
    PermissionDenied,
    Role,
)

ADMIN_PW = "admin-secret-Pw1"
CHEAP = ChainConfig(scrypt_n=16, scrypt_r=1, scrypt_p=1, session_ttl_s=3600,
                    sessions_per_operator_max=3, login_failures_max=3, lockout_s=600)


class Clock:
    def __init__(self, now=1_700_000_000):
        self.now = now

    def __call__(self):
        return self.now



class World:
    def __init__(self, path, clock, config=CHEAP):
        self.path, self.clock, self.config = path, clock, config
        self.open()

    def open(self):
        self.engine = Engine(str(self.path), config=EngineConfig(sync=False), clock=self.clock)
        self.chain = Chain(self.engine, self.config)

    def reopen(self):
        self.engine.close()
        self.open()

    def close(self):
        self.engine.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def world(tmp_path, clock):
    w = World(tmp_path, clock)
    yield w
    w.close()


@pytest.fixture
def tree(world):
    """HQ(1) -> north(2) -> store A(3) -> till(4); north -> store B(5); admin session."""
    ch = world.chain
    ch.bootstrap(cid(), chain_name="Acme", admin_login="root", admin_password=ADMIN_PW)
    admin = ch.principal(ch.login("root", ADMIN_PW).token)
    region = ch.create_node(admin, cid(), kind=NodeKind.REGION, parent_id=1, name="North")
    a = ch.create_node(admin, cid(), kind=NodeKind.STORE, parent_id=region.node_id, name="A")
    till = ch.create_node(admin, cid(), kind=NodeKind.TERMINAL, parent_id=a.node_id, name="till")
    b = ch.create_node(admin, cid(), kind=NodeKind.STORE, parent_id=region.node_id, name="B")
    assert (region.node_id, a.node_id, till.node_id, b.node_id) == (2, 3, 4, 5)
    world.admin = admin
    return world


def staff(w, role, store=0, login=None, password="pass-word-1"):
    login = login or f"{role}{store}"
    w.chain.create_operator(w.admin, cid(), login=login, password=password, role=role,
                            home_store_id=store)
    return w.chain.principal(w.chain.login(login, password).token)


def reason(exc_info):
    return exc_info.value.reason


# --- bootstrap and hierarchy ------------------------------------------------------------

def test_bootstrap_once(world):
    ch = world.chain
    assert not ch.bootstrapped()
    op = ch.bootstrap(cid(), chain_name="Acme", admin_login="root", admin_password=ADMIN_PW)
    assert op.role == Role.ADMIN and op.home_store_id == 0
    assert ch.node(1).kind == NodeKind.HQ and ch.node(1).name == "Acme"
    with pytest.raises(ChainError) as e:
        ch.bootstrap(cid(), chain_name="X", admin_login="root2", admin_password=ADMIN_PW)
    assert reason(e) == ALREADY_BOOTSTRAPPED


def test_tree_rules_and_rollup(tree):
    ch, admin = tree.chain, tree.admin
    assert ch.stores_under(1) == {3, 5}
    assert ch.stores_under(2) == {3, 5}
    assert ch.stores_under(3) == {3}
    assert ch.stores_under(4) == {3}
    assert [n.node_id for n in ch.children(3)] == [4]
    # A second region with a store chosen by number.
    south = ch.create_node(admin, cid(), kind=NodeKind.REGION, parent_id=1, name="South")
    c = ch.create_node(admin, cid(), kind=NodeKind.STORE, parent_id=south.node_id, name="C",
                       node_id=9001)
    assert c.node_id == 9001 and ch.stores_under(1) == {3, 5, 9001}
    assert ch.stores_under(south.node_id) == {9001}
    assert ch.create_node(admin, cid(), kind=NodeKind.REGION, parent_id=1, name="E").node_id == 9002
    with pytest.raises(ChainError) as e:
        ch.create_node(admin, cid(), kind=NodeKind.STORE, parent_id=2, name="dup", node_id=9001)
    assert reason(e) == NODE_EXISTS
    for kind, parent in ((NodeKind.STORE, 1), (NodeKind.TERMINAL, 2), (NodeKind.REGION, 3)):
        with pytest.raises(ChainError) as e:
            ch.create_node(admin, cid(), kind=kind, parent_id=parent, name="bad")
        assert reason(e) == PARENT_KIND_INVALID
    with pytest.raises(ChainError):
        ch.create_node(admin, cid(), kind=NodeKind.HQ, parent_id=0, name="HQ2")


def test_rename_and_close(tree):
    ch, admin = tree.chain, tree.admin
    assert ch.rename_node(admin, cid(), 3, "A (main)").name == "A (main)"
    with pytest.raises(ChainError) as e:
        ch.close_node(admin, cid(), 3)
    assert reason(e) == NODE_HAS_OPEN_CHILDREN
    token = ch.issue_terminal_token(admin, cid(), 4).token
    assert ch.verify_terminal_token(token) == TerminalRef(3, 4)
    assert ch.close_node(admin, cid(), 4).closed
    assert ch.verify_terminal_token(token) is None, "closing a terminal revokes its token"
    assert ch.close_node(admin, cid(), 3).closed
    for call in (lambda: ch.rename_node(admin, cid(), 3, "again"),
                 lambda: ch.close_node(admin, cid(), 3),
                 lambda: ch.create_node(admin, cid(), kind=NodeKind.TERMINAL, parent_id=3,
                                        name="t2")):
        with pytest.raises(ChainError) as e:
            call()
        assert reason(e) == NODE_CLOSED
    assert ch.stores_under(2) == {3, 5}, "closed stores still count in reports"
    with pytest.raises(ChainError):
        ch.close_node(admin, cid(), 1)


# --- terminal tokens --------------------------------------------------------------------

def test_tokens_never_start_with_a_dash(monkeypatch):
    """A token starting with "-" reads as an option on a command line; the one generator
    (terminal, session and bootstrap tokens, and the terminals file's) draws again."""
    import core.domain.chain
    import server.rpc.auth

    assert server.rpc.auth.new_token is core.domain.chain.new_token, "one generator"
    draws = iter(["-dash-first", "--two-dashes", "_then-fine"])
    monkeypatch.setattr(core.domain.chain.secrets, "token_urlsafe", lambda n: next(draws))
    assert core.domain.chain.new_token() == "_then-fine"
    monkeypatch.undo()
    # About 1 in 64 draws starts with "-": 2,000 tokens hold ~31 of them without the rule.
    tokens = [core.domain.chain.new_token() for _ in range(2_000)]
    assert not [t for t in tokens if t.startswith("-")]
    assert {len(t) for t in tokens} == {43}, "32 bytes, URL-safe base64"


def test_terminal_tokens(tree):
    ch, admin = tree.chain, tree.admin
    first = ch.issue_terminal_token(admin, cid(), 4)
    assert first.token and (first.store_id, first.terminal_id) == (3, 4)
    assert ch.verify_terminal_token(first.token) == TerminalRef(store_id=3, terminal_id=4)
    second = ch.issue_terminal_token(admin, cid(), 4)
    assert ch.verify_terminal_token(first.token) is None, "a new token replaces the old"
    assert ch.verify_terminal_token(second.token) == TerminalRef(3, 4)
    ch.revoke_terminal_token(admin, cid(), 4)
    assert ch.verify_terminal_token(second.token) is None
    for bad in (None, "", "x" * 1000, "unknown-token", 42):
        assert ch.verify_terminal_token(bad) is None
    with pytest.raises(ChainError):
        ch.issue_terminal_token(admin, cid(), 3)  # a store, not a terminal


def test_tokens_survive_reopen_and_are_stored_hashed(tree):
    ch, admin = tree.chain, tree.admin
    live = ch.issue_terminal_token(admin, cid(), 4).token
    till2 = ch.create_node(admin, cid(), kind=NodeKind.TERMINAL, parent_id=5, name="till2")
    dead = ch.issue_terminal_token(admin, cid(), till2.node_id).token
    ch.revoke_terminal_token(admin, cid(), till2.node_id)
    tree.reopen()
    ch = tree.chain
    assert ch.verify_terminal_token(live) == TerminalRef(3, 4)
    assert ch.verify_terminal_token(dead) is None
    raw = raw_bytes(tree.path)
    assert live.encode() not in raw and dead.encode() not in raw
    assert token_digest(live).hex().encode() in raw


# --- operators, passwords, sessions -----------------------------------------------------

def raw_bytes(path):
    return b"".join(p.read_bytes() for p in pathlib.Path(path).iterdir() if p.is_file())


def test_passwords_are_never_stored_in_plaintext(tree):
    ch = tree.chain
    pw = "Plaintext-Canary-8417"
    staff(tree, Role.CASHIER, 3, login="cash1", password=pw)
    ch.reset_password(tree.admin, cid(), ch.operator_by_login("cash1").operator_id,
                      "Second-Canary-5531")
    tree.reopen()
    raw = raw_bytes(tree.path)
    for secret in (pw, "Second-Canary-5531", ADMIN_PW):
        assert secret.encode() not in raw
        assert secret.encode("utf-16-le") not in raw
    stored = tree.chain.operator_by_login("cash1").password
    assert stored["alg"] == "scrypt" and (stored["n"], stored["r"], stored["p"]) == (16, 1, 1)
    assert len(bytes.fromhex(stored["salt"])) == 16
    # Salted: the same password twice gives two different hashes.
    tree.chain.create_operator(tree.admin, cid(), login="cash2", password="Second-Canary-5531",
                               role=Role.CASHIER, home_store_id=3)
    assert tree.chain.operator_by_login("cash2").password["hash"] != stored["hash"]


def test_login_sessions_and_logout(tree, clock):
    ch = tree.chain
    staff(tree, Role.CASHIER, 3, login="ann", password="ann-password")
    s = ch.login("ANN", "ann-password")  # logins are case-insensitive
    p = ch.principal(s.token)
    assert (p.role, p.home_store_id, p.expires_s) == (Role.CASHIER, 3, clock.now + 3600)
    assert ch.logout(s.token) is True
    assert ch.principal(s.token) is None
    assert ch.logout(s.token) is False
    s = ch.login("ann", "ann-password")
    clock.now += 3600
    assert ch.principal(s.token) is None, "sessions expire"
    for bad in (None, "", "y" * 999, "nope"):
        assert ch.principal(bad) is None


def test_sessions_are_bounded_per_operator(tree):
    ch = tree.chain
    tokens = [ch.login("root", ADMIN_PW).token for _ in range(5)]
    live = [t for t in tokens if ch.principal(t) is not None]
    assert live == tokens[-3:], "beyond the bound the oldest sessions end"


def test_wrong_password_and_unknown_login_fail_alike(tree):
    ch = tree.chain
    for login, pw in (("root", "wrong-password"), ("nobody", ADMIN_PW), ("root", None)):
        with pytest.raises(AuthFailed) as e:
            ch.login(login, pw)
        assert reason(e) == LOGIN_FAILED


def test_lockout_after_failed_logins(tree, clock):
    ch = tree.chain
    staff(tree, Role.CASHIER, 3, login="bob", password="bob-password")
    for _ in range(2):
        with pytest.raises(AuthFailed) as e:
            ch.login("bob", "bad-password")
        assert reason(e) == LOGIN_FAILED
    with pytest.raises(AuthFailed) as e:
        ch.login("bob", "bad-password")
    assert reason(e) == OPERATOR_LOCKED and e.value.retry_after_s == 600
    # Locked: even the right password is refused until the lock ends.
    with pytest.raises(AuthFailed) as e:
        ch.login("bob", "bob-password")
    assert reason(e) == OPERATOR_LOCKED
    clock.now += 600
    assert ch.login("bob", "bob-password").token
    # A success resets the count: two more failures do not lock.
    for _ in range(2):
        with pytest.raises(AuthFailed):
            ch.login("bob", "bad-password")
    assert ch.login("bob", "bob-password").token
    # An admin can lift a lock.
    for _ in range(3):
        with pytest.raises(AuthFailed):
            ch.login("bob", "bad-password")
    bob = ch.operator_by_login("bob")
    assert bob.locked_until_s == clock.now + 600
    ch.unlock_operator(tree.admin, cid(), bob.operator_id)
    assert ch.login("bob", "bob-password").token


def test_lockout_survives_reopen(tree, clock):
    staff(tree, Role.CASHIER, 3, login="eve", password="eve-password")
    for _ in range(3):
        with pytest.raises(AuthFailed):
            tree.chain.login("eve", "bad-password")
    tree.reopen()
    with pytest.raises(AuthFailed) as e:
        tree.chain.login("eve", "eve-password")
    assert reason(e) == OPERATOR_LOCKED


def test_disable_ends_sessions_and_blocks_login(tree):
    ch = tree.chain
    p = staff(tree, Role.CASHIER, 3, login="cat", password="cat-password")
    token = ch.login("cat", "cat-password").token
    ch.disable_operator(tree.admin, cid(), p.operator_id)
    assert ch.principal(token) is None
    with pytest.raises(AuthFailed) as e:
        ch.login("cat", "cat-password")
    assert reason(e) == OPERATOR_DISABLED
    with pytest.raises(AuthFailed) as e:
        ch.login("cat", "bad-password")
    assert reason(e) == LOGIN_FAILED, "a disabled operator is only revealed to the right password"
    ch.enable_operator(tree.admin, cid(), p.operator_id)
    assert ch.principal(ch.login("cat", "cat-password").token).operator_id == p.operator_id


def test_last_admin_cannot_be_removed(tree):
    ch, admin = tree.chain, tree.admin
    with pytest.raises(ChainError) as e:
        ch.disable_operator(admin, cid(), admin.operator_id)
    assert reason(e) == LAST_ADMIN
    second = staff(tree, Role.ADMIN, login="root2")
    ch.disable_operator(second, cid(), admin.operator_id)
    assert ch.principal(ch.login("root2", "pass-word-1").token).role == Role.ADMIN
    with pytest.raises(ChainError) as e:
        ch.disable_operator(second, cid(), second.operator_id)
    assert reason(e) == LAST_ADMIN
    with pytest.raises(PermissionDenied) as e:
        ch.set_operator_role(second, cid(), second.operator_id, Role.AUDITOR)
    assert reason(e) == "SELF_CHANGE"
    ch.enable_operator(second, cid(), admin.operator_id)
    ch.set_operator_role(second, cid(), admin.operator_id, Role.AUDITOR)
    with pytest.raises(ChainError) as e:
        ch.set_operator_role(second.__class__(admin.operator_id, Role.ADMIN, 0), cid(),
                             second.operator_id, Role.AUDITOR)
    assert reason(e) == LAST_ADMIN


def test_operator_rules(tree):
    ch, admin = tree.chain, tree.admin
    with pytest.raises(ChainError) as e:
        staff(tree, Role.CASHIER, 0, login="nostore")
    assert reason(e) == NOT_A_STORE
    with pytest.raises(ChainError):
        staff(tree, Role.FINANCE, 3, login="fin-with-store")
    staff(tree, Role.CASHIER, 3, login="dan")
    with pytest.raises(ChainError) as e:
        staff(tree, Role.CASHIER, 3, login="DAN")
    assert reason(e) == LOGIN_TAKEN
    for bad_login in ("", "has space", "x" * 65, "-dash"):
        with pytest.raises(ChainError):
            ch.create_operator(admin, cid(), login=bad_login, password="pass-word-1",
                               role=Role.CASHIER, home_store_id=3)
    with pytest.raises(ChainError):
        staff(tree, Role.CASHIER, 3, login="short", password="1234567")
    dan = ch.operator_by_login("dan")
    moved = ch.set_operator_role(admin, cid(), dan.operator_id, Role.STORE_MANAGER, 5)
    assert (moved.role, moved.home_store_id) == (Role.STORE_MANAGER, 5)
    assert ch.rename_operator(admin, cid(), dan.operator_id, "Dan D.").name == "Dan D."


def test_password_changes(tree):
    ch = tree.chain
    p = staff(tree, Role.CASHIER, 3, login="fay", password="fay-password")
    other = ch.login("fay", "fay-password").token
    with pytest.raises(AuthFailed):
        ch.change_own_password(p, cid(), "not-the-password", "fay-new-password")
    ch.change_own_password(p, cid(), "fay-password", "fay-new-password")
    assert ch.principal(other) is None, "a password change ends the other sessions"
    with pytest.raises(AuthFailed):
        ch.login("fay", "fay-password")
    assert ch.login("fay", "fay-new-password").token


def test_stronger_parameters_rehash_at_next_login(tree):
    tree.engine.close()
    tree.config = ChainConfig(scrypt_n=32, scrypt_r=1, scrypt_p=1)
    tree.open()
    assert tree.chain.operator_by_login("root").password["n"] == 16
    tree.chain.login("root", ADMIN_PW)
    assert tree.chain.operator_by_login("root").password["n"] == 32
    assert tree.chain.login("root", ADMIN_PW).token


def test_sessions_survive_reopen(tree):
    token = tree.chain.login("root", ADMIN_PW).token
    tree.reopen()
    assert tree.chain.principal(token).role == Role.ADMIN
    assert token.encode() not in raw_bytes(tree.path)


# --- RBAC through the chain's own ops ---------------------------------------------------

def test_store_manager_staffs_only_their_store(tree):
    ch = tree.chain
    mgr = staff(tree, Role.STORE_MANAGER, 3, login="mgr")
    ch.create_operator(mgr, cid(), login="c3", password="pass-word-1", role=Role.CASHIER,
                       home_store_id=3)
    with pytest.raises(PermissionDenied) as e:
        ch.create_operator(mgr, cid(), login="c5", password="pass-word-1", role=Role.CASHIER,
                           home_store_id=5)
    assert reason(e) == OTHER_STORE
    with pytest.raises(PermissionDenied) as e:
        ch.create_operator(mgr, cid(), login="m3", password="pass-word-1",
                           role=Role.STORE_MANAGER, home_store_id=3)
    assert reason(e) == ROLE_NOT_GRANTABLE
    with pytest.raises(PermissionDenied):
        ch.create_operator(mgr, cid(), login="a", password="pass-word-1", role=Role.AUDITOR)
    # Terminals of their own store only.
    assert ch.issue_terminal_token(mgr, cid(), 4).token
    t5 = ch.create_node(tree.admin, cid(), kind=NodeKind.TERMINAL, parent_id=5, name="t5")
    with pytest.raises(PermissionDenied) as e:
        ch.issue_terminal_token(mgr, cid(), t5.node_id)
    assert reason(e) == OTHER_STORE
    with pytest.raises(PermissionDenied):
        ch.create_node(mgr, cid(), kind=NodeKind.STORE, parent_id=2, name="mine")
    # Nor can they act on another store's staff or on an admin.
    c5 = staff(tree, Role.CASHIER, 5, login="cash5")
    with pytest.raises(PermissionDenied):
        ch.disable_operator(mgr, cid(), c5.operator_id)
    with pytest.raises(PermissionDenied):
        ch.disable_operator(mgr, cid(), tree.admin.operator_id)
    with pytest.raises(PermissionDenied):
        ch.set_operator_role(mgr, cid(), mgr.operator_id, Role.CASHIER, 3)


@pytest.mark.parametrize("role", [Role.CASHIER, Role.CUSTOMER_SERVICE, Role.FINANCE,
                                  Role.MARKETING, Role.AUDITOR])
def test_other_roles_cannot_change_the_chain(tree, role):
    ch = tree.chain
    p = staff(tree, role, 3 if role in (Role.CASHIER, Role.CUSTOMER_SERVICE) else 0)
    calls = [
        lambda: ch.create_node(p, cid(), kind=NodeKind.REGION, parent_id=1, name="R"),
        lambda: ch.rename_node(p, cid(), 3, "R"),
        lambda: ch.close_node(p, cid(), 4),
        lambda: ch.issue_terminal_token(p, cid(), 4),
        lambda: ch.revoke_terminal_token(p, cid(), 4),
        lambda: ch.create_operator(p, cid(), login="x", password="pass-word-1",
                                   role=Role.CASHIER, home_store_id=3),
        lambda: ch.disable_operator(p, cid(), tree.admin.operator_id),
        lambda: ch.reset_password(p, cid(), tree.admin.operator_id, "pass-word-2"),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied) as e:
            call()
        assert reason(e) == PERMISSION_NOT_GRANTED
    # Their own password they may change.
    ch.change_own_password(p, cid(), "pass-word-1", "pass-word-2")


def test_no_session_no_change(tree):
    with pytest.raises(PermissionDenied):
        tree.chain.create_node(None, cid(), kind=NodeKind.REGION, parent_id=1, name="R")


# --- idempotency and audit --------------------------------------------------------------

def test_retries_apply_once(tree):
    ch, admin, eng = tree.chain, tree.admin, tree.engine
    key = cid()
    first = ch.create_node(admin, key, kind=NodeKind.STORE, parent_id=2, name="C")
    last = eng.stats()["last_seq"]
    again = ch.create_node(admin, key, kind=NodeKind.STORE, parent_id=2, name="C")
    assert again == first and eng.stats()["last_seq"] == last
    assert len([n for n in ch.nodes(NodeKind.STORE) if n.name == "C"]) == 1
    key = cid()
    issued = ch.issue_terminal_token(admin, key, 4)
    replay = ch.issue_terminal_token(admin, key, 4)
    assert replay.token is None, "the token is shown once, never on a replay"
    assert ch.verify_terminal_token(issued.token) == TerminalRef(3, 4)
    key = cid()
    op = ch.create_operator(admin, key, login="gus", password="gus-password", role=Role.AUDITOR)
    assert ch.create_operator(admin, key, login="gus", password="gus-password",
                              role=Role.AUDITOR) == op
    assert eng.stats()["last_seq"] == last + 2
    # A retry after a restart is still a replay.
    tree.reopen()
    admin = tree.chain.principal(tree.chain.login("root", ADMIN_PW).token)
    assert tree.chain.create_operator(admin, key, login="gus", password="gus-password",
                                      role=Role.AUDITOR).operator_id == op.operator_id


def test_rejected_op_leaves_no_trace_and_stays_retryable(tree):
    ch, admin, eng = tree.chain, tree.admin, tree.engine
    last = eng.stats()["last_seq"]
    key = cid()
    with pytest.raises(ChainError):
        ch.create_node(admin, key, kind=NodeKind.STORE, parent_id=3, name="bad")
    assert eng.stats()["last_seq"] == last
    assert ch.create_node(admin, key, kind=NodeKind.STORE, parent_id=2, name="ok").name == "ok"


def test_audit_records_who_what_when_before_after(tree, clock):
    ch, admin, eng = tree.chain, tree.admin, tree.engine
    clock.now += 5
    ch.rename_node(admin, cid(), 3, "Store A")
    p = staff(tree, Role.CASHIER, 3, login="hal")
    events = audit_log(eng, limit=1000)
    rename = [e for e in events if e["op"] == "NODE_RENAME"][-1]
    assert rename["operator_id"] == admin.operator_id
    assert rename["store_id"] == 3 and rename["time_s"] == clock.now
    assert rename["detail"]["before"]["name"] == "A"
    assert rename["detail"]["after"]["name"] == "Store A"
    create = [e for e in events if e["op"] == "OPERATOR_CREATE"][-1]
    assert create["detail"]["before"] is None
    assert create["detail"]["after"]["login"] == "hal"
    assert "password" not in json.dumps(create["detail"]["after"])
    logins = [e for e in events if e["op"] == "LOGIN" and e["operator_id"] == p.operator_id]
    assert len(logins) == 1
    # A failed login is audited against the operator it tried.
    with pytest.raises(AuthFailed):
        ch.login("hal", "bad-password")
    fails = audit_log(eng, operator_id=p.operator_id, limit=10)
    assert fails[-1]["op"] == "LOGIN_FAILED"
    assert fails[-1]["detail"]["after"]["failed_logins"] == 1
    # Filters and paging.
    assert all(e["store_id"] == 3 for e in audit_log(eng, store_id=3))
    page1 = audit_log(eng, limit=3)
    page2 = audit_log(eng, since_seq=page1[-1]["seq"], limit=3)
    assert [e["seq"] for e in page1 + page2] == [e["seq"] for e in events[:6]]
    assert all(a["seq"] < b["seq"] for a, b in zip(events, events[1:], strict=False))
    # Nothing secret in the audit trail: no password hash, no token hash.
    token = ch.issue_terminal_token(admin, cid(), 4).token
    dump = json.dumps(audit_log(eng, limit=1000))
    assert token_digest(token).hex() not in dump
    assert ch.operator_by_login("hal").password["hash"] not in dump
    assert {e["op"] for e in audit_log(eng, limit=1000)} >= {
        "BOOTSTRAP", "NODE_CREATE", "NODE_RENAME", "OPERATOR_CREATE", "LOGIN", "LOGIN_FAILED",
        "TERMINAL_TOKEN_ISSUE"}


def test_op_types_are_in_the_chain_range():
    assert all(120 <= int(op) <= 149 for op in ChainOp)
    assert len(set(ChainOp)) == len(ChainOp)


def test_region_manager_is_bound_to_a_region(tree):
    """A region manager's home is a region (not a store): it survives a reopen, the
    principal carries the region's stores as they are now, and only an admin staffs one."""
    from core.domain.chain import NOT_A_REGION
    from core.domain.rbac import OTHER_REGION, report_scope

    ch, admin = tree.chain, tree.admin
    for bad in (0, 3, 999):           # none, a store, nothing
        with pytest.raises(ChainError) as e:
            ch.create_operator(admin, cid(), login=f"bad{bad}", password="pass-word-1",
                               role=Role.REGION_MANAGER, home_region_id=bad)
        assert reason(e) == NOT_A_REGION
    with pytest.raises(ChainError):
        ch.create_operator(admin, cid(), login="both", password="pass-word-1",
                           role=Role.REGION_MANAGER, home_region_id=2, home_store_id=3)
    with pytest.raises(ChainError):    # a store role has no region
        ch.create_operator(admin, cid(), login="cashreg", password="pass-word-1",
                           role=Role.CASHIER, home_store_id=3, home_region_id=2)
    mgr = staff(tree, Role.STORE_MANAGER, 3, login="mgr3")
    with pytest.raises(PermissionDenied) as e:
        ch.create_operator(mgr, cid(), login="rm-by-mgr", password="pass-word-1",
                           role=Role.REGION_MANAGER, home_region_id=2)
    assert reason(e) == "STORE_REQUIRED"   # a store manager staffs their store only
    op = ch.create_operator(admin, cid(), login="rm", password="pass-word-1",
                            role=Role.REGION_MANAGER, home_region_id=2)
    assert (op.role, op.home_store_id, op.home_region_id) == (Role.REGION_MANAGER, 0, 2)
    token = ch.login("rm", "pass-word-1").token
    p = ch.principal(token)
    assert (p.home_region_id, p.region_stores) == (2, frozenset({3, 5}))
    south = ch.create_node(admin, cid(), kind=NodeKind.REGION, parent_id=1, name="South")
    far = ch.create_node(admin, cid(), kind=NodeKind.STORE, parent_id=south.node_id, name="F")
    near = ch.create_node(admin, cid(), kind=NodeKind.STORE, parent_id=2, name="N")
    p = ch.principal(token)
    assert p.region_stores == frozenset({3, 5, near.node_id})
    assert report_scope(p, 0, 0, ch.stores_under) == (0, frozenset({3, 5, near.node_id}))
    with pytest.raises(PermissionDenied) as e:
        report_scope(p, far.node_id, 0, ch.stores_under)
    assert reason(e) == OTHER_REGION
    tree.reopen()
    ch = tree.chain
    again = ch.operator_by_login("rm")
    assert (again.role, again.home_region_id) == (Role.REGION_MANAGER, 2)
    assert ch.principal(token).region_stores == frozenset({3, 5, near.node_id})
    row = [e for e in audit_log(tree.engine, limit=1000) if e["op"] == "OPERATOR_CREATE"][-1]
    assert row["detail"]["after"]["home_region_id"] == 2
    assert row["detail"]["after"]["login"] == "rm"
