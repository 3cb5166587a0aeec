"""Members: MemberStore, every change through `Engine.admin` (journalled, audited, idempotent),
search over the index joined with the card table, import and export."""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as _dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from core.domain.members.files import (
    EMPTY_ROW,
    EXPORT_COLUMNS,
    cell,
    read_csv,
    read_xlsx,
    row_key,
)
from core.domain.members.index import (
    INDEX_STATE,
    Columns,
    IndexTxn,
    StaleIndex,
    load_index,
    read_gen,
    save_chunks,
    state_bytes,
)
from core.domain.members.validate import (
    ADDRESS_CHARS_MAX,
    DB_IDNO,
    DB_INDEX,
    DB_MEMBERS,
    DB_META,
    DB_PHONE,
    DB_ROWS,
    IDNO_KIND,
    IMPORT_CHUNK_ROWS,
    NAME_KEY_BYTES,
    PHONE_KIND,
    PROFILE_FIELDS,
    REJECT_RESULT,
    SEARCH_LIMIT_MAX,
    STATUS_MOVES,
    TAG_VOCABULARY_MAX,
    XLSX_ROWS_MAX,
    ImportReport,
    MemberError,
    MemberErrorCode,
    MemberQuery,
    MemberResult,
    MemberStatus,
    SearchResult,
    _aad,
    _b64,
    text_field,
    validate_profile,
)
from core.domain.pii import (
    PiiCipher,
    PiiError,
    load_key,
    mask_id_no,
    mask_phone,
    normalise_id_no,
    normalise_phone,
)
from core.engine.storage import from_be, u64
from core.engine.writer import AdminContext, AdminResult, Engine
from core.records import CardStatus, MemberOp, Result, is_ascii_digits, new_client_id

log = logging.getLogger("mms.members")


