"""Members: profiles, status, de-duplication, search, batch import and export.

Every change goes through `Engine.admin`, so it runs in the writer's LMDB write
transaction, is journalled (one record of a `MemberOp` type, no card), audited in the
events database with masked before/after values, and idempotent by its 16-byte client id.

Databases (docs/members.md has the reasons):

- members            u64 BE member id -> JSON record (phone and ID number as AES-GCM
                     ciphertext, base64; never the plaintext).
- member_phone       16-byte HMAC blind index of the normalised phone -> u64 BE member id.
- member_idno        16-byte HMAC blind index of the normalised ID number -> u64 BE member id.
- member_meta        b"next_id" -> u64 BE; b"key_check" -> 8 bytes of the PII key's check value;
                     b"gen" -> u64 BE; b"index" -> JSON (the saved index's state, below).
- member_import_rows 16-byte row key (hash of file id and line) -> u64 BE member id, so
                     that a file imported twice creates nothing twice.
- member_index       u64 BE chunk number -> INDEX_CHUNK_ROWS rows of the search index,
                     written in the same transaction as the members they index;
                     member_meta b"gen" (member-writing transactions so far) and
                     b"index" (the state: gen reflected, tag vocabulary, digest) bind
                     it to the members, and anything that does not match is rebuilt.

Search runs on an in-memory columnar index (numpy, one row per member id, loaded from
`member_index` when the store opens, updated after each commit) and joins the engine's card
table read-only (`engine.cards_snapshot()`: member_id, spend_total_fen,
last_visit_s, level, status) for the card-derived conditions.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import csv
import datetime as _dt
import enum
import hashlib
import json
import logging
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

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
from core.rules import loads_bounded

log = logging.getLogger("mms.members")


class MemberStatus(enum.IntEnum):
    ACTIVE = 1
    FROZEN = 2
    CANCELLED = 3



class MemberErrorCode(enum.Enum):
    INVALID = "INVALID"                  # a field is malformed or out of bounds
    NOT_FOUND = "NOT_FOUND"
    PHONE_TAKEN = "PHONE_TAKEN"          # the phone belongs to another member
    ID_NO_TAKEN = "ID_NO_TAKEN"          # the ID number belongs to another member
    STATUS_MOVE = "STATUS_MOVE"          # e.g. freezing a cancelled member
    VERSION_CONFLICT = "VERSION_CONFLICT"  # the record changed since the caller read it
    REFERRER_NOT_FOUND = "REFERRER_NOT_FOUND"
    SELF_REFERRAL = "SELF_REFERRAL"      # a member named as their own referrer
    FILE_INVALID = "FILE_INVALID"        # an import file that cannot be read as its format


class MemberError(Exception):
    def __init__(self, code: MemberErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.field = field


# The engine has no Result for member rules yet; a rejected member op carries this code
# and the MemberErrorCode in its detail ("CODE: message"). See docs/members.md.
# How each member error shows in the journal's result and to gRPC clients; the error
# code itself is the machine-readable reason.
REJECT_RESULT = {
    "INVALID": Result.INVALID_ARGUMENT,
    "NOT_FOUND": Result.NOT_FOUND,
    "PHONE_TAKEN": Result.ALREADY_EXISTS,
    "ID_NO_TAKEN": Result.ALREADY_EXISTS,
    "STATUS_MOVE": Result.FAILED_PRECONDITION,
    "VERSION_CONFLICT": Result.FAILED_PRECONDITION,
    "REFERRER_NOT_FOUND": Result.NOT_FOUND,
    "SELF_REFERRAL": Result.INVALID_ARGUMENT,
    "FILE_INVALID": Result.INVALID_ARGUMENT,
}

_STATUS_MOVES = {
    (MemberStatus.ACTIVE, MemberStatus.FROZEN), (MemberStatus.FROZEN, MemberStatus.ACTIVE),
    (MemberStatus.ACTIVE, MemberStatus.CANCELLED), (MemberStatus.FROZEN, MemberStatus.CANCELLED),
    (MemberStatus.CANCELLED, MemberStatus.ACTIVE),  # restore
}

# --- bounds ------------------------------------------------------------------------------
NAME_CHARS_MAX = 40
ADDRESS_CHARS_MAX = 200
PHOTO_CHARS_MAX = 512          # an object-store key or URL, never the image itself
PREFS_MAX = 16                 # preferences / hobbies per member
PREF_CHARS_MAX = 32
CUSTOM_FIELDS_MAX = 32
CUSTOM_KEY_CHARS_MAX = 32
CUSTOM_VALUE_CHARS_MAX = 256
TAGS_MAX = 32                  # tags on one member
TAG_CHARS_MAX = 32
# Distinct tags across the chain: each costs one bit per member in memory (256 tags are
# 32 MB at 1,000,000 members); past this, segments belong in a rule, not a tag.
TAG_VOCABULARY_MAX = 256
STORE_ID_MAX = 2**32 - 1
# Bytes of the casefolded name kept in the search index (8 CJK or 24 Latin characters);
# longer names are also kept whole in a side dict and matched there.
NAME_KEY_BYTES = 24
SEARCH_LIMIT_MAX = 1000
# Rows written by one import commit: bounds the writer's pause (about 30 ms here) that
# swipes wait behind, while keeping the per-commit fsync cost small per row.
IMPORT_CHUNK_ROWS = 1000
# Errors kept in an import report; the count of all errors is always exact.
IMPORT_ERRORS_MAX = 100_000
# Excel's sheet limit, minus the header row.
XLSX_ROWS_MAX = 1_048_575
# Bounds on an import file besides its size in bytes (the server's IMPORT_BYTES_MAX):
# columns in its header, characters in one CSV cell (the csv module's own limit, named),
# and what an .xlsx (a zip archive) may unpack to, so that a small upload cannot make the
# server inflate gigabytes. A million members unpack to about 400 MB of sheet XML.
IMPORT_COLUMNS_MAX = 256
CSV_CELL_CHARS_MAX = 131_072
XLSX_UNPACKED_BYTES_MAX = 2 * 1024**3
XLSX_ENTRIES_MAX = 10_000
# The JSON of a `custom` import column: an object of names to values, one level deep.
CUSTOM_JSON_CHARS_MAX = 16_384
BIRTH_YEAR_MIN = 1900

SOURCES = ("store", "call_centre", "website", "app", "mini_program", "import")
_SOURCE_ALIASES = {"门店": "store", "呼叫中心": "call_centre", "网站": "website", "app": "app",
                   "小程序": "mini_program", "导入": "import", "call_center": "call_centre",
                   "pos": "store", "web": "website"}
_GENDERS = {"m": "M", "male": "M", "男": "M", "f": "F", "female": "F", "女": "F",
            "u": "U", "": "U", "unknown": "U", "未知": "U"}

# Fields an operator may set; PII ones are stored encrypted.
PROFILE_FIELDS = ("name", "phone", "id_no", "gender", "birthday", "address", "photo",
                  "source", "prefs", "custom", "tags", "referrer_id", "home_store_id")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_DB_MEMBERS = "members"
_DB_PHONE = "member_phone"
_DB_IDNO = "member_idno"
_DB_META = "member_meta"
_DB_ROWS = "member_import_rows"
_DB_INDEX = "member_index"
_PHONE_KIND = b"phone"
_IDNO_KIND = b"id_no"


# --- validation (pure: runs outside the writer) -------------------------------------------

def _text(name: str, value: object, max_chars: int, *, required: bool = False) -> str:
    s = "" if value is None else str(value).strip()
    if required and not s:
        raise MemberError(MemberErrorCode.INVALID, f"{name} is required", name)
    if len(s) > max_chars:
        raise MemberError(MemberErrorCode.INVALID, f"{name} is longer than {max_chars} characters", name)
    if _CONTROL.search(s):
        raise MemberError(MemberErrorCode.INVALID, f"{name} holds control characters", name)
    return s


def _int(name: str, value: object, lo: int, hi: int) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        text = str(value).strip()
        if not is_ascii_digits(text):
            raise MemberError(MemberErrorCode.INVALID,
                              f"{name} is not a whole number in digits 0-9", name)
        value = int(text)
    v = value
    if not lo <= v <= hi:
        raise MemberError(MemberErrorCode.INVALID, f"{name} must be {lo}..{hi}", name)
    return v


def _birthday(value: object, today: _dt.date) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, _dt.datetime):
        d = value.date()
    elif isinstance(value, _dt.date):
        d = value
    else:
        s = str(value).strip().replace("/", "-").replace(".", "-")
        try:
            d = _dt.date.fromisoformat(s) if len(s) == 10 else _dt.datetime.strptime(s, "%Y-%m-%d").date()
        except ValueError:
            raise MemberError(MemberErrorCode.INVALID, "birthday is not a date (YYYY-MM-DD)",
                              "birthday") from None
    if d.year < BIRTH_YEAR_MIN or d > today:
        raise MemberError(MemberErrorCode.INVALID, f"birthday must be {BIRTH_YEAR_MIN}-01-01..today",
                          "birthday")
    return d.isoformat()


def _string_list(name: str, value: object, n_max: int, chars_max: int) -> list[str]:
    if value is None or value == "":
        return []
    items = re.split(r"[;,|；，]", value) if isinstance(value, str) else list(value)  # type: ignore[arg-type]
    out: list[str] = []
    for item in items:
        s = _text(name, item, chars_max)
        if s and s not in out:
            out.append(s)
    if len(out) > n_max:
        raise MemberError(MemberErrorCode.INVALID, f"at most {n_max} {name}", name)
    return out


def validate_profile(fields: dict, *, partial: bool, today: _dt.date | None = None) -> dict:
    """Normalised profile fields; raises MemberError(INVALID) naming the first bad field.
    partial=True (an update) takes only the fields given; None clears a field."""
    today = today or _dt.date.today()
    unknown = set(fields) - set(PROFILE_FIELDS)
    if unknown:
        raise MemberError(MemberErrorCode.INVALID, f"unknown fields: {sorted(unknown)}",
                          sorted(unknown)[0])
    out: dict = {}
    for name in PROFILE_FIELDS:
        if partial and name not in fields:
            continue
        v = fields.get(name)
        if name == "name":
            out[name] = _text(name, v, NAME_CHARS_MAX, required=True)
        elif name == "phone":
            try:
                out[name] = normalise_phone(v) if v not in (None, "") else ""
            except PiiError as exc:
                raise MemberError(MemberErrorCode.INVALID, str(exc), name) from None
        elif name == "id_no":
            try:
                out[name] = normalise_id_no(v) if v not in (None, "") else ""
            except PiiError as exc:
                raise MemberError(MemberErrorCode.INVALID, str(exc), name) from None
        elif name == "gender":
            g = _GENDERS.get(str(v or "").strip().lower())
            if g is None:
                raise MemberError(MemberErrorCode.INVALID, "gender is M, F or U", name)
            out[name] = g
        elif name == "birthday":
            out[name] = _birthday(v, today)
        elif name == "address":
            out[name] = _text(name, v, ADDRESS_CHARS_MAX)
        elif name == "photo":
            out[name] = _text(name, v, PHOTO_CHARS_MAX)
        elif name == "source":
            s = str(v or "").strip()
            s = _SOURCE_ALIASES.get(s.lower(), _SOURCE_ALIASES.get(s, s.lower())) if s else "store"
            if s not in SOURCES:
                raise MemberError(MemberErrorCode.INVALID, f"source is one of {SOURCES}", name)
            out[name] = s
        elif name == "prefs":
            out[name] = _string_list(name, v, PREFS_MAX, PREF_CHARS_MAX)
        elif name == "tags":
            out[name] = _string_list(name, v, TAGS_MAX, TAG_CHARS_MAX)
        elif name == "custom":
            c = v or {}
            if not isinstance(c, dict) or len(c) > CUSTOM_FIELDS_MAX:
                raise MemberError(MemberErrorCode.INVALID,
                                  f"custom is a dict of at most {CUSTOM_FIELDS_MAX} fields", name)
            out[name] = {_text("custom key", k, CUSTOM_KEY_CHARS_MAX, required=True):
                         _text("custom value", cv, CUSTOM_VALUE_CHARS_MAX) for k, cv in c.items()}
        elif name == "referrer_id":
            out[name] = _int(name, v, 0, 2**63 - 1)
        elif name == "home_store_id":
            out[name] = _int(name, v, 0, STORE_ID_MAX)
    return out


# --- records -----------------------------------------------------------------------------

def _aad(member_id: int, field_name: str) -> bytes:
    return u64(member_id) + field_name.encode()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


@dataclass
class MemberResult:
    member_id: int
    replayed: bool
    seq: int
    value: dict = field(default_factory=dict)


@dataclass
class ImportError_:
    line: int
    reason: str


@dataclass
class ImportReport:
    file_id: str
    rows: int = 0
    created: int = 0
    already_imported: int = 0
    n_errors: int = 0
    errors: list[ImportError_] = field(default_factory=list)
    # line -> member id of every row created now or by an earlier import of the same file.
    member_ids: dict[int, int] = field(default_factory=dict)

    def error(self, line: int, reason: str) -> None:
        self.n_errors += 1
        if len(self.errors) < IMPORT_ERRORS_MAX:
            self.errors.append(ImportError_(line, reason))

    def write_errors_csv(self, path: str) -> None:
        with open(path, "w", newline="", encoding="utf-8-sig") as f:
            w = csv.writer(f)
            w.writerow(["line", "reason"])
            for e in sorted(self.errors, key=lambda e: e.line):
                w.writerow([e.line, e.reason])


@dataclass
class MemberQuery:
    """Conditions are ANDed; None (or empty) means no condition."""

    phone: str | None = None
    id_no: str | None = None
    name: str | None = None
    name_contains: bool = False      # False: the name starts with `name`
    card_no: int | None = None
    level: int | None = None         # any of the member's live cards is at this level
    tags: Sequence[str] = ()         # every one of these tags
    store_id: int | None = None      # home store
    spend_min_fen: int | None = None  # cumulative spend over all the member's cards
    spend_max_fen: int | None = None
    last_visit_from_s: int | None = None  # latest visit over the member's cards
    last_visit_to_s: int | None = None
    status: MemberStatus | None = None
    limit: int = 50
    offset: int = 0


@dataclass
class SearchResult:
    total: int
    members: list[dict]


# --- the in-memory columnar index ----------------------------------------------------------

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


class _Columns:
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
_INDEX_STATE = b"index"
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


def _state_bytes(gen: int, tags: list[str], digest: bytes) -> bytes:
    return json.dumps({"format": INDEX_FORMAT, "chunk_rows": INDEX_CHUNK_ROWS, "gen": gen,
                       "tags": tags, "digest": digest.hex()}, ensure_ascii=False).encode()


def _read_gen(get: Callable[[bytes], bytes | None]) -> int:
    raw = get(_GEN)
    return from_be(raw) if raw else 0


class _IndexTxn:
    """The saved index as one member write (one AdminContext) sees and changes it."""

    def __init__(self, ctx: AdminContext, cols: _Columns) -> None:
        self.ctx = ctx
        self.gen = _read_gen(lambda k: ctx.get(_DB_META, k))
        raw = ctx.get(_DB_META, _INDEX_STATE)
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
        ctx.put(_DB_META, _GEN, u64(self.gen))
        if self.state is not None:
            digest = bytes.fromhex(self.state["digest"])
        else:
            # Without a valid state the chunks are only kept if these records are every
            # member there is (the first write to an empty store): then build afresh.
            members = ctx.txn.stat(ctx.db(_DB_MEMBERS))["entries"]
            if members != len({r["id"] for r in recs}):
                if self.had_state:
                    ctx.delete(_DB_META, _INDEX_STATE)
                return
            ctx.txn.drop(ctx.db(_DB_INDEX), delete=False)
            self.vocab, digest = [], bytes(_DIGEST_BYTES)
        bit_of = {t: i for i, t in enumerate(self.vocab)}
        by_chunk: dict[int, dict[int, dict]] = {}
        for rec in recs:     # the last record of a member wins
            k, off = divmod(rec["id"] - 1, INDEX_CHUNK_ROWS)
            by_chunk.setdefault(k, {})[off] = rec
        for k, rows in sorted(by_chunk.items()):
            old = ctx.get(_DB_INDEX, u64(k))
            if old is None:
                chunk = _Chunk.empty(_n_words(len(bit_of)))
            else:
                try:
                    chunk = _Chunk.decode(k, old).writable()
                except StaleIndex as exc:
                    log.warning("member index: %s; dropped until the next open rebuilds it", exc)
                    ctx.delete(_DB_META, _INDEX_STATE)
                    return
                digest = _xor(digest, old[:_DIGEST_BYTES])
            chunk.set_many(list(rows), list(rows.values()), bit_of)
            value = chunk.encode(k)
            ctx.put(_DB_INDEX, u64(k), value)
            digest = _xor(digest, value[:_DIGEST_BYTES])
        vocab = sorted(bit_of, key=bit_of.__getitem__)
        ctx.put(_DB_META, _INDEX_STATE, _state_bytes(self.gen, vocab, digest))


def _load_index(txn, index_db, raw_state: bytes | None, gen: int, n_members: int,
                max_id: int) -> _Columns:
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
    cols = _Columns(max(1024, rows), words)
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


def _save_chunks(put: Callable[[int, bytes], None], snap: dict) -> tuple[int, bytes]:
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

class MemberStore:
    """Members on top of an Engine. Mutations block until durable and return a
    MemberResult or raise MemberError; reads never wait for the writer."""

    def __init__(self, engine: Engine, *, key: bytes | None = None,
                 today: Callable[[], _dt.date] | None = None) -> None:
        self.engine = engine
        self.cipher = PiiCipher(key if key is not None else load_key(engine.store.path))
        self._today = today or (lambda: _dt.datetime.fromtimestamp(engine.clock()).date())
        self._read_dbs: dict[str, object] = {}
        self._cols = _Columns()
        # How the search index was had at open: "empty", "loaded" (the saved index), or
        # "rebuilt: <why the saved one was not used>".
        self.index_source = "empty"
        self._open_handles()
        self._load()

    # --- opening -------------------------------------------------------------------------

    _ALL_DBS = (_DB_MEMBERS, _DB_PHONE, _DB_IDNO, _DB_META, _DB_ROWS, _DB_INDEX)

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

    def _load(self) -> None:
        """The search index: the saved one when it matches the stored members, else a
        full rebuild from `members`, which is then saved (MEMBER_INDEX op)."""
        reason = None
        with self._read() as txn:
            meta = self._rdb(txn, _DB_META)
            check = txn.get(b"key_check", db=meta) if meta is not None else None
            if check is not None and check != self.cipher.key_check:
                raise PiiError("the PII key differs from the one the members were stored under")
            db = self._rdb(txn, _DB_MEMBERS)
            n_members, max_id = 0, 0
            if db is not None:
                n_members = txn.stat(db)["entries"]
                cur = txn.cursor(db=db)
                max_id = from_be(cur.key()) if cur.last() else 0
            gen = _read_gen(lambda k: txn.get(k, db=meta)) if meta is not None else 0
            raw_state = txn.get(_INDEX_STATE, db=meta) if meta is not None else None
            if n_members == 0 and raw_state is None:
                return
            try:
                self._cols = _load_index(txn, self._rdb(txn, _DB_INDEX), raw_state, gen,
                                         n_members, max_id)
                self.index_source = "loaded"
                return
            except StaleIndex as exc:
                reason = str(exc)
            self._cols = self._rebuild(txn)
        self.index_source = f"rebuilt: {reason}"
        log.warning("member search index rebuilt (%s): %d members", reason, self._cols.n)
        self._save_index(gen, reason)

    def _rebuild(self, txn) -> _Columns:
        """The index from every stored member record (about 20 s at 1,000,000 members)."""
        cols = _Columns()
        db = self._rdb(txn, _DB_MEMBERS)
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
            if _read_gen(lambda k: ctx.get(_DB_META, k)) != gen:
                ctx.reject(Result.FAILED_PRECONDITION, "members changed while the index was rebuilt")
            ctx.txn.drop(ctx.db(_DB_INDEX), delete=False)
            snap = self._cols.snapshot()
            n_chunks, digest = _save_chunks(lambda k, v: ctx.put(_DB_INDEX, u64(k), v), snap)
            vocab = sorted(snap["tag_bit"], key=snap["tag_bit"].__getitem__)
            ctx.put(_DB_META, _INDEX_STATE, _state_bytes(gen, vocab, digest))
            ctx.detail = {"reason": reason, "rows": snap["n"], "chunks": n_chunks}
            return {"rows": snap["n"], "chunks": n_chunks}

        res = self._submit_raw(new_client_id(), MemberOp.MEMBER_INDEX, build, 0, 0)
        if res.code != Result.OK:
            log.warning("member search index not saved: %s", res.detail)
        return res.code == Result.OK

    # --- reads ---------------------------------------------------------------------------

    def _record(self, txn, member_id: int) -> dict | None:
        db = self._rdb(txn, _DB_MEMBERS)
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
        return self._id_by_blind(_DB_PHONE, self.cipher.blind(_PHONE_KIND, p))

    def id_by_id_no(self, id_no: str) -> int | None:
        try:
            s = normalise_id_no(id_no)
        except PiiError:
            return None
        return self._id_by_blind(_DB_IDNO, self.cipher.blind(_IDNO_KIND, s))

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

    def _index(self, ctx: AdminContext) -> _IndexTxn:
        """This op's view of the saved index (made on first use in the op)."""
        itx = getattr(ctx, "_member_index", None)
        if itx is None:
            itx = _IndexTxn(ctx, self._cols)
            ctx._member_index = itx  # type: ignore[attr-defined]
        return itx

    def _ensure_key_check(self, ctx: AdminContext) -> None:
        if ctx.get(_DB_META, b"key_check") is None:
            ctx.put(_DB_META, b"key_check", self.cipher.key_check)

    def _next_id(self, ctx: AdminContext, n: int) -> int:
        raw = ctx.get(_DB_META, b"next_id")
        first = from_be(raw) if raw else 1
        ctx.put(_DB_META, b"next_id", u64(first + n))
        return first

    def _claim(self, ctx: AdminContext, db: str, kind: bytes, value: str, member_id: int,
               code: MemberErrorCode) -> str | None:
        """Point the blind index of value at member_id; the reason if another holds it."""
        blind = self.cipher.blind(kind, value)
        held = ctx.get(db, blind)
        if held is not None and from_be(held) != member_id:
            label = "phone" if kind == _PHONE_KIND else "ID number"
            shown = mask_phone(value) if kind == _PHONE_KIND else mask_id_no(value)
            return f"{code.value}: {label} {shown} belongs to member {from_be(held)}"
        ctx.put(db, blind, u64(member_id))
        return None

    def _write_new(self, ctx: AdminContext, member_id: int, prof: dict) -> tuple[dict | None, str | None]:
        """Check and write one new member; nothing is written when a reason is returned."""
        if prof.get("referrer_id") == member_id:
            return None, f"{MemberErrorCode.SELF_REFERRAL.value}: referrer_id: a member cannot refer themselves"
        if prof.get("referrer_id") and (prof["referrer_id"] > member_id
                                        or ctx.get(_DB_MEMBERS, u64(prof["referrer_id"])) is None):
            return None, f"{MemberErrorCode.REFERRER_NOT_FOUND.value}: member {prof['referrer_id']} not found"
        for name, db, kind, code in (("phone", _DB_PHONE, _PHONE_KIND, MemberErrorCode.PHONE_TAKEN),
                                     ("id_no", _DB_IDNO, _IDNO_KIND, MemberErrorCode.ID_NO_TAKEN)):
            if prof.get(name):
                held = ctx.get(db, self.cipher.blind(kind, prof[name]))
                if held is not None:
                    label = "phone" if name == "phone" else "ID number"
                    shown = mask_phone(prof[name]) if name == "phone" else mask_id_no(prof[name])
                    return None, f"{code.value}: {label} {shown} belongs to member {from_be(held)}"
        if not self._index(ctx).room(prof.get("tags", ())):
            return None, f"{MemberErrorCode.INVALID.value}: more than {TAG_VOCABULARY_MAX} distinct tags"
        for name, db, kind, code in (("phone", _DB_PHONE, _PHONE_KIND, MemberErrorCode.PHONE_TAKEN),
                                     ("id_no", _DB_IDNO, _IDNO_KIND, MemberErrorCode.ID_NO_TAKEN)):
            if prof.get(name):
                self._claim(ctx, db, kind, prof[name], member_id, code)
        rec = self._encode(member_id, prof, status=MemberStatus.ACTIVE, created_s=ctx.now,
                           updated_s=ctx.now, version=1)
        ctx.put(_DB_MEMBERS, u64(member_id), json.dumps(rec, ensure_ascii=False).encode())
        return rec, None

    def _encode(self, member_id: int, prof: dict, *, status: MemberStatus, created_s: int,
                updated_s: int, version: int) -> dict:
        rec = {"id": member_id}
        for name in PROFILE_FIELDS:
            if name in ("phone", "id_no"):
                v = prof.get(name, "")
                rec[name + "_enc"] = _b64(self.cipher.encrypt(v, _aad(member_id, name))) if v else ""
            else:
                rec[name] = prof.get(name, _EMPTY[name])
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
            raw = ctx.get(_DB_MEMBERS, u64(member_id))
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
                if ctx.get(_DB_MEMBERS, u64(ref)) is None:
                    self._reject(ctx, MemberErrorCode.REFERRER_NOT_FOUND,
                                 f"referrer_id: member {ref} not found")
            if "tags" in changed and not self._index(ctx).room(changed["tags"]):
                self._reject(ctx, MemberErrorCode.INVALID, f"more than {TAG_VOCABULARY_MAX} distinct tags")
            for name, db, kind, code in (("phone", _DB_PHONE, _PHONE_KIND, MemberErrorCode.PHONE_TAKEN),
                                         ("id_no", _DB_IDNO, _IDNO_KIND, MemberErrorCode.ID_NO_TAKEN)):
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
                ctx.put(_DB_MEMBERS, u64(member_id), json.dumps(new, ensure_ascii=False).encode())
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
        reason = _text("reason", reason, ADDRESS_CHARS_MAX)

        def build(ctx: AdminContext):
            raw = ctx.get(_DB_MEMBERS, u64(member_id))
            if raw is None:
                self._reject(ctx, MemberErrorCode.NOT_FOUND, f"member {member_id} not found")
            rec = json.loads(raw)
            before = MemberStatus[rec["status"].upper()]
            if (before, status) not in _STATUS_MOVES:
                self._reject(ctx, MemberErrorCode.STATUS_MOVE,
                             f"member {member_id}: {before.name} -> {status.name} is not allowed")
            rec.update(status=status.name.lower(), updated_s=ctx.now, version=rec["version"] + 1)
            ctx.put(_DB_MEMBERS, u64(member_id), json.dumps(rec, ensure_ascii=False).encode())
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
                    store_id: int = 0) -> ImportReport:
        """rows: (line number, profile dict) pairs, or (line, reason) for rows the reader
        could not parse. Every row is validated whole before anything is written; valid
        rows go in atomic chunks of chunk_rows through the writer."""
        if not 1 <= chunk_rows <= 10 * IMPORT_CHUNK_ROWS:
            raise ValueError(f"chunk_rows 1..{10 * IMPORT_CHUNK_ROWS}")
        report = ImportReport(file_id)
        seen: dict[bytes, int] = {}   # blind index -> line, for duplicates inside the file
        today = self._today()
        chunk: list[tuple[int, bytes, dict]] = []
        for line, row in rows:
            report.rows += 1
            if isinstance(row, str):
                report.error(line, row)
                continue
            try:
                prof = validate_profile(row, partial=False, today=today)
            except MemberError as exc:
                report.error(line, exc.message)
                continue
            if not prof.get("home_store_id") and store_id:
                prof["home_store_id"] = store_id
            if not row.get("source"):
                prof["source"] = "import"
            dup = None
            for name, kind in (("phone", _PHONE_KIND), ("id_no", _IDNO_KIND)):
                if prof.get(name):
                    b = self.cipher.blind(kind, prof[name])
                    if b in seen:
                        dup = f"{name} repeats line {seen[b]}"
                        break
            if dup:
                report.error(line, dup)
                continue
            for name, kind in (("phone", _PHONE_KIND), ("id_no", _IDNO_KIND)):
                if prof.get(name):
                    seen[self.cipher.blind(kind, prof[name])] = line
            chunk.append((line, _row_key(file_id, line), prof))
            if len(chunk) >= chunk_rows:
                self._import_chunk(chunk, file_id, report, operator_id, store_id)
                chunk = []
        if chunk:
            self._import_chunk(chunk, file_id, report, operator_id, store_id)
        return report

    def _import_chunk(self, chunk: list[tuple[int, bytes, dict]], file_id: str,
                      report: ImportReport, operator_id: int, store_id: int) -> None:
        first_line, last_line = chunk[0][0], chunk[-1][0]
        client_id = hashlib.sha256(f"mms-import-chunk:{file_id}:{first_line}:{last_line}:{len(chunk)}"
                                   .encode()).digest()[:16]

        def build(ctx: AdminContext):
            self._ensure_key_check(ctx)
            raw = ctx.get(_DB_META, b"next_id")
            next_id = from_be(raw) if raw else 1
            created: list[dict] = []
            outcome: list = []        # per row: member id created, [id] existing, or reason
            for _line, row_key, prof in chunk:
                held = ctx.get(_DB_ROWS, row_key)
                if held is not None:
                    outcome.append([from_be(held)])
                    continue
                rec, reason = self._write_new(ctx, next_id, prof)
                if reason is not None:
                    outcome.append(reason)
                    continue
                ctx.put(_DB_ROWS, row_key, u64(next_id))
                created.append(rec)
                outcome.append(next_id)
                next_id += 1
            ctx.put(_DB_META, b"next_id", u64(next_id))
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
                yield [_cell(p[c]) for c in EXPORT_COLUMNS]

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


