"""Members: the profile rules (what a field may hold, the limits), the errors, the result
types, and the names of the members databases (the package docstring lists them)."""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import enum
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.domain.pii import (
    PiiError,
    normalise_id_no,
    normalise_phone,
)
from core.engine.storage import u64
from core.records import Result, is_ascii_digits

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

STATUS_MOVES = {
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
# A line of an import CSV (core.domain.textlines.BoundedLines): a longer one refuses the file
# without being held whole (an upload of IMPORT_BYTES_MAX in one line was read whole, a
# few GB as str). Far above any member row (IMPORT_COLUMNS_MAX cells of a few hundred
# characters); a quoted cell across lines is bounded by CSV_CELL_CHARS_MAX.
CSV_LINE_CHARS_MAX = 1 << 20
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

DB_MEMBERS = "members"
DB_PHONE = "member_phone"
DB_IDNO = "member_idno"
DB_META = "member_meta"
DB_ROWS = "member_import_rows"
DB_INDEX = "member_index"
PHONE_KIND = b"phone"
IDNO_KIND = b"id_no"


# --- validation (pure: runs outside the writer) -------------------------------------------

def text_field(name: str, value: object, max_chars: int, *, required: bool = False) -> str:
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
        s = text_field(name, item, chars_max)
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
            out[name] = text_field(name, v, NAME_CHARS_MAX, required=True)
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
            out[name] = text_field(name, v, ADDRESS_CHARS_MAX)
        elif name == "photo":
            out[name] = text_field(name, v, PHOTO_CHARS_MAX)
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
            out[name] = {text_field("custom key", k, CUSTOM_KEY_CHARS_MAX, required=True):
                         text_field("custom value", cv, CUSTOM_VALUE_CHARS_MAX) for k, cv in c.items()}
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
    # Rows that updated a member (its member_id, or found by phone or ID number).
    updated: int = 0
    # Rows applied by an earlier import of the same file (created or updated then).
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