class MemberStore:
    """Members on top of an Engine. Mutations block until durable and return a
    MemberResult or raise MemberError; reads never wait for the writer."""

    def __init__(self, engine: Engine, *, key: bytes | None = None,
                 today: Callable[[], _dt.date] | None = None) -> None:
        self.engine = engine
        self._key = key  # None: the data directory's pii.key (or MMS_PII_KEY)
        self.cipher = PiiCipher(key if key is not None else load_key(engine.store.path))
        self._today = today or (lambda: _dt.datetime.fromtimestamp(engine.clock()).date())
        self._read_dbs: dict[str, object] = {}
        self._cols = Columns()
        # How the search index was had at open: "empty", "loaded" (the saved index), or
        # "rebuilt: <why the saved one was not used>".
        self.index_source = "empty"
        self._open_handles()
        self._load()

    def rebind(self, engine: Engine) -> None:
        """Serve from another engine over the same data (a standby promoted, a primary
        turned standby, a store bootstrapped again, whose pii.key came with the copy):
        the key, the handles and the search index afresh."""
        self.engine = engine
        self.cipher = PiiCipher(self._key if self._key is not None else load_key(engine.store.path))
        self._read_dbs = {}
        self._cols = Columns()
        self.index_source = "empty"
        self._open_handles()
        # A rebuilt index is not saved now: the save is an admin op, which on a primary
        # in sync mode waits for a standby, and this runs while the node takes office.
        self._load(save=False)

    def apply_replicated(self, values: Sequence) -> None:
        """A standby: member records a replicated frame wrote (the primary's after-images,
        JSON) go into the search index, as the primary's own write put them there after
        its commit. (Only the in-memory index: the saved one arrived in the frame.)"""
        self._adopt_handles()
        self._cols.set_many([json.loads(bytes(v)) for v in values])

    # --- opening -------------------------------------------------------------------------

    _ALL_DBS = (DB_MEMBERS, DB_PHONE, DB_IDNO, DB_META, DB_ROWS, DB_INDEX)

    @contextlib.contextmanager
    def _read(self) -> Iterator:
        with self.engine.store.read() as txn:
            yield txn

    def _adopt_handles(self) -> None:
        """Take the writer's handles of the members databases once they are committed.
        Readers only use handles opened in a committed write transaction: py-lmdb's own
        opening (a write transaction taken while holding the GIL) can deadlock with the
        writer, and a handle opened in a read transaction dies with it."""
        for name in self._ALL_DBS:
            h = self.engine.store.db.get(name)
            if h is not None:
                self._read_dbs[name] = h

    def _open_handles(self) -> None:
        # The writer creates (or opens) the databases, so no other thread ever takes
        # LMDB's write lock.
        self.engine.ensure_dbs(self._ALL_DBS)
        self._adopt_handles()

    def _rdb(self, txn, name: str):
        """The read handle of a named database, or None while it does not exist yet."""
        return self._read_dbs.get(name)

    def _load(self, save: bool = True) -> None:
        """The search index: the saved one when it matches the stored members, else a
        full rebuild from `members`, which is then saved (MEMBER_INDEX op) if save."""
        reason = None
        with self._read() as txn:
            meta = self._rdb(txn, DB_META)
            check = txn.get(b"key_check", db=meta) if meta is not None else None
            if check is not None and check != self.cipher.key_check:
                raise PiiError("the PII key differs from the one the members were stored under")
            db = self._rdb(txn, DB_MEMBERS)
            n_members, max_id = 0, 0
            if db is not None:
                n_members = txn.stat(db)["entries"]
                cur = txn.cursor(db=db)
                max_id = from_be(cur.key()) if cur.last() else 0
            gen = read_gen(lambda k: txn.get(k, db=meta)) if meta is not None else 0
            raw_state = txn.get(INDEX_STATE, db=meta) if meta is not None else None
            if n_members == 0 and raw_state is None:
                return
            try:
                self._cols = load_index(txn, self._rdb(txn, DB_INDEX), raw_state, gen,
                                         n_members, max_id)
                self.index_source = "loaded"
                return
            except StaleIndex as exc:
                reason = str(exc)
            self._cols = self._rebuild(txn)
        self.index_source = f"rebuilt: {reason}"
        log.warning("member search index rebuilt (%s): %d members", reason, self._cols.n)
        if save and not self.engine.standby:
            self._save_index(gen, reason)

    def _rebuild(self, txn) -> Columns:
        """The index from every stored member record (about 20 s at 1,000,000 members)."""
        cols = Columns()
        db = self._rdb(txn, DB_MEMBERS)
        if db is None:
            return cols
        recs = []
        loads = json.loads
        for _k, v in txn.cursor(db=db):
            recs.append(loads(v))
            if len(recs) >= 65_536:
                cols.set_many(recs)
                recs = []
        cols.set_many(recs)
        return cols

    def _save_index(self, gen: int, reason: str) -> bool:
        """Save the freshly rebuilt index, in one writer transaction, if no member was
        written since it was read (gen); else leave it for the next open."""
        def build(ctx: AdminContext):
            if read_gen(lambda k: ctx.get(DB_META, k)) != gen:
                ctx.reject(Result.FAILED_PRECONDITION, "members changed while the index was rebuilt")
            ctx.txn.drop(ctx.db(DB_INDEX), delete=False)
            snap = self._cols.snapshot()
            n_chunks, digest = save_chunks(lambda k, v: ctx.put(DB_INDEX, u64(k), v), snap)
            vocab = sorted(snap["tag_bit"], key=snap["tag_bit"].__getitem__)
            ctx.put(DB_META, INDEX_STATE, state_bytes(gen, vocab, digest))
            ctx.detail = {"reason": reason, "rows": snap["n"], "chunks": n_chunks}
            return {"rows": snap["n"], "chunks": n_chunks}

        res = self._submit_raw(new_client_id(), MemberOp.MEMBER_INDEX, build, 0, 0)
        if res.code != Result.OK:
            log.warning("member search index not saved: %s", res.detail)
        return res.code == Result.OK

    # --- reads ---------------------------------------------------------------------------

    def _record(self, txn, member_id: int) -> dict | None:
        db = self._rdb(txn, DB_MEMBERS)
        raw = txn.get(u64(member_id), db=db) if db is not None and member_id > 0 else None
        return json.loads(raw) if raw is not None else None

    def _public(self, rec: dict, reveal: bool) -> dict:
        out = {k: v for k, v in rec.items() if not k.endswith("_enc")}
        out["member_id"] = out.pop("id")
        for name, mask in (("phone", mask_phone), ("id_no", mask_id_no)):
            blob = rec.get(name + "_enc")
            if blob:
                plain = self.cipher.decrypt(base64.b64decode(blob), _aad(rec["id"], name))
                out[name] = plain if reveal else mask(plain)
            else:
                out[name] = ""
        return out

    def get(self, member_id: int, *, reveal: bool = False) -> dict | None:
        """The profile, phone and ID number masked unless reveal (the caller checks the
        operator may see them)."""
        with self._read() as txn:
            rec = self._record(txn, int(member_id))
        return self._public(rec, reveal) if rec is not None else None

    def _id_by_blind(self, db_name: str, blind: bytes) -> int | None:
        with self._read() as txn:
            db = self._rdb(txn, db_name)
            raw = txn.get(blind, db=db) if db is not None else None
        return from_be(raw) if raw is not None else None

    def id_by_phone(self, phone: str) -> int | None:
        """The member holding this phone (any status), by its blind index."""
        try:
            p = normalise_phone(phone)
        except PiiError:
            return None
        return self._id_by_blind(DB_PHONE, self.cipher.blind(PHONE_KIND, p))

    def id_by_id_no(self, id_no: str) -> int | None:
        try:
            s = normalise_id_no(id_no)
        except PiiError:
            return None
        return self._id_by_blind(DB_IDNO, self.cipher.blind(IDNO_KIND, s))

    def find_by_phone(self, phone: str) -> dict | None:
        """The till's caller-ID lookup: the masked profile of the phone's member."""
        mid = self.id_by_phone(phone)
        return self.get(mid) if mid is not None else None

    def count(self) -> int:
        snap = self._cols.snapshot()
        return int(np.count_nonzero(snap["status"]))

    def cards_of(self, member_id: int) -> list[dict]:
        """The member's cards from the engine's committed card table."""
        cards = self.engine.cards_snapshot()
        rows = np.flatnonzero(cards["member_id"] == np.uint64(member_id))
        return [self.engine.card(int(cards[i]["card_no"])) for i in rows.tolist()]

    # --- search --------------------------------------------------------------------------

    def search_ids(self, q: MemberQuery) -> np.ndarray:
        """Member ids (ascending) matching every condition of q."""
        snap = self._cols.snapshot()
        n = snap["n"]
        mask = snap["status"] != 0
        if q.status is not None:
            mask &= snap["status"] == int(q.status)

        def only(member_id: int | None) -> None:
            keep = np.zeros(n, bool)
            if member_id is not None and 0 < member_id <= n:
                keep[member_id - 1] = True
            mask[:] &= keep

        if q.phone:
            only(self.id_by_phone(q.phone))
        if q.id_no:
            only(self.id_by_id_no(q.id_no))
        if q.card_no is not None:
            card = self.engine.card(int(q.card_no))
            only(card["member_id"] if card else None)
        if q.store_id is not None:
            mask &= snap["store"] == np.uint32(q.store_id)
        if q.tags:
            bits = snap["tag_bit"]
            for t in q.tags:
                b = bits.get(t)
                if b is None:
                    return np.zeros(0, np.int64)
                col = snap["tags"][:, b // 64]
                mask &= (col & np.uint64(1 << (b % 64))) != 0
        if q.name:
            mask &= self._name_mask(snap, q.name.strip().casefold(), q.name_contains)
        if (q.level is not None or q.spend_min_fen is not None or q.spend_max_fen is not None
                or q.last_visit_from_s is not None or q.last_visit_to_s is not None):
            mask &= self._card_mask(n, q)
        return np.flatnonzero(mask) + 1

    @staticmethod
    def _name_mask(snap: dict, needle: str, contains: bool) -> np.ndarray:
        raw = needle.encode()
        names = snap["name"]
        if contains:
            m = np.strings.find(names, raw) >= 0 if len(raw) <= NAME_KEY_BYTES else np.zeros(len(names), bool)
        else:
            m = np.strings.startswith(names, raw)
        # Names longer than the index key are matched whole.
        for row, full in snap["long_names"].items():
            if row < len(m):
                m[row] = (needle in full) if contains else full.startswith(needle)
        return m

    def _card_mask(self, n: int, q: MemberQuery) -> np.ndarray:
        cards = self.engine.cards_snapshot()
        mids = cards["member_id"].astype(np.int64)
        valid = (mids > 0) & (mids <= n)
        rows = mids[valid] - 1
        mask = np.ones(n, bool)
        if q.level is not None:
            live = valid.copy()
            live[valid] = cards["status"][valid] != CardStatus.CANCELLED
            at = live & (cards["level"] == q.level)
            hit = np.zeros(n, bool)
            hit[mids[at] - 1] = True
            mask &= hit
        if q.spend_min_fen is not None or q.spend_max_fen is not None:
            spend = np.zeros(n, np.int64)
            np.add.at(spend, rows, cards["spend_total_fen"][valid].astype(np.int64))
            if q.spend_min_fen is not None:
                mask &= spend >= q.spend_min_fen
            if q.spend_max_fen is not None:
                mask &= spend <= q.spend_max_fen
        if q.last_visit_from_s is not None or q.last_visit_to_s is not None:
            last = np.zeros(n, np.int64)
            np.maximum.at(last, rows, cards["last_visit_s"][valid].astype(np.int64))
            if q.last_visit_from_s is not None:
                mask &= last >= q.last_visit_from_s
            if q.last_visit_to_s is not None:
                mask &= (last <= q.last_visit_to_s) & (last > 0)
        return mask

    def search(self, q: MemberQuery) -> SearchResult:
        """One page of masked profiles (ascending member id) and the total count."""
        if not 1 <= q.limit <= SEARCH_LIMIT_MAX or q.offset < 0:
            raise MemberError(MemberErrorCode.INVALID, f"limit 1..{SEARCH_LIMIT_MAX}, offset >= 0")
        ids = self.search_ids(q)
        page = ids[q.offset: q.offset + q.limit].tolist()
        out = []
        with self._read() as txn:
            for mid in page:
                rec = self._record(txn, mid)
                if rec is not None:
                    out.append(self._public(rec, False))
        return SearchResult(len(ids), out)

    def find_duplicates(self, *, limit: int = 1000) -> list[list[int]]:
        """Groups of live members that are likely one person: the same casefolded name
        and the same birthday (phone and ID number cannot repeat by construction)."""
        snap = self._cols.snapshot()
        live = (snap["status"] != 0) & (snap["status"] != MemberStatus.CANCELLED) & (snap["birthday"] > 0)
        rows = np.flatnonzero(live)
        if len(rows) == 0:
            return []
        key = np.empty(len(rows), dtype=[("name", f"S{NAME_KEY_BYTES}"), ("b", np.int32)])
        key["name"], key["b"] = snap["name"][rows], snap["birthday"][rows]
        order = np.argsort(key, kind="stable", order=("name", "b"))
        k = key[order]
        same = np.zeros(len(k), bool)
        same[1:] = k[1:] == k[:-1]
        groups: list[list[int]] = []
        i = 0
        while i < len(k) and len(groups) < limit:
            j = i + 1
            while j < len(k) and same[j]:
                j += 1
            if j - i > 1:
                group = (rows[order[i:j]] + 1).tolist()
                # Long names share a truncated key; split them by the whole name.
                by_full: dict[str, list[int]] = {}
                for mid in group:
                    by_full.setdefault(snap["long_names"].get(mid - 1, ""), []).append(mid)
                groups.extend(g for g in by_full.values() if len(g) > 1)
            i = j
        return groups[:limit]

    # --- writes (build functions run in the writer) --------------------------------------

    def _submit_raw(self, client_id: bytes, op: MemberOp, build, operator_id: int,
                    store_id: int) -> AdminResult:
        def adopting(ctx: AdminContext):
            value = build(ctx)
            ctx.after_commit(self._adopt_handles)
            return value

        return self.engine.admin(client_id, op, adopting, operator_id=operator_id,
                                 store_id=store_id).result()

    def _submit(self, client_id: bytes, op: MemberOp, build, operator_id: int,
                store_id: int) -> AdminResult:
        res = self._submit_raw(client_id, op, build, operator_id, store_id)
        if res.code != Result.OK:
            _, _, msg = res.detail.partition(": ")
            try:
                raise MemberError(MemberErrorCode(res.reason), msg)
            except ValueError:
                raise MemberError(MemberErrorCode.INVALID, res.detail) from None
        return res

    @staticmethod
    def _reject(ctx: AdminContext, code: MemberErrorCode, message: str):
        ctx.reject(REJECT_RESULT[code.value], f"{code.value}: {message}", reason=code.value)

    def _index(self, ctx: AdminContext) -> IndexTxn:
        """This op's view of the saved index (made on first use in the op)."""
        itx = getattr(ctx, "_member_index", None)
        if itx is None:
            itx = IndexTxn(ctx, self._cols)
            ctx._member_index = itx  # type: ignore[attr-defined]
        return itx

    def _ensure_key_check(self, ctx: AdminContext) -> None:
        if ctx.get(DB_META, b"key_check") is None:
            ctx.put(DB_META, b"key_check", self.cipher.key_check)

    def _next_id(self, ctx: AdminContext, n: int) -> int:
        raw = ctx.get(DB_META, b"next_id")
        first = from_be(raw) if raw else 1
        ctx.put(DB_META, b"next_id", u64(first + n))
        return first

    def _claim(self, ctx: AdminContext, db: str, kind: bytes, value: str, member_id: int,
               code: MemberErrorCode) -> str | None:
        """Point the blind index of value at member_id; the reason if another holds it."""
        blind = self.cipher.blind(kind, value)
        held = ctx.get(db, blind)
        if held is not None and from_be(held) != member_id:
            label = "phone" if kind == PHONE_KIND else "ID number"
            shown = mask_phone(value) if kind == PHONE_KIND else mask_id_no(value)
            return f"{code.value}: {label} {shown} belongs to member {from_be(held)}"
        ctx.put(db, blind, u64(member_id))
        return None

    def _write_new(self, ctx: AdminContext, member_id: int, prof: dict) -> tuple[dict | None, str | None]:
        """Check and write one new member; nothing is written when a reason is returned."""
        if prof.get("referrer_id") == member_id:
            return None, f"{MemberErrorCode.SELF_REFERRAL.value}: referrer_id: a member cannot refer themselves"
        if prof.get("referrer_id") and (prof["referrer_id"] > member_id
                                        or ctx.get(DB_MEMBERS, u64(prof["referrer_id"])) is None):
            return None, f"{MemberErrorCode.REFERRER_NOT_FOUND.value}: member {prof['referrer_id']} not found"
        for name, db, kind, code in (("phone", DB_PHONE, PHONE_KIND, MemberErrorCode.PHONE_TAKEN),
                                     ("id_no", DB_IDNO, IDNO_KIND, MemberErrorCode.ID_NO_TAKEN)):
            if prof.get(name):
                held = ctx.get(db, self.cipher.blind(kind, prof[name]))
                if held is not None:
                    label = "phone" if name == "phone" else "ID number"
                    shown = mask_phone(prof[name]) if name == "phone" else mask_id_no(prof[name])
                    return None, f"{code.value}: {label} {shown} belongs to member {from_be(held)}"
        if not self._index(ctx).room(prof.get("tags", ())):
            return None, f"{MemberErrorCode.INVALID.value}: more than {TAG_VOCABULARY_MAX} distinct tags"
        for name, db, kind, code in (("phone", DB_PHONE, PHONE_KIND, MemberErrorCode.PHONE_TAKEN),
                                     ("id_no", DB_IDNO, IDNO_KIND, MemberErrorCode.ID_NO_TAKEN)):
            if prof.get(name):
                self._claim(ctx, db, kind, prof[name], member_id, code)
        rec = self._encode(member_id, prof, status=MemberStatus.ACTIVE, created_s=ctx.now,
                           updated_s=ctx.now, version=1)
        ctx.put(DB_MEMBERS, u64(member_id), json.dumps(rec, ensure_ascii=False).encode())
        return rec, None

    def _encode(self, member_id: int, prof: dict, *, status: MemberStatus, created_s: int,
                updated_s: int, version: int) -> dict:
        rec = {"id": member_id}
        for name in PROFILE_FIELDS:
            if name in ("phone", "id_no"):
                v = prof.get(name, "")
                rec[name + "_enc"] = _b64(self.cipher.encrypt(v, _aad(member_id, name))) if v else ""
            else:
                rec[name] = prof.get(name, EMPTY_ROW[name])
        rec.update(status=status.name.lower(), created_s=created_s, updated_s=updated_s,
                   version=version)
        return rec

    def create(self, profile: dict, client_id: bytes, *, operator_id: int = 0,
               store_id: int = 0) -> MemberResult:
        """Enrol one member. Raises MemberError (INVALID, PHONE_TAKEN, ID_NO_TAKEN,
        REFERRER_NOT_FOUND); a retry with the same client id returns the first result."""
        prof = validate_profile(profile, partial=False, today=self._today())
        if not prof.get("home_store_id") and store_id:
            prof["home_store_id"] = store_id

        def build(ctx: AdminContext):
            self._ensure_key_check(ctx)
            member_id = self._next_id(ctx, 1)
            rec, reason = self._write_new(ctx, member_id, prof)
            if reason is not None:
                code, _, msg = reason.partition(": ")
                self._reject(ctx, MemberErrorCode(code), msg)
            self._index(ctx).write([rec])
            ctx.after_commit(lambda: self._cols.set_many([rec]))
            ctx.detail = {"member_id": member_id, "before": None, "after": self._masked(prof)}
            return {"member_id": member_id}

        res = self._submit(client_id, MemberOp.MEMBER_CREATE, build, operator_id, store_id)
        return MemberResult(res.value["member_id"], res.replayed, res.seq, res.value)

    @staticmethod
    def _masked(prof: dict) -> dict:
        out = dict(prof)
        if out.get("phone"):
            out["phone"] = mask_phone(out["phone"])
        if out.get("id_no"):
            out["id_no"] = mask_id_no(out["id_no"])
        return out

    def update(self, member_id: int, changes: dict, client_id: bytes, *,
               expected_version: int | None = None, operator_id: int = 0,
               store_id: int = 0) -> MemberResult:
        """Change some profile fields (None clears one). Audited with the masked
        before/after of the fields that changed. expected_version guards against
        overwriting a change the operator has not seen."""
        member_id = int(member_id)
        prof = validate_profile(changes, partial=True, today=self._today())

        def build(ctx: AdminContext):
            raw = ctx.get(DB_MEMBERS, u64(member_id))
            if raw is None:
                self._reject(ctx, MemberErrorCode.NOT_FOUND, f"member {member_id} not found")
            rec = json.loads(raw)
            if expected_version is not None and rec["version"] != expected_version:
                self._reject(ctx, MemberErrorCode.VERSION_CONFLICT,
                             f"member {member_id} is at version {rec['version']}, not {expected_version}")
            old = self._public(rec, reveal=True)
            changed = {k: v for k, v in prof.items() if old.get(k) != v}
            if "referrer_id" in changed and changed["referrer_id"]:
                ref = changed["referrer_id"]
                if ref == member_id:
                    self._reject(ctx, MemberErrorCode.SELF_REFERRAL,
                                 "referrer_id: a member cannot refer themselves")
                if ctx.get(DB_MEMBERS, u64(ref)) is None:
                    self._reject(ctx, MemberErrorCode.REFERRER_NOT_FOUND,
                                 f"referrer_id: member {ref} not found")
            if "tags" in changed and not self._index(ctx).room(changed["tags"]):
                self._reject(ctx, MemberErrorCode.INVALID, f"more than {TAG_VOCABULARY_MAX} distinct tags")
            for name, db, kind, code in (("phone", DB_PHONE, PHONE_KIND, MemberErrorCode.PHONE_TAKEN),
                                         ("id_no", DB_IDNO, IDNO_KIND, MemberErrorCode.ID_NO_TAKEN)):
                if name not in changed:
                    continue
                if changed[name]:
                    reason = self._claim(ctx, db, kind, changed[name], member_id, code)
                    if reason is not None:
                        self._reject(ctx, code, reason.partition(": ")[2])
                if old[name]:
                    ctx.delete(db, self.cipher.blind(kind, old[name]))
            new_prof = {k: old[k] for k in PROFILE_FIELDS}
            new_prof.update(changed)
            version = rec["version"] + (1 if changed else 0)
            new = self._encode(member_id, new_prof, status=MemberStatus[rec["status"].upper()],
                               created_s=rec["created_s"], updated_s=ctx.now if changed else rec["updated_s"],
                               version=version)
            if changed:
                ctx.put(DB_MEMBERS, u64(member_id), json.dumps(new, ensure_ascii=False).encode())
                self._index(ctx).write([new])
                ctx.after_commit(lambda: self._cols.set_many([new]))
            ctx.detail = {"member_id": member_id,
                          "before": self._masked({k: old[k] for k in changed}),
                          "after": self._masked(changed)}
            return {"member_id": member_id, "version": version, "changed": sorted(changed)}

        res = self._submit(client_id, MemberOp.MEMBER_UPDATE, build, operator_id, store_id)
        return MemberResult(member_id, res.replayed, res.seq, res.value)

    def set_status(self, member_id: int, status: MemberStatus, client_id: bytes, *,
                   reason: str = "", operator_id: int = 0, store_id: int = 0) -> MemberResult:
        """Freeze, unfreeze, cancel or restore (cancelled -> active). The phone and ID
        number stay claimed by a cancelled member so that it can be restored."""
        member_id, status = int(member_id), MemberStatus(int(status))
        reason = text_field("reason", reason, ADDRESS_CHARS_MAX)

        def build(ctx: AdminContext):
            raw = ctx.get(DB_MEMBERS, u64(member_id))
            if raw is None:
                self._reject(ctx, MemberErrorCode.NOT_FOUND, f"member {member_id} not found")
            rec = json.loads(raw)
            before = MemberStatus[rec["status"].upper()]
            if (before, status) not in STATUS_MOVES:
                self._reject(ctx, MemberErrorCode.STATUS_MOVE,
                             f"member {member_id}: {before.name} -> {status.name} is not allowed")
            rec.update(status=status.name.lower(), updated_s=ctx.now, version=rec["version"] + 1)
            ctx.put(DB_MEMBERS, u64(member_id), json.dumps(rec, ensure_ascii=False).encode())
            self._index(ctx).write([rec])
            ctx.after_commit(lambda: self._cols.set_many([rec]))
            ctx.detail = {"member_id": member_id, "reason": reason,
                          "before": {"status": before.name.lower()},
                          "after": {"status": status.name.lower()}}
            return {"member_id": member_id, "status": status.name.lower(), "version": rec["version"]}

        res = self._submit(client_id, MemberOp.MEMBER_STATUS, build, operator_id, store_id)
        return MemberResult(member_id, res.replayed, res.seq, res.value)

    def freeze(self, member_id: int, client_id: bytes, **kw) -> MemberResult:
        return self.set_status(member_id, MemberStatus.FROZEN, client_id, **kw)

    def unfreeze(self, member_id: int, client_id: bytes, **kw) -> MemberResult:
        return self.set_status(member_id, MemberStatus.ACTIVE, client_id, **kw)

    def cancel(self, member_id: int, client_id: bytes, **kw) -> MemberResult:
        return self.set_status(member_id, MemberStatus.CANCELLED, client_id, **kw)

    def restore(self, member_id: int, client_id: bytes, **kw) -> MemberResult:
        return self.set_status(member_id, MemberStatus.ACTIVE, client_id, **kw)

    # --- import ----------------------------------------------------------------------------

    def import_file(self, path: str, *, file_id: str | None = None,
                    chunk_rows: int = IMPORT_CHUNK_ROWS, operator_id: int = 0,
                    store_id: int = 0) -> ImportReport:
        """Import a .csv (UTF-8 or GB18030) or .xlsx file whose first row names the
        columns. file_id defaults to the SHA-256 of the file, so importing the same file
        again (after a failure or by mistake) creates nothing twice."""
        if file_id is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            file_id = h.hexdigest()
        rows = read_xlsx(path) if path.lower().endswith(".xlsx") else read_csv(path)
        return self.import_rows(rows, file_id=file_id, chunk_rows=chunk_rows,
                                operator_id=operator_id, store_id=store_id)

    def import_rows(self, rows: Iterable[tuple[int, dict | str]], *, file_id: str,
                    chunk_rows: int = IMPORT_CHUNK_ROWS, operator_id: int = 0,
                    store_id: int = 0, update_existing: bool = False,
                    scope_store: int | None = None) -> ImportReport:
        """rows: (line number, profile dict) pairs, or (line, reason) for rows the reader
        could not parse. Every row is validated whole before anything is written; valid
        rows go in atomic chunks of chunk_rows through the writer.

        A row with a member_id updates that member (an exported file, edited); with
        update_existing, a row whose phone or ID number belongs to a member updates that
        member instead of being refused. Each update is one op of its own, all or nothing,
        journalled, and idempotent by the file id and line (_import_update). scope_store:
        the only store whose members may be updated (a store manager's)."""
        if not 1 <= chunk_rows <= 10 * IMPORT_CHUNK_ROWS:
            raise ValueError(f"chunk_rows 1..{10 * IMPORT_CHUNK_ROWS}")
        report = ImportReport(file_id)
        seen: dict[bytes, int] = {}   # blind index -> line, for duplicates inside the file
        today = self._today()
        chunk: list[tuple[int, bytes, dict]] = []

        def update(line: int, member_id: int, row: dict) -> None:
            nonlocal chunk
            if chunk:  # rows apply in the file's order
                self._import_chunk(chunk, file_id, report, operator_id, store_id)
                chunk = []
            self._import_update(line, member_id, row, file_id, report, operator_id,
                                store_id, scope_store)

        for line, row in rows:
            report.rows += 1
            if isinstance(row, str):
                report.error(line, row)
                continue
            row = dict(row)
            member_id = row.pop("member_id", None)
            if member_id is not None:
                text = str(member_id).strip()
                if not is_ascii_digits(text) or not 0 < int(text) < 2**63:
                    report.error(line, f"member_id {member_id!r} is not a member id")
                else:
                    update(line, int(text), row)
                continue
            try:
                prof = validate_profile(row, partial=False, today=today)
            except MemberError as exc:
                report.error(line, exc.message)
                continue
            if update_existing:
                found = {n: i for n, i in (("phone", prof.get("phone") and self.id_by_phone(prof["phone"])),
                                           ("ID number", prof.get("id_no") and self.id_by_id_no(prof["id_no"])))
                         if i}
                if len(set(found.values())) > 1:
                    report.error(line, f"the phone belongs to member {found['phone']} and the "
                                       f"ID number to member {found['ID number']}")
                    continue
                if found:
                    update(line, next(iter(found.values())), row)
                    continue
            if not prof.get("home_store_id") and store_id:
                prof["home_store_id"] = store_id
            if not row.get("source"):
                prof["source"] = "import"
            dup = None
            for name, kind in (("phone", PHONE_KIND), ("id_no", IDNO_KIND)):
                if prof.get(name):
                    b = self.cipher.blind(kind, prof[name])
                    if b in seen:
                        dup = f"{name} repeats line {seen[b]}"
                        break
            if dup:
                report.error(line, dup)
                continue
            for name, kind in (("phone", PHONE_KIND), ("id_no", IDNO_KIND)):
                if prof.get(name):
                    seen[self.cipher.blind(kind, prof[name])] = line
            chunk.append((line, row_key(file_id, line), prof))
            if len(chunk) >= chunk_rows:
                self._import_chunk(chunk, file_id, report, operator_id, store_id)
                chunk = []
        if chunk:
            self._import_chunk(chunk, file_id, report, operator_id, store_id)
        return report

    def _import_update(self, line: int, member_id: int, row: dict, file_id: str,
                       report: ImportReport, operator_id: int, store_id: int,
                       scope_store: int | None) -> None:
        """One row as an update of member_id: the cells given change their fields (an
        empty cell changes nothing); a phone or ID number as the export masks it
        (138****8000) is the member's own, unchanged, and any other masked value is
        refused. The op's client id is the row's key (file id and line): importing the
        file again applies nothing twice."""
        changes = dict(row)
        current = self.get(member_id, reveal=True)
        if current is None:
            report.error(line, f"{MemberErrorCode.NOT_FOUND.value}: member {member_id} not found")
            return
        if scope_store is not None and current.get("home_store_id") != scope_store:
            report.error(line, f"member {member_id} is not a member of store {scope_store}")
            return
        for name, label, mask in (("phone", "phone", mask_phone), ("id_no", "ID number", mask_id_no)):
            value = changes.get(name)
            if isinstance(value, str) and "*" in value:
                if not current.get(name) or value.strip() != mask(current[name]):
                    report.error(line, f"{label} {value!r} is masked and is not member "
                                       f"{member_id}'s; write the whole number to change it")
                    return
                del changes[name]
        try:
            res = self.update(member_id, changes, row_key(file_id, line),
                              operator_id=operator_id, store_id=store_id)
        except MemberError as exc:
            report.error(line, exc.message if exc.code == MemberErrorCode.INVALID else str(exc))
            return
        report.member_ids[line] = member_id
        if res.replayed:
            report.already_imported += 1
        else:
            report.updated += 1

    def _import_chunk(self, chunk: list[tuple[int, bytes, dict]], file_id: str,
                      report: ImportReport, operator_id: int, store_id: int) -> None:
        first_line, last_line = chunk[0][0], chunk[-1][0]
        client_id = hashlib.sha256(f"mms-import-chunk:{file_id}:{first_line}:{last_line}:{len(chunk)}"
                                   .encode()).digest()[:16]

        def build(ctx: AdminContext):
            self._ensure_key_check(ctx)
            raw = ctx.get(DB_META, b"next_id")
            next_id = from_be(raw) if raw else 1
            created: list[dict] = []
            outcome: list = []        # per row: member id created, [id] existing, or reason
            for _line, rkey, prof in chunk:
                held = ctx.get(DB_ROWS, rkey)
                if held is not None:
                    outcome.append([from_be(held)])
                    continue
                rec, reason = self._write_new(ctx, next_id, prof)
                if reason is not None:
                    outcome.append(reason)
                    continue
                ctx.put(DB_ROWS, rkey, u64(next_id))
                created.append(rec)
                outcome.append(next_id)
                next_id += 1
            ctx.put(DB_META, b"next_id", u64(next_id))
            if created:
                self._index(ctx).write(created)
            ctx.after_commit(lambda: self._cols.set_many(created))
            ctx.after_commit(self._adopt_handles)
            ctx.detail = {"file_id": file_id, "lines": [first_line, last_line],
                          "before": None,
                          "after": {"created": len(created),
                                    "member_ids": [created[0]["id"], created[-1]["id"]] if created else []}}
            return {"outcome": outcome}

        res = self.engine.admin(client_id, MemberOp.MEMBER_IMPORT, build, operator_id=operator_id,
                                store_id=store_id).result()
        if res.code != Result.OK:
            for line, _k, _p in chunk:
                report.error(line, res.detail)
            return
        for (line, _k, _p), out in zip(chunk, res.value["outcome"], strict=True):
            if isinstance(out, str):
                report.error(line, out)
            elif isinstance(out, list) or res.replayed:
                mid = out[0] if isinstance(out, list) else out
                report.already_imported += 1
                report.member_ids[line] = mid
            else:
                report.created += 1
                report.member_ids[line] = out

    # --- export ----------------------------------------------------------------------------

    def iter_export(self, q: MemberQuery | None = None) -> Iterator[list]:
        """The header, then one row per matching member, PII masked."""
        ids = self.search_ids(q or MemberQuery()).tolist()
        yield list(EXPORT_COLUMNS)
        step = 4096
        for i in range(0, len(ids), step):
            with self._read() as txn:
                recs = [self._record(txn, mid) for mid in ids[i: i + step]]
            for rec in recs:
                if rec is None:
                    continue
                p = self._public(rec, False)
                yield [cell(p[c]) for c in EXPORT_COLUMNS]

    def export(self, path: str, q: MemberQuery | None = None) -> int:
        """Write matching members to .csv (UTF-8 with BOM, for Excel) or .xlsx; returns
        the number of members written."""
        rows = self.iter_export(q)
        n = -1
        if path.lower().endswith(".xlsx"):
            import openpyxl

            wb = openpyxl.Workbook(write_only=True)
            ws = wb.create_sheet("members")
            for row in rows:
                n += 1
                if n > XLSX_ROWS_MAX:
                    raise MemberError(MemberErrorCode.INVALID,
                                      f"more than {XLSX_ROWS_MAX} members: export to CSV")
                ws.append(row)
            wb.save(path)
        else:
            with open(path, "w", newline="", encoding="utf-8-sig") as f:
                w = csv.writer(f)
                for row in rows:
                    n += 1
                    w.writerow(row)
        return n