EXPORT_COLUMNS = ("member_id", "name", "phone", "id_no", "gender", "birthday", "address",
                  "photo", "source", "prefs", "tags", "custom", "referrer_id", "home_store_id",
                  "status", "created_s", "updated_s")

_EMPTY = {"name": "", "gender": "U", "birthday": "", "address": "", "photo": "", "source": "store",
          "prefs": [], "custom": {}, "tags": [], "referrer_id": 0, "home_store_id": 0}


def _cell(v: object) -> object:
    if isinstance(v, list):
        return ";".join(v)
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False) if v else ""
    return v


def _row_key(file_id: str, line: int) -> bytes:
    return hashlib.sha256(f"mms-import-row:{file_id}:{line}".encode()).digest()[:16]


# --- readers -------------------------------------------------------------------------------

# Column headings accepted in import files (case-insensitive), English and Chinese.
COLUMN_ALIASES = {
    "name": "name", "姓名": "name", "phone": "phone", "mobile": "phone", "手机": "phone",
    "手机号": "phone", "电话": "phone", "id_no": "id_no", "证件号": "id_no", "身份证号": "id_no",
    "gender": "gender", "性别": "gender", "birthday": "birthday", "生日": "birthday",
    "address": "address", "地址": "address", "photo": "photo", "照片": "photo",
    "source": "source", "来源": "source", "prefs": "prefs", "偏好": "prefs", "爱好": "prefs",
    "tags": "tags", "标签": "tags", "referrer_id": "referrer_id", "推荐人": "referrer_id",
    "home_store_id": "home_store_id", "store_id": "home_store_id", "门店": "home_store_id",
    "custom": "custom",
}
CUSTOM_PREFIX = "custom."


