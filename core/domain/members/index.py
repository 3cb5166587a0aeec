"""Members: the in-memory columnar search index and its saved chunks in `member_index`
(bound to the members by a generation and a digest; anything that does not match is rebuilt)."""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from core.domain.members.validate import (
    DB_INDEX,
    DB_MEMBERS,
    DB_META,
    NAME_KEY_BYTES,
    TAG_VOCABULARY_MAX,
    MemberStatus,
)
from core.engine.storage import from_be, u64
from core.engine.writer import AdminContext

log = logging.getLogger("mms.members")


_WORD = (1 << 64) - 1


def _index_row(rec: dict) -> tuple[int, int, int, bytes, str | None]:
    """A record's index values: status, home store, birthday (yyyymmdd, 0 = unknown), the
    name key (the casefolded name's first NAME_KEY_BYTES UTF-8 bytes, cut at a character
    boundary) and the whole casefolded name when it is longer than that (else None)."""
    key = rec["name"].casefold()
    raw = key.encode()
    long = None
    if len(raw) > NAME_KEY_BYTES:
        raw, long = raw[:NAME_KEY_BYTES].decode("utf-8", "ignore").encode(), key
    b = rec["birthday"]
    return (int(MemberStatus[rec["status"].upper()]), int(rec["home_store_id"]),
            int(b.replace("-", "")) if b else 0, raw, long)


def _tag_mask(tags: Iterable[str], bit_of: dict[str, int]) -> int:
    """The tags' bits as one integer; a tag new to bit_of gets the next free bit."""
    mask = 0
    for t in tags:
        bit = bit_of.get(t)
        if bit is None:
            if len(bit_of) >= TAG_VOCABULARY_MAX:
                continue  # checked in the writer before commit; never reached
            bit = bit_of[t] = len(bit_of)
        mask |= 1 << bit
    return mask


