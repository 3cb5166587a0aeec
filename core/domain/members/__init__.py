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

The package: `validate` (profile rules, limits, errors, result types), `index` (the search
index), `store` (MemberStore), `files` (CSV and .xlsx). This module re-exports the public
names, so `from core.domain.members import MemberStore` keeps working.
"""

from core.domain.members.files import (  # noqa: F401
    COLUMN_ALIASES,
    CUSTOM_PREFIX,
    EXPORT_COLUMNS,
    read_csv,
    read_xlsx,
    write_csv,
)
from core.domain.members.index import (  # noqa: F401
    INDEX_CHUNK_ROWS,
    INDEX_FORMAT,
    StaleIndex,
)
from core.domain.members.store import (  # noqa: F401
    MemberStore,
)
from core.domain.members.validate import (  # noqa: F401
    ADDRESS_CHARS_MAX,
    BIRTH_YEAR_MIN,
    CSV_CELL_CHARS_MAX,
    CUSTOM_FIELDS_MAX,
    CUSTOM_JSON_CHARS_MAX,
    CUSTOM_KEY_CHARS_MAX,
    CUSTOM_VALUE_CHARS_MAX,
    IMPORT_CHUNK_ROWS,
    IMPORT_COLUMNS_MAX,
    IMPORT_ERRORS_MAX,
    NAME_CHARS_MAX,
    NAME_KEY_BYTES,
    PHOTO_CHARS_MAX,
    PREF_CHARS_MAX,
    PREFS_MAX,
    PROFILE_FIELDS,
    REJECT_RESULT,
    SEARCH_LIMIT_MAX,
    SOURCES,
    STORE_ID_MAX,
    TAG_CHARS_MAX,
    TAG_VOCABULARY_MAX,
    TAGS_MAX,
    XLSX_ENTRIES_MAX,
    XLSX_ROWS_MAX,
    XLSX_UNPACKED_BYTES_MAX,
    ImportError_,
    ImportReport,
    MemberError,
    MemberErrorCode,
    MemberQuery,
    MemberResult,
    MemberStatus,
    SearchResult,
    validate_profile,
)
from core.records import MemberOp  # noqa: F401

__all__ = [
    "EXPORT_COLUMNS", "ImportReport", "MemberError", "MemberErrorCode", "MemberOp",
    "MemberQuery", "MemberResult", "MemberStatus", "MemberStore", "SearchResult",
    "read_csv", "read_xlsx", "validate_profile",
]