def _row_dict(header: list[str], values: Sequence[object]) -> dict | str:
    if len(values) > len(header) and any(v not in (None, "") for v in values[len(header):]):
        return f"{len(values)} cells, the header has {len(header)}"
    prof: dict = {}
    custom: dict = {}
    for h, v in zip(header, values, strict=False):
        if v is None or v == "":
            continue
        if h.startswith(CUSTOM_PREFIX):
            custom[h[len(CUSTOM_PREFIX):]] = v if isinstance(v, str) else str(v)
        elif h == "custom":
            try:
                doc = (loads_bounded(v, "custom", chars_max=CUSTOM_JSON_CHARS_MAX, depth_max=1)
                       if isinstance(v, str) else {})
            except ValueError as e:
                return str(e)
            if not isinstance(doc, dict):
                return "custom is not a JSON object"
            custom.update(doc)
        elif h:
            prof[h] = v
    if custom:
        prof["custom"] = custom
    return prof


def _header(cells: Sequence[object]) -> list[str]:
    if len(cells) > IMPORT_COLUMNS_MAX:
        raise _file_invalid(f"the header has {len(cells)} columns, at most {IMPORT_COLUMNS_MAX}")
    out = []
    for c in cells:
        s = str(c or "").strip()
        if s.lower().startswith(CUSTOM_PREFIX):
            out.append(CUSTOM_PREFIX + s[len(CUSTOM_PREFIX):])
            continue
        key = COLUMN_ALIASES.get(s.lower(), COLUMN_ALIASES.get(s))
        if key is None and s:
            raise MemberError(MemberErrorCode.INVALID, f"unknown column {s!r}")
        out.append(key or "")
    if "name" not in out:
        raise MemberError(MemberErrorCode.INVALID, "the header has no name column")
    return out


