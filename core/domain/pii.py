"""Protection of personal data at rest: AES-GCM for the values, keyed blind indexes for
lookups, and the masks shown in lists and exports.

One 32-byte master key (MMS_PII_KEY as 64 hex digits, or `pii.key` in the data
directory, created on first use with mode 0600) derives two independent subkeys: one
encrypts phone and ID numbers, the other keys the HMAC-SHA256 blind indexes. A lookup
hashes the query the same way, so the database never holds a plaintext phone or ID
number, yet finding a member by phone is one B-tree read.

A key file beside the data only protects against someone who gets the database without
the directory (a copied `data.mdb`, a backup); operators who need more keep the key in a
secrets store and pass it by MMS_PII_KEY.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ENV = "MMS_PII_KEY"
KEY_FILE = "pii.key"
KEY_BYTES = 32
NONCE_BYTES = 12
# Blind index entries are truncated HMACs: 16 bytes keep collisions out of reach for any
# member count a chain has (2^-64 at 2^32 members) and halve the index's size.
BLIND_BYTES = 16

_PHONE_JUNK = re.compile(r"[\s\-()]")
_ID_RE = re.compile(r"^[0-9A-Z]{6,32}$")
_CN_ID_RE = re.compile(r"^\d{17}[\dX]$")
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


class PiiError(ValueError):
    """A phone or ID number that is not well formed."""


def load_key(data_dir: str | None) -> bytes:
    """The master key: MMS_PII_KEY if set, else the key file in data_dir (created with
    0600 on first use)."""
    env = os.environ.get(KEY_ENV)
    if env:
        try:
            key = bytes.fromhex(env.strip())
        except ValueError:
            raise PiiError(f"{KEY_ENV} must be {KEY_BYTES * 2} hex digits") from None
        if len(key) != KEY_BYTES:
            raise PiiError(f"{KEY_ENV} must be {KEY_BYTES * 2} hex digits")
        return key
    if data_dir is None:
        raise PiiError(f"no PII key: set {KEY_ENV} or give a data directory")
    path = os.path.join(data_dir, KEY_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as f:
            key = bytes.fromhex(f.read().decode().strip())
        if len(key) != KEY_BYTES:
            raise PiiError(f"{path} does not hold a {KEY_BYTES}-byte hex key") from None
        return key
    key = os.urandom(KEY_BYTES)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    return key


class PiiCipher:
    """Encrypts, decrypts and blind-indexes PII under one master key."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise PiiError(f"the PII key is {KEY_BYTES} bytes")
        self._aead = AESGCM(hmac.digest(master_key, b"mms-pii-enc-v1", "sha256"))
        self._index_key = hmac.digest(master_key, b"mms-pii-index-v1", "sha256")
        # Stored once in the members database: opening it with another key fails loudly
        # instead of missing every duplicate.
        self.key_check = hmac.digest(master_key, b"mms-pii-check-v1", "sha256")[:8]

    def blind(self, kind: bytes, value: str) -> bytes:
        """The blind index of a normalised value; kind separates phones from IDs."""
        return hmac.digest(self._index_key, kind + b"\0" + value.encode(), "sha256")[:BLIND_BYTES]

    def encrypt(self, value: str, aad: bytes) -> bytes:
        """nonce || ciphertext+tag; aad binds it to its member and field so a ciphertext
        copied onto another member does not decrypt."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, value.encode(), aad)

    def decrypt(self, blob: bytes, aad: bytes) -> str:
        return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad).decode()


def normalise_phone(raw: str) -> str:
    """Digits only; a +86 / 0086 country prefix is dropped so that one phone has one form."""
    s = _PHONE_JUNK.sub("", str(raw).strip())
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    if not s.isdigit() or not s.isascii():
        raise PiiError(f"phone {mask_phone(s)!r} holds characters other than digits")
    if len(s) == 11 and s[0] == "1":
        return s
    if 7 <= len(s) <= 15 and s[0] != "1":
        # Landlines (with area code) and foreign numbers.
        return s
    raise PiiError("a mobile phone is 11 digits starting with 1; other phones 7-15 digits")


def normalise_id_no(raw: str) -> str:
    """Upper case without blanks; an 18-character resident ID must pass its check digit."""
    s = re.sub(r"\s", "", str(raw)).upper()
    if not _ID_RE.match(s):
        raise PiiError("an ID number is 6-32 letters and digits")
    if _CN_ID_RE.match(s) and cn_id_check_digit(s[:17]) != s[17]:
        raise PiiError("the resident ID number's check digit is wrong")
    return s


def cn_id_check_digit(first17: str) -> str:
    """GB 11643-1999 check character of an 18-character resident ID."""
    total = sum(int(c) * w for c, w in zip(first17, _CN_ID_WEIGHTS, strict=True))
    return _CN_ID_CHECK[total % 11]


def mask_phone(phone: str) -> str:
    """138****1234: the first three and last four digits stay."""
    if len(phone) <= 7:
        return "*" * max(0, len(phone) - 2) + phone[-2:]
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_id_no(id_no: str) -> str:
    """1101**********1234: the first four and last four characters stay."""
    if len(id_no) <= 8:
        return id_no[:2] + "*" * (len(id_no) - 2)
    return id_no[:4] + "*" * (len(id_no) - 8) + id_no[-4:]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