def _n_words(n_tags: int) -> int:
    """u64 words of tag bits a row needs for a vocabulary of n_tags."""
    return max(1, -(-n_tags // 64))


def _mask_words(mask: int, words: int) -> list[int]:
    return [(mask >> (64 * j)) & _WORD for j in range(words)]


class Columns:
    """One row per member id (row = id - 1). Written only by the writer thread (after a
    commit, or at open); readers take `snapshot()` and never see a half-grown array."""

    def __init__(self, capacity: int = 1024, words: int = 1) -> None:
        self.lock = threading.Lock()
        self.n = 0
        self.status = np.zeros(capacity, np.uint8)      # 0 = no member with this id
        self.store = np.zeros(capacity, np.uint32)
        self.birthday = np.zeros(capacity, np.int32)    # yyyymmdd, 0 = unknown
        self.name = np.zeros(capacity, dtype=f"S{NAME_KEY_BYTES}")
        self.tags = np.zeros((capacity, words), np.uint64)
        self.long_names: dict[int, str] = {}            # row -> casefolded name > NAME_KEY_BYTES
        self.tag_bit: dict[str, int] = {}

    def _grow(self, need: int) -> None:
        cap = len(self.status)
        if need <= cap:
            return
        while cap < need:
            cap *= 2

        def bigger(a: np.ndarray) -> np.ndarray:
            b = np.zeros((cap,) + a.shape[1:], a.dtype)
            b[: len(a)] = a
            return b

        self.status, self.store, self.birthday = bigger(self.status), bigger(self.store), bigger(self.birthday)
        self.name, self.tags = bigger(self.name), bigger(self.tags)

    def _widen(self, words: int) -> None:
        if words > self.tags.shape[1]:
            wider = np.zeros((len(self.tags), words), np.uint64)
            wider[:, : self.tags.shape[1]] = self.tags
            self.tags = wider

    def set_many(self, recs: Sequence[dict]) -> None:
        """Set the rows of these records (later records win); vectorised per call."""
        if not recs:
            return
        with self.lock:
            rows: dict[int, tuple] = {}
            for rec in recs:
                status, store, birthday, name, long = _index_row(rec)
                rows[rec["id"] - 1] = (status, store, birthday, name, long,
                                       _tag_mask(rec["tags"], self.tag_bit))
            self._grow(max(rows) + 1)
            self._widen(_n_words(len(self.tag_bit)))
            idx = np.fromiter(rows, np.int64, len(rows))
            vals = list(rows.values())
            self.store[idx] = [v[1] for v in vals]
            self.birthday[idx] = [v[2] for v in vals]
            self.name[idx] = [v[3] for v in vals]
            words = self.tags.shape[1]
            self.tags[idx] = np.array([_mask_words(v[5], words) for v in vals], np.uint64)
            for row, v in rows.items():
                if v[4] is None:
                    self.long_names.pop(row, None)
                else:
                    self.long_names[row] = v[4]
            self.status[idx] = [v[0] for v in vals]
            self.n = max(self.n, int(idx.max()) + 1)

    def snapshot(self) -> dict:
        with self.lock:
            n = self.n
            return {"n": n, "status": self.status[:n], "store": self.store[:n],
                    "birthday": self.birthday[:n], "name": self.name[:n], "tags": self.tags[:n],
                    "long_names": dict(self.long_names), "tag_bit": dict(self.tag_bit)}

    def canonical(self) -> dict:
        """The index with tag bits replaced by tag names: two indexes are equal (give the
        same search results) iff their canonical forms are, whatever bit each tag got."""
        snap = self.snapshot()
        n = snap["n"]
        tags = {}
        for t, bit in snap["tag_bit"].items():
            rows = np.flatnonzero(snap["tags"][:, bit // 64] & np.uint64(1 << (bit % 64)))
            if len(rows):
                tags[t] = rows.tolist()
        return {"n": n, "status": snap["status"].tolist(), "store": snap["store"].tolist(),
                "birthday": snap["birthday"].tolist(), "name": snap["name"].tolist(),
                "long_names": snap["long_names"], "tags": tags}


# --- the persisted index -------------------------------------------------------------------
#
# The columns are also kept in LMDB (database member_index), in chunks of
# INDEX_CHUNK_ROWS rows, rewritten in the same write transaction as the member records
# they index: the saved index can never lag the members it describes, whenever the
# process dies. member_meta "gen" counts the transactions that wrote members; the index
# state (member_meta "index") names the gen it reflects, the tag vocabulary and the XOR
# of every chunk's digest. Opening loads the chunks (~0.2 s at 1,000,000 members) and
# checks all of that; anything that does not match is reported and the index rebuilt
# from `members` (and saved again). docs/internals/storage.md has the byte layout.

INDEX_FORMAT = 1
INDEX_CHUNK_ROWS = 256
_CHUNK_MAGIC = b"MMI1"
_CHUNK_HEAD = struct.Struct("<4sHHII")   # magic, rows, tag words, long-name bytes, 0
_DIGEST_BYTES = 16
_ROW_BYTES = 4 + 4 + NAME_KEY_BYTES + 1  # store, birthday, name, status (+ 8 per tag word)
_GEN = b"gen"
INDEX_STATE = b"index"
_TAG_WORDS_MAX = _n_words(TAG_VOCABULARY_MAX)


class StaleIndex(Exception):
    """The saved index does not match the stored members (the reason is the message)."""


def _chunk_digest(k: int, payload: bytes) -> bytes:
    h = hashlib.blake2b(u64(k), digest_size=_DIGEST_BYTES)
    h.update(payload)
    return h.digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(_DIGEST_BYTES, "big")


@dataclass
class _Chunk:
    """Rows k*INDEX_CHUNK_ROWS.. of the index (offsets within the chunk)."""

    tags: np.ndarray        # (rows, words) u64
    store: np.ndarray
    birthday: np.ndarray
    name: np.ndarray
    status: np.ndarray
    long_names: dict[int, str]

    @classmethod
    def empty(cls, words: int) -> _Chunk:
        r = INDEX_CHUNK_ROWS
        return cls(np.zeros((r, words), np.uint64), np.zeros(r, np.uint32), np.zeros(r, np.int32),
                   np.zeros(r, f"S{NAME_KEY_BYTES}"), np.zeros(r, np.uint8), {})

    def encode(self, k: int) -> bytes:
        """digest (16 bytes) + payload; the digest covers the chunk number too."""
        long = (json.dumps({str(i): s for i, s in sorted(self.long_names.items())},
                           ensure_ascii=False).encode() if self.long_names else b"")
        payload = b"".join((
            _CHUNK_HEAD.pack(_CHUNK_MAGIC, INDEX_CHUNK_ROWS, self.tags.shape[1], len(long), 0),
            self.tags.astype("<u8").tobytes(), self.store.astype("<u4").tobytes(),
            self.birthday.astype("<i4").tobytes(), self.name.tobytes(),
            self.status.astype("u1").tobytes(), long))
        return _chunk_digest(k, payload) + payload

    @classmethod
    def decode(cls, k: int, value: bytes) -> _Chunk:
        """Raises StaleIndex when the value is not a well-formed chunk k."""
        head = _DIGEST_BYTES + _CHUNK_HEAD.size
        if len(value) < head:
            raise StaleIndex(f"index chunk {k} is truncated")
        if _chunk_digest(k, value[_DIGEST_BYTES:]) != value[:_DIGEST_BYTES]:
            raise StaleIndex(f"index chunk {k} fails its checksum")
        magic, rows, words, n_long, _ = _CHUNK_HEAD.unpack_from(value, _DIGEST_BYTES)
        if (magic != _CHUNK_MAGIC or rows != INDEX_CHUNK_ROWS or not 1 <= words <= _TAG_WORDS_MAX
                or len(value) != head + rows * (_ROW_BYTES + 8 * words) + n_long):
            raise StaleIndex(f"index chunk {k} has another layout")
        off = head

        def col(dtype: str, count: int) -> np.ndarray:
            nonlocal off
            a = np.frombuffer(value, dtype, count, off)
            off += a.nbytes
            return a

        tags = col("<u8", rows * words).reshape(rows, words)
        store, birthday = col("<u4", rows), col("<i4", rows)
        name, status = col(f"S{NAME_KEY_BYTES}", rows), col("u1", rows)
        long: dict[int, str] = {}
        if n_long:
            try:
                long = {int(i): s for i, s in json.loads(value[off:]).items()}
            except (ValueError, AttributeError):
                raise StaleIndex(f"index chunk {k}: long names unreadable") from None
            if any(not 0 <= i < rows or not isinstance(s, str) for i, s in long.items()):
                raise StaleIndex(f"index chunk {k}: long names out of range")
        return cls(tags, store, birthday, name, status, long)

    def set_many(self, offs: Sequence[int], recs: Sequence[dict], bit_of: dict[str, int]) -> None:
        """Set rows offs to these records (distinct offsets); new tags get bits in bit_of."""
        vals = [_index_row(rec) for rec in recs]
        masks = [_tag_mask(rec["tags"], bit_of) for rec in recs]
        words = _n_words(len(bit_of))
        if words > self.tags.shape[1]:
            wider = np.zeros((INDEX_CHUNK_ROWS, words), np.uint64)
            wider[:, : self.tags.shape[1]] = self.tags
            self.tags = wider
        idx = np.array(offs, np.int64)
        self.tags[idx] = np.array([_mask_words(m, self.tags.shape[1]) for m in masks], np.uint64)
        self.store[idx] = [v[1] for v in vals]
        self.birthday[idx] = [v[2] for v in vals]
        self.name[idx] = [v[3] for v in vals]
        self.status[idx] = [v[0] for v in vals]
        for off, v in zip(offs, vals, strict=True):
            if v[4] is None:
                self.long_names.pop(off, None)
            else:
                self.long_names[off] = v[4]

    def writable(self) -> _Chunk:
        return _Chunk(self.tags.copy(), self.store.copy(), self.birthday.copy(), self.name.copy(),
                      self.status.copy(), dict(self.long_names))


def _index_state(raw: bytes | None) -> dict | None:
    """The parsed index state, or None when it is absent or not of this format."""
    if raw is None:
        return None
    try:
        st = json.loads(raw)
        ok = (isinstance(st, dict) and st.get("format") == INDEX_FORMAT
              and st.get("chunk_rows") == INDEX_CHUNK_ROWS and isinstance(st.get("gen"), int)
              and isinstance(st.get("tags"), list) and len(st["tags"]) <= TAG_VOCABULARY_MAX
              and all(isinstance(t, str) for t in st["tags"]) and len(set(st["tags"])) == len(st["tags"])
              and len(bytes.fromhex(st.get("digest", ""))) == _DIGEST_BYTES)
    except (ValueError, TypeError):
        return None
    return st if ok else None


def state_bytes(gen: int, tags: list[str], digest: bytes) -> bytes:
    return json.dumps({"format": INDEX_FORMAT, "chunk_rows": INDEX_CHUNK_ROWS, "gen": gen,
                       "tags": tags, "digest": digest.hex()}, ensure_ascii=False).encode()


def read_gen(get: Callable[[bytes], bytes | None]) -> int:
    raw = get(_GEN)
    return from_be(raw) if raw else 0


class IndexTxn:
    """The saved index as one member write (one AdminContext) sees and changes it."""

    def __init__(self, ctx: AdminContext, cols: Columns) -> None:
        self.ctx = ctx
        self.gen = read_gen(lambda k: ctx.get(DB_META, k))
        raw = ctx.get(DB_META, INDEX_STATE)
        self.had_state = raw is not None
        st = _index_state(raw)
        # A state of another gen is stale: it is dropped by this op's write (never advanced).
        self.state = st if st is not None and st["gen"] == self.gen else None
        self.vocab: list[str] = list(st["tags"]) if st else []
        with cols.lock:
            self.known = set(self.vocab) | set(cols.tag_bit)

    def room(self, tags: Iterable[str]) -> bool:
        """Whether these tags fit the vocabulary (in memory and saved, with what earlier
        rows of this op took); if so, they are taken."""
        new = {t for t in tags if t not in self.known}
        if len(self.known) + len(new) > TAG_VOCABULARY_MAX:
            return False
        self.known |= new
        return True

    def write(self, recs: Sequence[dict]) -> None:
        """Record that this op wrote these members (their final records): bump gen and
        bring the saved index along, or drop the index state if it cannot be."""
        ctx = self.ctx
        self.gen += 1
        ctx.put(DB_META, _GEN, u64(self.gen))
        if self.state is not None:
            digest = bytes.fromhex(self.state["digest"])
        else:
            # Without a valid state the chunks are only kept if these records are every
            # member there is (the first write to an empty store): then build afresh.
            members = ctx.txn.stat(ctx.db(DB_MEMBERS))["entries"]
            if members != len({r["id"] for r in recs}):
                if self.had_state:
                    ctx.delete(DB_META, INDEX_STATE)
                return
            ctx.txn.drop(ctx.db(DB_INDEX), delete=False)
            self.vocab, digest = [], bytes(_DIGEST_BYTES)
        bit_of = {t: i for i, t in enumerate(self.vocab)}
        by_chunk: dict[int, dict[int, dict]] = {}
        for rec in recs:     # the last record of a member wins
            k, off = divmod(rec["id"] - 1, INDEX_CHUNK_ROWS)
            by_chunk.setdefault(k, {})[off] = rec
        for k, rows in sorted(by_chunk.items()):
            old = ctx.get(DB_INDEX, u64(k))
            if old is None:
                chunk = _Chunk.empty(_n_words(len(bit_of)))
            else:
                try:
                    chunk = _Chunk.decode(k, old).writable()
                except StaleIndex as exc:
                    log.warning("member index: %s; dropped until the next open rebuilds it", exc)
                    ctx.delete(DB_META, INDEX_STATE)
                    return
                digest = _xor(digest, old[:_DIGEST_BYTES])
            chunk.set_many(list(rows), list(rows.values()), bit_of)
            value = chunk.encode(k)
            ctx.put(DB_INDEX, u64(k), value)
            digest = _xor(digest, value[:_DIGEST_BYTES])
        vocab = sorted(bit_of, key=bit_of.__getitem__)
        ctx.put(DB_META, INDEX_STATE, state_bytes(self.gen, vocab, digest))


def load_index(txn, index_db, raw_state: bytes | None, gen: int, n_members: int,
                max_id: int) -> Columns:
    """The columns from the saved index; raises StaleIndex when it does not match the
    stored members in every checked respect."""
    st = _index_state(raw_state)
    if st is None:
        raise StaleIndex("no saved index" if raw_state is None else "the saved index state is unreadable")
    if st["gen"] != gen:
        raise StaleIndex(f"the saved index reflects member write {st['gen']}, the members are at {gen}")
    if index_db is None:
        raise StaleIndex("no member_index database")
    vocab = st["tags"]
    chunks: dict[int, _Chunk] = {}
    digest = bytes(_DIGEST_BYTES)
    for key, value in txn.cursor(db=index_db):
        if len(key) != 8:
            raise StaleIndex("a foreign key in member_index")
        k = from_be(key)
        chunks[k] = _Chunk.decode(k, value)
        digest = _xor(digest, value[:_DIGEST_BYTES])
    if digest != bytes.fromhex(st["digest"]):
        raise StaleIndex("the index chunks do not match the saved index state")
    words = max([_n_words(len(vocab))] + [c.tags.shape[1] for c in chunks.values()])
    rows = max([max_id] + [(k + 1) * INDEX_CHUNK_ROWS for k in chunks])
    cols = Columns(max(1024, rows), words)
    for k, c in chunks.items():
        lo = k * INDEX_CHUNK_ROWS
        hi = lo + INDEX_CHUNK_ROWS
        cols.tags[lo:hi, : c.tags.shape[1]] = c.tags
        cols.store[lo:hi], cols.birthday[lo:hi] = c.store, c.birthday
        cols.name[lo:hi], cols.status[lo:hi] = c.name, c.status
        for off, s in c.long_names.items():
            cols.long_names[lo + off] = s
    # Member ids are dense (1..next_id-1), so these pin the rows to the stored members.
    if (int(np.count_nonzero(cols.status)) != n_members or np.count_nonzero(cols.status[max_id:])
            or int(cols.status.max(initial=0)) > max(MemberStatus)):
        raise StaleIndex(f"the index holds other rows than the {n_members} stored members")
    if any(not 0 < row + 1 <= max_id for row in cols.long_names):
        raise StaleIndex("the index holds a long name of no member")
    for j in range(words):        # no bit past the vocabulary is set
        used = min(64, max(0, len(vocab) - 64 * j))
        if used < 64 and np.any(cols.tags[:, j] & np.uint64(_WORD ^ ((1 << used) - 1))):
            raise StaleIndex("the index holds tag bits outside its vocabulary")
    cols.n = max_id
    cols.tag_bit = {t: i for i, t in enumerate(vocab)}
    return cols


def save_chunks(put: Callable[[int, bytes], None], snap: dict) -> tuple[int, bytes]:
    """Write the whole index of a snapshot as chunks; returns (chunks, XOR of digests)."""
    n, words = snap["n"], snap["tags"].shape[1]
    long_by_chunk: dict[int, dict[int, str]] = {}
    for row, s in snap["long_names"].items():
        long_by_chunk.setdefault(row // INDEX_CHUNK_ROWS, {})[row % INDEX_CHUNK_ROWS] = s
    digest = bytes(_DIGEST_BYTES)
    n_chunks = -(-n // INDEX_CHUNK_ROWS)
    for k in range(n_chunks):
        lo, hi = k * INDEX_CHUNK_ROWS, min(n, (k + 1) * INDEX_CHUNK_ROWS)
        c = _Chunk.empty(words)
        c.tags[: hi - lo], c.store[: hi - lo] = snap["tags"][lo:hi], snap["store"][lo:hi]
        c.birthday[: hi - lo], c.name[: hi - lo] = snap["birthday"][lo:hi], snap["name"][lo:hi]
        c.status[: hi - lo] = snap["status"][lo:hi]
        c.long_names = long_by_chunk.get(k, {})
        value = c.encode(k)
        put(k, value)
        digest = _xor(digest, value[:_DIGEST_BYTES])
    return n_chunks, digest


# --- the store ---------------------------------------------------------------------------