def _file_invalid(message: str) -> MemberError:
    return MemberError(MemberErrorCode.FILE_INVALID, message, "file")


def _encoding(path: str) -> str:
    """UTF-8 (with or without BOM) or, failing that, GB18030 (what Excel writes on a
    Chinese Windows); FILE_INVALID when the file is neither. The whole file is decoded
    here, before any row is imported, so a bad byte never stops an import midway."""
    for encoding, name in (("utf-8", "utf-8-sig"), ("gb18030", "gb18030")):
        dec = codecs.getincrementaldecoder(encoding)()
        offset = 0
        with open(path, "rb") as f:
            try:
                for block in iter(lambda: f.read(1 << 20), b""):
                    dec.decode(block)
                    offset += len(block)
                dec.decode(b"", final=True)
                return name
            except UnicodeDecodeError as e:
                bad = offset + max(0, e.start)
        if encoding == "gb18030":
            raise _file_invalid(f"the file is neither UTF-8 nor GB18030 text (byte {bad} "
                                "cannot be read in either); save the CSV as UTF-8")
    raise AssertionError("unreachable")


def _csv_rows(f) -> Iterator[tuple[int, list[str]]]:
    """(line where the row starts, cells) per row; FILE_INVALID on malformed CSV."""
    reader = csv.reader(f)
    start = 1
    while True:
        try:
            values = next(reader, None)
        except csv.Error as e:
            why = (f"a cell is longer than {CSV_CELL_CHARS_MAX} characters"
                   if "field limit" in str(e) else "it is not well-formed CSV")
            raise _file_invalid(f"line {reader.line_num}: {why}") from None
        if values is None:
            return
        yield start, values
        start = reader.line_num + 1


def read_csv(path: str) -> Iterator[tuple[int, dict | str]]:
    """(line, profile) per data row; line is the file's line number where the row starts.
    The file is checked whole (encoding, CSV syntax) before the first row is given."""
    encoding = _encoding(path)
    with open(path, newline="", encoding=encoding) as f:
        for _ in _csv_rows(f):
            pass
    with open(path, newline="", encoding=encoding) as f:
        rows = _csv_rows(f)
        first = next(rows, None)
        header = _header(first[1] if first else [])
        for line, values in rows:
            if not any(v.strip() for v in values):
                continue
            yield line, _row_dict(header, values)


def _check_xlsx(path: str) -> None:
    """An .xlsx is a zip archive: refuse one that is not, or that would unpack past the
    bounds, before openpyxl reads it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise _file_invalid("the .xlsx file is not an Excel workbook (not a zip archive); "
                            "save it from Excel as .xlsx, or upload CSV") from None
    if len(infos) > XLSX_ENTRIES_MAX:
        raise _file_invalid(f"the .xlsx archive holds {len(infos)} parts, at most "
                            f"{XLSX_ENTRIES_MAX}")
    unpacked = sum(i.file_size for i in infos)
    if unpacked > XLSX_UNPACKED_BYTES_MAX:
        raise _file_invalid(f"the .xlsx file unpacks to {unpacked} bytes, at most "
                            f"{XLSX_UNPACKED_BYTES_MAX}; split it or upload CSV")


def read_xlsx(path: str) -> Iterator[tuple[int, dict | str]]:
    """(row number, profile) per data row of the first sheet."""
    import openpyxl

    _check_xlsx(path)
    damaged = "the .xlsx file is damaged or not a workbook openpyxl can read"
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except MemberError:
        raise
    except Exception:  # a hostile file can break the reader in any of its layers
        raise _file_invalid(damaged) from None
    try:
        if not wb.worksheets:
            raise _file_invalid("the workbook has no sheet")
        it = wb.worksheets[0].iter_rows(values_only=True)
        line = 1
        while True:
            try:
                values = next(it, None)
            except Exception:
                raise _file_invalid(f"row {line}: {damaged}") from None
            if values is None:
                if line == 1:
                    _header(())  # an empty sheet: no header, which _header refuses
                return
            if line == 1:
                header = _header(values)
            elif any(v not in (None, "") for v in values):
                cells = [v.isoformat()[:10] if isinstance(v, (_dt.date, _dt.datetime)) else v
                         for v in values]
                yield line, _row_dict(header, cells)
            line += 1
    finally:
        wb.close()


def write_csv(path: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


__all__ = [
    "EXPORT_COLUMNS", "ImportReport", "MemberError", "MemberErrorCode", "MemberOp",
    "MemberQuery", "MemberResult", "MemberStatus", "MemberStore", "SearchResult",
    "read_csv", "read_xlsx", "validate_profile",
]
