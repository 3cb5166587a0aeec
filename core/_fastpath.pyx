# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The hot path of mms: applies a batch of swipes and recharges to card state.

Nothing here touches Python objects inside the per-op loop. The loop reads the
engine's working card table (`_work`: the committed state plus the batches still in
flight), writes each accepted op as a journal record holding the card's after-image,
and never mutates the table itself: the engine publishes the records into `_work` once
applied and into the committed table (`_cards`, what readers see) only after their
LMDB commit is durable (publish()). A rejected op writes
nothing. Ops on the same card inside one batch see each other because a card's state
is read from its newest record of the batch when there is one.

Every bound that protects int64 arithmetic is checked before the arithmetic, and the
points product uses a 128-bit intermediate so no configured rate can overflow it.
"""
from libc.stdint cimport int64_t, uint64_t, int32_t, uint32_t, uint16_t, uint8_t, INT64_MAX
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy


cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)


cdef extern from "<sys/mman.h>" nogil:
    int madvise(void *addr, size_t length, int advice)
    int MADV_HUGEPAGE

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from *:
    ctypedef long long i128 "__int128"


# Debug checks (README.md, "Debug build"): setup.py defines
# MMS_DEBUG=1 when built with MMS_DEBUG=1 in the environment. In a release build the
# macro is 0, every `if MMS_DEBUG:` below is `if (0)` and mms_debug_fail expands to nothing,
# so neither the checks nor their messages are in the compiled module.
cdef extern from *:
    """
    #ifndef MMS_DEBUG
    #define MMS_DEBUG 0
    #endif
    #define MMS_CHECK_POINTS 0
    #define MMS_CHECK_ROOM 1
    #if MMS_DEBUG
    #include <stdio.h>
    #include <stdlib.h>
    static void mms_debug_fail(int check, long long a, long long b) {
        static const char *const what[] = {
            "points != lot0 + lot1 + lot2 + permanent (card_no, points)",
            "journal record past out_recs (index, capacity)",
        };
        fprintf(stderr, "mms fast path: debug check failed: %s (%lld, %lld)\\n", what[check], a, b);
        fflush(stderr);
        abort();
    }
    #else
    #define mms_debug_fail(check, a, b) ((void)0)
    #endif
    """
    const int MMS_DEBUG
    enum:
        MMS_CHECK_POINTS
        MMS_CHECK_ROOM
    void mms_debug_fail(int check, long long a, long long b) noexcept nogil


# 1 in a debug build (the checks below run), 0 in a release build.
DEBUG_CHECKS = MMS_DEBUG


cdef inline void debug_check_points(const Card *c) noexcept nogil:
    """Card invariant (_fastpath.pxd): points == the lots plus the permanent points."""
    if MMS_DEBUG:
        if c.points != c.lot0_points + c.lot1_points + c.lot2_points + c.permanent_points:
            mms_debug_fail(MMS_CHECK_POINTS, <long long> c.card_no, c.points)


cdef inline void debug_check_room(Py_ssize_t n_recs, Py_ssize_t room) noexcept nogil:
    """A record is written only where out_recs has room for it."""
    if MMS_DEBUG:
        if n_recs >= room:
            mms_debug_fail(MMS_CHECK_ROOM, n_recs, room)


cpdef enum OpType:
    OP_TYPE_UNSPECIFIED = 0
    SWIPE = 1
    RECHARGE = 2
    USE_COUNT = 3                   # a count card: amount_fen uses of the service `category`
    REFUND = 4                      # reverse (part of) the swipe whose client id is ref_hi/ref_lo
    COUPON_REDEEM = 5               # a coupon record of a swipe (follows its card record)
    COUPON_RESTORE = 6              # a coupon record of a full refund
    SUPP_DEBIT = 7                  # the primary card's side of a supplementary card's swipe
    # Cold ops: built by the engine in Python, journalled with the same record.
    ISSUE = 10
    SET_STATUS = 11
    ADJUST = 12
    SET_RULES = 13
    SET_PIN = 14
    COUPON_ISSUE = 17
    EXPIRE_POINTS = 15
    POINTS_REMINDER = 16


cpdef enum Result:
    RESULT_UNSPECIFIED = 0
    OK = 1
    CARD_NOT_FOUND = 2
    CARD_LOST = 3
    CARD_FROZEN = 4
    CARD_CANCELLED = 5
    CARD_DORMANT = 6
    CARD_EXPIRED = 7
    AMOUNT_NOT_POSITIVE = 8
    AMOUNT_TOO_LARGE = 9
    INSUFFICIENT_BALANCE = 10
    BALANCE_LIMIT = 11
    OP_TYPE_INVALID = 12
    CLIENT_ID_INVALID = 13
    CARD_EXISTS = 14
    CARD_NO_INVALID = 15
    PIN_REQUIRED = 16
    PIN_WRONG = 17                  # journalled: the failure counts toward the lockout
    PIN_LOCKED = 18
    ITEMS_INVALID = 19
    OFFSET_INVALID = 20
    OFFSET_NOT_ALLOWED = 21
    OFFSET_OVER_CAP = 22
    INSUFFICIENT_POINTS = 23
    INSUFFICIENT_USES = 24
    SERVICE_MISMATCH = 25
    # Generic outcomes of admin ops (members, chain, ...); AdminResult.reason says more.
    INVALID_ARGUMENT = 26
    NOT_FOUND = 27
    ALREADY_EXISTS = 28
    FAILED_PRECONDITION = 29
    PERMISSION_DENIED = 30
    REFUND_TARGET_NOT_FOUND = 31    # no committed swipe has the referenced client id
    REFUND_NOT_REFUNDABLE = 32      # the referenced op is not an accepted swipe
    REFUND_EXCEEDS_PAID = 33        # more than what is left of what was paid
    REFUND_CARD_MISMATCH = 34
    COUPON_NOT_FOUND = 35           # unknown, or on another card
    COUPON_USED = 36
    COUPON_EXPIRED = 37             # outside its validity window
    COUPON_NOT_APPLICABLE = 38      # store, level, category, minimum spend or gift not met
    COUPON_NOT_STACKABLE = 39
    COUPONS_INVALID = 40            # more than COUPONS_PER_OP_MAX, or offsets out of range
    SUPP_LIMIT_EXCEEDED = 41        # a supplementary card's spend limit would be passed
    RECHARGE_NOT_ALLOWED = 42       # the card's type takes no recharge here (store, operator)


cpdef enum CardStatus:
    CARD_STATUS_UNSPECIFIED = 0
    ACTIVE = 1
    LOST = 2
    FROZEN = 3
    CANCELLED = 4
    DORMANT = 5


cpdef enum RecordKind:
    KIND_CARD = 0                   # after is the card's after-image
    KIND_COUPON = 1                 # after holds a Coupon
    KIND_NONE = 2                   # no after-image (rules changes and other non-card ops)


cpdef enum OpFlag:
    PAY_EXTERNAL = 1                # paid outside stored value: discount and points only
    GROUP_BUY = 2                   # a group-buy order: earns no points
    REFUND_OWN_STORE = 4            # a refund only of a swipe made at the op's store


cpdef enum CardFlag:
    CARD_FLAG_MEMBERSHIP_LAPSED = 1  # membership ended (core/domain/levels.py); cleared on re-admission


cpdef enum CouponKind:
    COUPON_KIND_UNSPECIFIED = 0
    COUPON_FIXED = 1                # value_fen off
    COUPON_PERCENT = 2              # pay percent_bp of the eligible lines (capped by max_off_fen)
    COUPON_THRESHOLD = 3            # spend min_spend_fen, save value_fen
    COUPON_GIFT = 4                 # the gift sku's lines free, up to value_fen


cpdef enum CouponStatus:
    COUPON_STATUS_UNSPECIFIED = 0
    COUPON_ISSUED = 1
    COUPON_REDEEMED = 2
    COUPON_VOID = 3


# Coupons one op may name: enough for any real basket, small enough for the stack.
DEF COUPONS_PER_OP_MAX = 8
# A refund follows a card's replacements (lost, replaced, lost again...) this far.
DEF REPLACEMENTS_FOLLOWED_MAX = 16
COUPONS_PER_OP = COUPONS_PER_OP_MAX


cpdef enum ItemFlag:
    ITEM_NO_POINTS = 1              # a special or group-buy item: earns no points


# The codes of the rule switches, for core/rules.py.
RULE_SWITCHES = {
    "rounding": {"half_up": ROUND_HALF_UP, "floor": ROUND_FLOOR},
    "spend_order": {"principal_first": SPEND_PRINCIPAL_FIRST, "bonus_first": SPEND_BONUS_FIRST},
}


# ---------------------------------------------------------------------------------------
# Layout: the numpy view of every record is derived from the C structs here.

include "_layout.pxi"


cdef void *_data(cnp.ndarray a, size_t itemsize, str what) except NULL:
    if not a.flags.c_contiguous:
        raise ValueError(f"{what}: array must be C-contiguous")
    if <size_t> a.dtype.itemsize != itemsize:
        raise ValueError(f"{what}: itemsize {a.dtype.itemsize} != {itemsize}")
    if not a.flags.writeable:
        raise ValueError(f"{what}: array must be writeable")
    return cnp.PyArray_DATA(a)


# ---------------------------------------------------------------------------------------
# A hash map from 128-bit keys to int64 values: open addressing, linear probing, the
# all-zero key marks an empty slot (so card number 0 and client id 0 are invalid).

cdef inline uint64_t _mix(uint64_t hi, uint64_t lo) noexcept nogil:
    cdef uint64_t z = hi * 0x9E3779B97F4A7C15ULL ^ lo
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef extern from *:
    void __builtin_prefetch(const void *addr) nogil
    bint __builtin_mul_overflow(int64_t a, int64_t b, int64_t *out) nogil


cdef inline void prefetch_row(const void *row, size_t nbytes) noexcept nogil:
    """Fetch every cache line of a row. The engine's tables start on a line
    (core.records.table_zeros: a 256-byte card is four lines, a 64-byte coupon one);
    the last byte's line is fetched too, so a row of an array that starts elsewhere
    (numpy's own start 16 bytes past a line: five lines, two) is still whole."""
    cdef size_t off = 0
    while off < nbytes:
        __builtin_prefetch(<const char *> row + off)
        off += 64
    __builtin_prefetch(<const char *> row + nbytes - 1)


cdef inline i128 mul_div(int64_t a, int64_t b, int64_t d) noexcept nogil:
    """(<i128> a * b) // d (truncated: the module's cdivision), exact: in 64 bits when
    the product fits them, else in 128 (a library call, several times dearer)."""
    cdef int64_t p
    if not __builtin_mul_overflow(a, b, &p):
        return p // d
    return (<i128> a * b) // d


cdef inline i128 div128(i128 x, int64_t d) noexcept nogil:
    """x / d truncated, in 64 bits when x fits them."""
    if -INT64_MAX <= x <= INT64_MAX:
        return (<int64_t> x) // d
    return x // d


# Tables from this size on are asked for huge pages: every probe of a large map is a
# random access, and with 4 KiB pages most of them also miss the TLB (a page walk that
# a virtual machine's nested paging makes several times dearer).
DEF HUGE_PAGE_BYTES = 2 * 1024 * 1024


cdef void *_table_alloc(size_t nbytes) noexcept nogil:
    """Memory for a randomly accessed table (not zeroed); NULL when out of memory.
    Free with free()."""
    cdef void *p = NULL
    if nbytes < HUGE_PAGE_BYTES:
        return malloc(nbytes)
    if posix_memalign(&p, HUGE_PAGE_BYTES, nbytes) != 0:
        return NULL
    madvise(p, nbytes, MADV_HUGEPAGE)  # a hint: without it the table works the same
    return p


cdef Entry *_entries(size_t cap) noexcept nogil:
    """cap zeroed entries; NULL when out of memory. Free with free()."""
    cdef Entry *p = <Entry *> _table_alloc(cap * sizeof(Entry))
    if p != NULL:
        memset(p, 0, cap * sizeof(Entry))
    return p


cdef class KeyMap:
    """Map (hi, lo) -> int64. Load factor stays at most 1/2; it only grows.
    capacity_hint is the number of entries expected (the table is made twice that)."""

    def __cinit__(self, size_t capacity_hint=1024):
        cdef size_t cap = 16
        while cap < 2 * capacity_hint:
            cap <<= 1
        self._alloc(cap)

    def __dealloc__(self):
        free(self.e)

    cdef int _alloc(self, size_t cap) except -1:
        self.e = _entries(cap)
        if self.e == NULL:
            raise MemoryError()
        self.cap = cap
        self.alloc = cap
        self.size = 0
        return 0

    cdef int64_t get(self, uint64_t hi, uint64_t lo) noexcept nogil:
        cdef size_t mask = self.cap - 1
        cdef size_t i = _mix(hi, lo) & mask
        if hi == 0 and lo == 0:
            return -1
        while True:
            if self.e[i].hi == hi and self.e[i].lo == lo:
                return self.e[i].val
            if self.e[i].hi == 0 and self.e[i].lo == 0:
                return -1
            i = (i + 1) & mask

    cdef void prefetch(self, uint64_t hi, uint64_t lo) noexcept nogil:
        __builtin_prefetch(&self.e[_mix(hi, lo) & (self.cap - 1)])

    cdef int put(self, uint64_t hi, uint64_t lo, int64_t v, bint overwrite) except -1 nogil:
        """Insert; an existing key keeps its value unless overwrite. Grows first when
        the map would pass half full."""
        cdef size_t mask, i
        if 2 * (self.size + 1) > self.cap:
            self._grow()
        mask = self.cap - 1
        i = _mix(hi, lo) & mask
        while True:
            if self.e[i].hi == hi and self.e[i].lo == lo:
                if overwrite:
                    self.e[i].val = v
                return 0
            if self.e[i].hi == 0 and self.e[i].lo == 0:
                self.e[i].hi = hi
                self.e[i].lo = lo
                self.e[i].val = v
                self.size += 1
                return 0
            i = (i + 1) & mask

    cdef int _grow(self) except -1 nogil:
        cdef Entry *old = self.e
        cdef size_t ocap = self.cap, k, i, mask
        cdef size_t cap = ocap * 2
        self.e = _entries(cap)
        if self.e == NULL:
            self.e = old
            with gil:
                raise MemoryError()
        self.cap = cap
        self.alloc = cap
        mask = cap - 1
        for k in range(ocap):
            if old[k].hi != 0 or old[k].lo != 0:
                i = _mix(old[k].hi, old[k].lo) & mask
                while self.e[i].hi != 0 or self.e[i].lo != 0:
                    i = (i + 1) & mask
                self.e[i] = old[k]
        free(old)
        return 0

    cdef void clear(self) noexcept nogil:
        if self.size == 0:
            return      # nothing put since it was last emptied: every entry is zero
        memset(self.e, 0, self.cap * sizeof(Entry))
        self.size = 0

    cdef void reset(self, size_t expected) noexcept nogil:
        """Empty it, with room for expected entries (load 1/2) within the table already
        allocated: the zeroing is that of the entries in use, not of the whole table, so a
        map sized for the largest batch and reset for each (Batcher.batch_ids) costs a
        small batch a small memset. Every entry past cap is zero (kept here)."""
        cdef size_t cap = 16
        while cap < 2 * expected and cap < self.alloc:
            cap <<= 1
        if self.size:
            memset(self.e, 0, self.cap * sizeof(Entry))
        self.cap = cap
        self.size = 0

    def __len__(self):
        return self.size

    @property
    def capacity(self):
        """Slots in the table (24 bytes each; at most half are used)."""
        return self.cap

    def lookup(self, uint64_t hi, uint64_t lo):
        """Return the value for (hi, lo), or -1."""
        return self.get(hi, lo)

    def insert(self, uint64_t hi, uint64_t lo, int64_t value):
        if hi == 0 and lo == 0:
            raise ValueError("the all-zero key is reserved")
        self.put(hi, lo, value, True)

    def insert_many(self, cnp.ndarray[cnp.uint64_t, ndim=1] his,
                    cnp.ndarray[cnp.uint64_t, ndim=1] los,
                    cnp.ndarray[cnp.int64_t, ndim=1] vals, bint overwrite=False):
        """Insert every (hi, lo) -> value; an existing key keeps its value unless overwrite."""
        cdef Py_ssize_t k, n = his.shape[0]
        if los.shape[0] != n or vals.shape[0] != n:
            raise ValueError("columns differ in length")
        for k in range(n):
            if his[k] == 0 and los[k] == 0:
                raise ValueError("the all-zero key is reserved")
            self.put(his[k], los[k], vals[k], overwrite)

    def lookup_many(self, cnp.ndarray[cnp.uint64_t, ndim=1] his,
                    cnp.ndarray[cnp.uint64_t, ndim=1] los, bint release_gil=False):
        """The values of many keys (-1 where absent); each probe's slot prefetched
        16 keys before it.

        release_gil: probe without the GIL, for a map no other thread writes meanwhile
        (the rollup tailer's own maps). The engine's card index is probed under the GIL
        (publish's docstring says why): leave it False there."""
        cdef Py_ssize_t k, n = his.shape[0]
        if los.shape[0] != n:
            raise ValueError("columns differ in length")
        out = np.empty(n, dtype=np.int64)
        if n == 0:
            return out
        cdef int64_t[::1] o = out
        cdef const uint64_t[::1] h = np.ascontiguousarray(his)     # a strided column too
        cdef const uint64_t[::1] lo = np.ascontiguousarray(los)
        if release_gil:
            with nogil:
                self._get_many(&h[0], &lo[0], &o[0], n)
        else:
            self._get_many(&h[0], &lo[0], &o[0], n)
        return out

    cdef void _get_many(self, const uint64_t *his, const uint64_t *los, int64_t *out,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t k
        for k in range(n):
            if k + 16 < n:
                self.prefetch(his[k + 16], los[k + 16])
            out[k] = self.get(his[k], los[k])

    def items(self):
        """All entries as three arrays (hi, lo, value)."""
        cdef Py_ssize_t k, m = 0
        his = np.empty(self.size, dtype=np.uint64)
        los = np.empty(self.size, dtype=np.uint64)
        vals = np.empty(self.size, dtype=np.int64)
        cdef uint64_t[::1] h = his
        cdef uint64_t[::1] l = los
        cdef int64_t[::1] v = vals
        for k in range(<Py_ssize_t> self.cap):
            if self.e[k].hi != 0 or self.e[k].lo != 0:
                h[m] = self.e[k].hi
                l[m] = self.e[k].lo
                v[m] = self.e[k].val
                m += 1
        return his, los, vals


# The id index maps a client id to its first op: the seq of its first record and that
# record's result, packed as seq << 8 | result, so a replay answers with both.
cdef inline int64_t id_value(uint64_t seq, uint8_t result) noexcept nogil:
    return <int64_t> ((seq << 8) | result)


def pack_id_value(uint64_t seq, uint8_t result):
    return id_value(seq, result)


# ---------------------------------------------------------------------------------------
# Money rules. One function each, shared by every op type.

cdef inline int64_t payable_after_discount(int64_t amount_fen, int64_t discount_bp,
                                           int rounding) noexcept nogil:
    # amount_fen <= max_amount_fen <= 10**13 and discount_bp <= 10000 are checked when
    # rules are compiled, so the product stays below 10**17.
    cdef int64_t prod = amount_fen * discount_bp
    if rounding == ROUND_FLOOR:
        return prod // 10000
    return (prod + 5000) // 10000


cdef inline int64_t points_for(int64_t eligible_fen, int64_t rate_bp, int64_t mult_bp) noexcept nogil:
    # The part below one yuan earns nothing; the product is exact in 128 bits and
    # floored once. Rates are bounded when compiled, so the result fits int64.
    cdef i128 yuan = eligible_fen // 100
    if yuan <= 0:
        return 0
    return <int64_t> div128(yuan * rate_bp * mult_bp, 100000000)


# SipHash-2-4: the keyed hash of a card's PIN (key = the card's salt and the engine's
# secret). A PIN has few digits, so the hash stops casual reading of the table, and the
# lockout stops guessing at the till; see docs/concepts.md.
cdef inline uint64_t _rotl(uint64_t x, int b) noexcept nogil:
    return (x << b) | (x >> (64 - b))


cdef inline uint64_t siphash24(uint64_t k0, uint64_t k1, uint64_t m) noexcept nogil:
    cdef uint64_t v0 = k0 ^ 0x736f6d6570736575ULL
    cdef uint64_t v1 = k1 ^ 0x646f72616e646f6dULL
    cdef uint64_t v2 = k0 ^ 0x6c7967656e657261ULL
    cdef uint64_t v3 = k1 ^ 0x7465646279746573ULL
    cdef uint64_t b = (<uint64_t> 8) << 56
    cdef int r
    v3 ^= m
    for r in range(2):
        v0 += v1; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
        v2 += v3; v3 = _rotl(v3, 16); v3 ^= v2
        v0 += v3; v3 = _rotl(v3, 21); v3 ^= v0
        v2 += v1; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
    v0 ^= m
    v3 ^= b
    for r in range(2):
        v0 += v1; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
        v2 += v3; v3 = _rotl(v3, 16); v3 ^= v2
        v0 += v3; v3 = _rotl(v3, 21); v3 ^= v0
        v2 += v1; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
    v0 ^= b
    v2 ^= 0xff
    for r in range(4):
        v0 += v1; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
        v2 += v3; v3 = _rotl(v3, 16); v3 ^= v2
        v0 += v3; v3 = _rotl(v3, 21); v3 ^= v0
        v2 += v1; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
    return v0 ^ v1 ^ v2 ^ v3


cdef inline uint64_t _pin_hash(uint64_t key0, uint64_t key1, uint64_t salt, uint32_t pin,
                               uint8_t pin_len) noexcept nogil:
    cdef uint64_t h = siphash24(key0 ^ salt, key1, ((<uint64_t> pin_len) << 32) | pin)
    return h if h != 0 else 1       # 0 means "no PIN"


def pin_hash(uint64_t key0, uint64_t key1, uint64_t salt, str digits):
    """The stored hash of a PIN, as the swipe computes it."""
    if not 1 <= len(digits) <= 9 or not digits.isdigit():
        raise ValueError("a PIN is 1 to 9 digits")
    return _pin_hash(key0, key1, salt, int(digits), len(digits))


def pin_hash_of(uint64_t key0, uint64_t key1, uint64_t salt, uint32_t pin, uint8_t pin_len):
    return _pin_hash(key0, key1, salt, pin, pin_len)


cdef inline int32_t civil_year(int64_t t_s, int64_t tz_offset_s) noexcept nogil:
    """The calendar year of a unix time in the chain's local time (days-to-civil)."""
    cdef int64_t z = (t_s + tz_offset_s) // 86400 + 719468
    cdef int64_t era = (z if z >= 0 else z - 146096) // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t m = mp + 3 if mp < 10 else mp - 9
    return <int32_t> (yoe + era * 400 + (1 if m <= 2 else 0))


def year_of(int64_t t_s, int64_t tz_offset_s):
    return civil_year(t_s, tz_offset_s)


# --- calendar years ---------------------------------------------------------------------
# A rule that says years (card validity, level validity "two years from the upgrade",
# renewal, annual fees) means calendar years in the chain's local time, never a count of
# days: 2032-01-01 plus two years is 2034-01-01 though 2032 has a 29 February. The chain's
# time is a fixed UTC offset (RulesConfig.tz_offset_s; Asia/Shanghai, the default, has
# had no daylight saving since 1991). The same local date and time of day, years later;
# 29 February in a year without one becomes 28 February (what most calendars and
# contracts do: the validity never runs past the month it was sold in).
# Integer days-from-civil / civil-from-days (H. Hinnant), proleptic Gregorian.

cdef enum:
    SECONDS_PER_DAY_C = 86400
# Years one add_years may add: keeps every result inside int64 seconds with room.
YEARS_ADD_MAX = 10_000


cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    """Floor division (the module compiles with cdivision, which truncates)."""
    cdef int64_t q = a / b
    if a % b != 0 and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    """Days since 1970-01-01 of the date y-m-d."""
    cdef int64_t era, yoe, mp, doy, doe
    if m <= 2:
        y -= 1
    era = _floordiv(y, 400)
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d) noexcept nogil:
    """The date of day z since 1970-01-01."""
    cdef int64_t era, doe, yoe, doy, mp
    z += 719468
    era = _floordiv(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d[0] = doy - (153 * mp + 2) // 5 + 1
    m[0] = mp + 3 if mp < 10 else mp - 9
    y[0] = yoe + era * 400 + (1 if m[0] <= 2 else 0)


cdef inline bint is_leap_year(int64_t y) noexcept nogil:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


cdef inline int64_t add_years_s(int64_t t_s, int64_t years, int64_t tz_offset_s) noexcept nogil:
    """t_s plus whole calendar years in local time (see above); 29 Feb -> 28 Feb."""
    cdef int64_t local = t_s + tz_offset_s
    cdef int64_t days = _floordiv(local, SECONDS_PER_DAY_C)
    cdef int64_t sod = local - days * SECONDS_PER_DAY_C
    cdef int64_t y, m, d
    civil_from_days(days, &y, &m, &d)
    y += years
    if m == 2 and d == 29 and not is_leap_year(y):
        d = 28
    return days_from_civil(y, m, d) * SECONDS_PER_DAY_C + sod - tz_offset_s


def add_years(int64_t t_s, int64_t years, int64_t tz_offset_s):
    """t_s (unix seconds) plus whole calendar years in the chain's local time."""
    if not -YEARS_ADD_MAX <= years <= YEARS_ADD_MAX:
        raise ValueError(f"years must be within +-{YEARS_ADD_MAX}")
    if not -2**55 <= t_s <= 2**55 or not -86400 <= tz_offset_s <= 86400:
        raise ValueError("t_s or tz_offset_s out of range")
    return add_years_s(t_s, years, tz_offset_s)


def add_years_array(cnp.ndarray t_s, cnp.ndarray years, int64_t tz_offset_s):
    """add_years for int64 arrays of times and years (the level review of many cards)."""
    cdef cnp.ndarray t = np.ascontiguousarray(t_s, dtype=np.int64)
    cdef cnp.ndarray n = np.ascontiguousarray(years, dtype=np.int64)
    if t.ndim != 1 or n.ndim != 1 or t.shape[0] != n.shape[0]:
        raise ValueError("t_s and years must be 1-d arrays of one length")
    if len(t) and (np.abs(n).max() > YEARS_ADD_MAX or np.abs(t).max() > 2**55):
        raise ValueError("t_s or years out of range")
    if not -86400 <= tz_offset_s <= 86400:
        raise ValueError("tz_offset_s out of range")
    cdef cnp.ndarray out = np.empty(t.shape[0], dtype=np.int64)
    cdef const int64_t *tp = <const int64_t *> cnp.PyArray_DATA(t)
    cdef const int64_t *np_ = <const int64_t *> cnp.PyArray_DATA(n)
    cdef int64_t *op = <int64_t *> cnp.PyArray_DATA(out)
    cdef Py_ssize_t i, count = t.shape[0]
    with nogil:
        for i in range(count):
            op[i] = add_years_s(tp[i], np_[i], tz_offset_s)
    return out


cdef inline Py_ssize_t bsearch_u64(const uint64_t *a, Py_ssize_t n, uint64_t key) noexcept nogil:
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < n and a[lo] == key else -1


cdef inline void add_points(Card *c, int64_t pts, int64_t now_s, const RulesC *R) noexcept nogil:
    """Earned points go to the lot of the year they were earned in (or are permanent
    when points never expire). The expiry run moves lot_year forward; if it is late,
    later years share the newest lot."""
    add_points_in(c, pts, civil_year(now_s, R.tz_offset_s) if R.points_valid_years else 0, R)


cdef inline void add_points_in(Card *c, int64_t pts, int32_t year, const RulesC *R) noexcept nogil:
    """add_points with the year of now_s worked out (once per batch: apply_batch)."""
    cdef int32_t idx
    c.points += pts
    if R.points_valid_years == 0:
        c.permanent_points += pts
        return
    if c.lot_year == 0 or (c.lot0_points == 0 and c.lot1_points == 0 and c.lot2_points == 0
                           and year > c.lot_year + 2):
        c.lot_year = <uint16_t> year
    idx = year - c.lot_year
    if idx <= 0:
        c.lot0_points += pts
    elif idx == 1:
        c.lot1_points += pts
    else:
        c.lot2_points += pts


cdef inline int64_t spendable_points(const Card *c) noexcept nogil:
    """Points that can be spent: the positive lots, but never more than the card's total
    (a points debt in permanent_points is paid first)."""
    cdef int64_t n = 0
    if c.lot0_points > 0:
        n += c.lot0_points
    if c.lot1_points > 0:
        n += c.lot1_points
    if c.lot2_points > 0:
        n += c.lot2_points
    if c.permanent_points > 0:
        n += c.permanent_points
    if n > c.points:
        n = c.points
    return n if n > 0 else 0


cdef inline int64_t _take(int64_t *lot, int64_t want) noexcept nogil:
    cdef int64_t t = 0
    if lot[0] > 0:
        t = want if want < lot[0] else lot[0]
        lot[0] -= t
    return t


cdef inline void take_points(Card *c, int64_t n) noexcept nogil:
    """Spend n points (n <= spendable_points), the ones that expire first first."""
    c.points -= n
    n -= _take(&c.lot0_points, n)
    n -= _take(&c.lot1_points, n)
    n -= _take(&c.lot2_points, n)
    n -= _take(&c.permanent_points, n)


# The lot rules for points that change outside a swipe (core/domain/points_admin.py):
# the same functions as the swipe's, on a one-row card array, so they are written once.

cdef Card *_one_card(cnp.ndarray card) except NULL:
    if card.ndim != 1 or card.shape[0] != 1:
        raise ValueError("card: a one-row CARD array")
    return <Card *> _data(card, sizeof(Card), "card")


def card_add_points(cnp.ndarray card, int64_t pts, int64_t now_s, int32_t points_valid_years,
                    int64_t tz_offset_s):
    """Add earned points to the lot of now_s's year (add_points)."""
    cdef RulesC R
    memset(&R, 0, sizeof(RulesC))
    R.points_valid_years = points_valid_years
    R.tz_offset_s = tz_offset_s
    add_points(_one_card(card), pts, now_s, &R)


def card_spendable_points(cnp.ndarray card):
    """The points the card can give now (spendable_points)."""
    return spendable_points(_one_card(card))


def card_take_points(cnp.ndarray card, int64_t n):
    """Take n points from the positive lots, those that expire first first (take_points;
    a forced adjustment may take more than spendable_points when a debt is on the card)."""
    cdef Card *c = _one_card(card)
    cdef int64_t held = 0
    for lot in (c.lot0_points, c.lot1_points, c.lot2_points, c.permanent_points):
        if lot > 0:
            held += lot
    if n < 0 or n > held:
        raise ValueError(f"take {n} points of {held} held in lots")
    take_points(c, n)


cdef inline uint8_t status_result(uint8_t status) noexcept nogil:
    if status == ACTIVE:
        return OK
    if status == LOST:
        return CARD_LOST
    if status == FROZEN:
        return CARD_FROZEN
    if status == CANCELLED:
        return CARD_CANCELLED
    if status == DORMANT:
        return CARD_DORMANT
    return CARD_CANCELLED


cdef inline int64_t level_end(const RulesC *R, int32_t level, int64_t now_s) noexcept nogil:
    """When a level entered at now_s ends: calendar years when the level says years,
    else days; 0 = never."""
    cdef const Level *lv = &R.levels[level]
    if lv.validity_years > 0:
        return add_years_s(now_s, lv.validity_years, R.tz_offset_s)
    if lv.validity_s > 0:
        return now_s + lv.validity_s
    return 0


cdef inline bint is_member(const Card *c) noexcept nogil:
    """False once the membership ended (no spend in a level period, core/domain/levels.py):
    the card still pays from its balance but gets no member price, no discount, no
    points and no upgrade until it is re-admitted."""
    return (c.flags & CARD_FLAG_MEMBERSHIP_LAPSED) == 0


cdef inline void maybe_upgrade(Card *c, const RulesC *R, int64_t now_s) noexcept nogil:
    cdef int32_t j
    cdef int32_t best = c.level
    cdef const Level *lv
    if not is_member(c):
        return
    for j in range(c.level + 1, R.n_levels):
        lv = &R.levels[j]
        if ((lv.up_points > 0 and c.period_points >= lv.up_points)
                or (lv.up_spend_fen > 0 and c.period_spend_fen >= lv.up_spend_fen)
                or (lv.up_recharge_fen > 0 and c.period_recharge_fen >= lv.up_recharge_fen)):
            best = j
    if best > c.level:
        c.level = <uint8_t> best
        c.level_expires_at_s = level_end(R, best, now_s)


cdef inline uint8_t card_usable(const Card *c, int64_t now_s) noexcept nogil:
    cdef uint8_t code = status_result(c.status)
    if code != OK:
        return code
    if c.expires_at_s != 0 and now_s >= c.expires_at_s:
        return CARD_EXPIRED
    return OK


cdef inline uint8_t check_pin(const Op *op, Card *c, JournalRec *rec, const RulesC *R,
                              bint *journal) noexcept nogil:
    """A card with a PIN needs the right one. A wrong PIN is journalled (the failure
    counts toward the lockout across restarts) though nothing else changes."""
    cdef uint8_t code
    if c.pin_hash == 0:
        return OK
    if c.pin_locked_until_s > rec.time_s:
        return PIN_LOCKED
    if op.pin_len == 0:
        return PIN_REQUIRED
    if _pin_hash(R.pin_key0, R.pin_key1, c.pin_salt, op.pin, op.pin_len) == c.pin_hash:
        c.pin_failures = 0
        return OK
    rec.level_before = c.level
    code = PIN_WRONG
    if c.pin_failures < 255:
        c.pin_failures += 1
    if c.pin_failures >= R.pin_max_failures:
        c.pin_failures = 0
        c.pin_locked_until_s = rec.time_s + R.pin_lock_s
        code = PIN_LOCKED
    rec.discount_fen = 0
    rec.payable_fen = 0
    rec.principal_delta_fen = 0
    rec.bonus_delta_fen = 0
    rec.points_delta = 0
    rec.offset_fen = 0
    rec.offset_points = 0
    journal[0] = True
    return code


cdef inline const CouponTpl *find_tpl(const RulesC *R, uint32_t template_id) noexcept nogil:
    cdef Py_ssize_t lo = 0, hi = R.n_tpls, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if R.tpls[mid].template_id < template_id:
            lo = mid + 1
        else:
            hi = mid
    if lo < R.n_tpls and R.tpls[lo].template_id == template_id:
        return &R.tpls[lo]
    return NULL


cdef inline bint in_scope(const RulesC *R, uint32_t off, uint16_t n, uint64_t v) noexcept nogil:
    """An empty scope allows everything."""
    return n == 0 or bsearch_u64(R.scope + off, n, v) >= 0


cdef inline bint recharge_allowed(const RulesC *R, const Op *op, uint16_t type_id) noexcept nogil:
    """Whether the card's type lets this store and operator recharge it."""
    cdef Py_ssize_t lo = 0, hi = R.n_types, mid
    cdef const TypeLimit *t
    while lo < hi:
        mid = (lo + hi) >> 1
        if R.types[mid].type_id < type_id:
            lo = mid + 1
        else:
            hi = mid
    if lo >= R.n_types or R.types[lo].type_id != type_id:
        return True
    t = &R.types[lo]
    return (t.recharge_allowed != 0 and in_scope(R, t.stores_off, t.stores_n, op.store_id)
            and in_scope(R, t.operators_off, t.operators_n, op.operator_id))


cdef inline uint8_t eval_coupons(const Op *op, const RulesC *R, const Item *items,
                                 const Level *lv, uint8_t level, bint member, int64_t payable,
                                 int64_t now_s,
                                 Coupon *cps, int n_cps, int64_t *offs,
                                 int64_t *total) noexcept nogil:
    """What each coupon takes off, applied in the order given; all must apply or the
    swipe is refused. The eligible base of a coupon is the payable of the lines in its
    categories (the gift sku's lines for a gift coupon)."""
    cdef int k
    cdef Py_ssize_t j
    cdef int64_t remaining = payable, eligible, off, lp
    cdef const CouponTpl *tpl
    cdef const CouponTpl *tpls[COUPONS_PER_OP_MAX]
    cdef const Item *it
    for k in range(n_cps):
        tpl = find_tpl(R, cps[k].template_id)
        if tpl == NULL:
            return COUPON_NOT_APPLICABLE
        if n_cps > 1 and not tpl.stackable:
            return COUPON_NOT_STACKABLE
        tpls[k] = tpl
    for k in range(n_cps):
        if now_s < cps[k].valid_from_s or (cps[k].valid_to_s != 0 and now_s >= cps[k].valid_to_s):
            return COUPON_EXPIRED
        tpl = tpls[k]
        if not in_scope(R, tpl.stores_off, tpl.stores_n, op.store_id):
            return COUPON_NOT_APPLICABLE
        if tpl.level_mask != 0 and (level >= 64 or not ((tpl.level_mask >> level) & 1)):
            return COUPON_NOT_APPLICABLE
        eligible = 0
        if tpl.tpl_kind != COUPON_GIFT and tpl.cats_n == 0:
            # Every line is in scope: the sum of their payables is the swipe's payable
            # (do_swipe adds the same line_payable of every line), no loop again.
            eligible = payable
        elif op.items_n:
            for j in range(op.items_n):
                it = &items[op.items_off + j]
                if tpl.tpl_kind == COUPON_GIFT:
                    if it.sku != tpl.gift_sku:
                        continue
                elif not in_scope(R, tpl.cats_off, tpl.cats_n, it.category):
                    continue
                eligible += line_payable(R, lv, level, member, it.sku, it.qty, it.amount_fen)
        elif tpl.tpl_kind != COUPON_GIFT and in_scope(R, tpl.cats_off, tpl.cats_n, op.category):
            eligible = payable
        if eligible <= 0 or eligible < tpl.min_spend_fen:
            return COUPON_NOT_APPLICABLE
        if tpl.tpl_kind == COUPON_PERCENT:
            # The saving is floored: the member pays the part of a fen.
            off = <int64_t> mul_div(eligible, 10000 - tpl.percent_bp, 10000)
            if tpl.max_off_fen > 0 and off > tpl.max_off_fen:
                off = tpl.max_off_fen
        else:
            off = tpl.value_fen if tpl.value_fen < eligible else eligible
        if off > remaining:
            off = remaining
        if off <= 0:
            return COUPON_NOT_APPLICABLE
        offs[k] = off
        remaining -= off
    total[0] = payable - remaining
    return OK


cdef inline int64_t line_payable(const RulesC *R, const Level *lv, uint8_t level, bint member,
                                 uint64_t sku, uint32_t qty, int64_t amount) noexcept nogil:
    """A line's price after the member's benefit: the member price of its sku at the
    card's level when one is set (never above the shelf price), else the level discount
    rounded per line. A card whose membership ended pays the shelf price."""
    cdef Py_ssize_t k
    cdef int64_t price
    if not member:
        return amount
    if sku != 0 and R.n_skus > 0:
        k = bsearch_u64(R.skus, R.n_skus, sku)
        if k >= 0:
            price = R.prices[k * R.n_levels + level]
            if price > 0:
                if qty == 0 or price > amount // qty:
                    return amount
                return price * qty
    return payable_after_discount(amount, lv.discount_bp, R.rounding)


cdef inline const CommissionRule *find_commission(const CommissionRule *t, int32_t n,
                                                  uint64_t key) noexcept nogil:
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if t[mid].key < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and t[lo].key == key:
        return &t[lo]
    return NULL


cdef inline i128 line_commission(const RulesC *R, uint64_t sku, uint16_t category,
                                 int64_t qty, int64_t paid) noexcept nogil:
    """A line's staff commission: its sku's rule, else its category's, else the default
    share; fixed_fen per unit plus bp of what was paid for it, floored."""
    cdef const CommissionRule *r = NULL
    if sku != 0 and R.n_sku_comm:
        r = find_commission(R.sku_comm, R.n_sku_comm, sku)
    if r == NULL and R.n_cat_comm:
        r = find_commission(R.cat_comm, R.n_cat_comm, category)
    if r == NULL:
        return mul_div(paid, R.commission_bp, 10000)
    return <i128> r.fixed_fen * qty + mul_div(paid, r.bp, 10000)


cdef inline uint8_t do_swipe(const Op *op, Card *c, JournalRec *rec, const RulesC *R,
                             const Item *items, Py_ssize_t n_items, bint *journal,
                             Coupon *cps, int n_cps, int64_t *offs, Card *payer,
                             uint8_t coupon_code, int32_t year) noexcept nogil:
    """Check everything, then mutate c and fill rec. On a reject touch neither (a wrong
    PIN excepted: check_pin). coupon_code is what loading the named coupons answered; it
    is the answer only in the coupons' place, after status, PIN, amount and lines."""
    cdef int64_t amount = op.amount_fen
    cdef int64_t payable = 0, debit_p, debit_b, earned, offset_fen = 0, net, cap, reduction
    cdef int64_t coupon_fen = 0
    cdef int64_t lp, alloc, sum_items = 0, store_mult = 10000
    cdef i128 weight = 0, yuan, commission = 0
    cdef bint with_commission = R.commission_bp != 0 or R.n_sku_comm != 0 or R.n_cat_comm != 0
    cdef bint earns
    cdef bint member = is_member(c)
    cdef const Level *lv
    cdef Level plan_lv
    cdef const Item *it
    cdef Py_ssize_t k, n_lines
    cdef uint8_t level = c.level if c.level < R.n_levels else <uint8_t> (R.n_levels - 1)
    cdef uint8_t code = card_usable(c, rec.time_s)
    if code != OK:
        return code
    code = check_pin(op, c, rec, R, journal)
    if code != OK:
        return code
    if amount <= 0:
        return AMOUNT_NOT_POSITIVE
    if amount > R.max_amount_fen:
        return AMOUNT_TOO_LARGE
    lv = &R.levels[level]
    # A plan's member price (core/domain/plans.py, action "member_price"): while it runs
    # it takes the level discount's place where it is lower; sku member prices stand.
    if c.plan_price_bp != 0 and rec.time_s < c.plan_price_until_s and c.plan_price_bp < lv.discount_bp:
        plan_lv = lv[0]
        plan_lv.discount_bp = c.plan_price_bp
        lv = &plan_lv
    # Lines: the op's items, or the whole amount as one line of the op's category.
    n_lines = op.items_n
    if n_lines:
        if <Py_ssize_t> op.items_off + n_lines > n_items:
            return ITEMS_INVALID
        for k in range(n_lines):
            it = &items[op.items_off + k]
            if it.amount_fen < 0 or it.amount_fen > R.max_amount_fen or it.qty == 0:
                return ITEMS_INVALID
            sum_items += it.amount_fen
        if sum_items != amount:
            return ITEMS_INVALID
        for k in range(n_lines):
            it = &items[op.items_off + k]
            payable += line_payable(R, lv, level, member, it.sku, it.qty, it.amount_fen)
    elif member:
        payable = payable_after_discount(amount, lv.discount_bp, R.rounding)
    else:
        payable = amount
    if coupon_code != OK:
        return coupon_code
    if n_cps:
        code = eval_coupons(op, R, items, lv, level, member, payable, rec.time_s, cps, n_cps, offs,
                            &coupon_fen)
        if code != OK:
            return code
    # Points offset: the cashier's chosen number of points, within the caps.
    if op.points_offset != 0:
        if op.points_offset < 0 or op.points_offset > R.max_amount_fen:
            return OFFSET_INVALID
        if R.offset_points_per_yuan == 0:
            return OFFSET_NOT_ALLOWED
        if (op.points_offset * 100) % R.offset_points_per_yuan != 0:
            return OFFSET_INVALID
        offset_fen = op.points_offset * 100 // R.offset_points_per_yuan
        cap = (payable - coupon_fen) * R.offset_max_bp // 10000
        if offset_fen > cap or (R.offset_max_points > 0 and op.points_offset > R.offset_max_points):
            return OFFSET_OVER_CAP
        if op.points_offset > spendable_points(c):
            return INSUFFICIENT_POINTS
    net = payable - coupon_fen - offset_fen
    debit_p = 0
    debit_b = 0
    # A supplementary card pays from its primary card (payer), within its own limit.
    cdef Card *pay = payer if payer != NULL else c
    if payer != NULL and c.supp_limit_fen > 0 and c.supp_spent_fen + net > c.supp_limit_fen:
        return SUPP_LIMIT_EXCEEDED
    if not (op.op_flags & PAY_EXTERNAL):
        if pay.principal_fen + pay.bonus_fen < net:
            return INSUFFICIENT_BALANCE
        if R.spend_order == SPEND_BONUS_FIRST:
            debit_b = net if net < pay.bonus_fen else pay.bonus_fen
            debit_p = net - debit_b
        else:
            debit_p = net if net < pay.principal_fen else pay.principal_fen
            debit_b = net - debit_p
    # Points on what was paid: each line's payable less its share of the coupons and the
    # offset (shares floored), weighted by its category's multiplier; the part below one
    # weighted yuan earns nothing; then the rate and the level and store multipliers,
    # floored once. Staff commission is per line on the same paid amount.
    earned = 0
    earns = not (op.op_flags & GROUP_BUY) and payable > 0 and member
    reduction = payable - net
    if n_lines and (earns or with_commission):
        for k in range(n_lines):
            it = &items[op.items_off + k]
            lp = line_payable(R, lv, level, member, it.sku, it.qty, it.amount_fen)
            alloc = <int64_t> mul_div(reduction, lp, payable) if payable > 0 else 0
            if with_commission:
                commission += line_commission(R, it.sku, it.category, it.qty, lp - alloc)
            if not (it.item_flags & ITEM_NO_POINTS):
                weight += <i128> (lp - alloc) * R.category_mult_bp[it.category]
    elif not n_lines:
        weight = <i128> net * R.category_mult_bp[op.category]
        if with_commission:
            commission = line_commission(R, 0, op.category, 1, net)
    if commission > R.max_amount_fen:
        return AMOUNT_TOO_LARGE
    if earns:
        if R.n_store_mult:
            k = bsearch_u64(R.store_ids, R.n_store_mult, op.store_id)
            if k >= 0:
                store_mult = R.store_mult_bp[k]
        yuan = div128(weight, 1000000)
        earned = <int64_t> div128(yuan * R.points_per_yuan_bp * lv.points_mult_bp * store_mult,
                                  1000000000000)
    if (c.points > INT64_MAX - earned or c.spend_total_fen > INT64_MAX - net
            or c.period_points > INT64_MAX - earned or c.period_spend_fen > INT64_MAX - net):
        return BALANCE_LIMIT
    rec.level_before = c.level
    pay.principal_fen -= debit_p
    pay.bonus_fen -= debit_b
    if payer != NULL:
        c.supp_spent_fen += net
    if op.points_offset:
        take_points(c, op.points_offset)
    add_points_in(c, earned, year, R)  # year: civil_year(rec.time_s), the batch's
    c.spend_total_fen += net
    c.period_spend_fen += net
    c.period_points += earned
    if c.visits < 0xFFFFFFFFU:
        c.visits += 1
    c.last_visit_s = rec.time_s
    maybe_upgrade(c, R, rec.time_s)
    rec.discount_fen = amount - payable
    rec.payable_fen = payable
    rec.coupon_fen = coupon_fen
    rec.offset_fen = offset_fen
    rec.offset_points = op.points_offset
    rec.principal_delta_fen = -debit_p
    rec.bonus_delta_fen = -debit_b
    rec.points_delta = earned - op.points_offset
    rec.commission_fen = <int64_t> commission
    return OK


cdef inline int64_t _share(int64_t part, int64_t total, int64_t whole) noexcept nogil:
    """floor(part * total / whole), exact in 128 bits."""
    if whole <= 0:
        return 0
    return <int64_t> mul_div(part, total, whole)


cdef inline int32_t level_met(const Card *c, const RulesC *R) noexcept nogil:
    cdef int32_t j, best = 0
    cdef const Level *lv
    for j in range(1, R.n_levels):
        lv = &R.levels[j]
        if ((lv.up_points > 0 and c.period_points >= lv.up_points)
                or (lv.up_spend_fen > 0 and c.period_spend_fen >= lv.up_spend_fen)
                or (lv.up_recharge_fen > 0 and c.period_recharge_fen >= lv.up_recharge_fen)):
            best = j
    return best


cdef inline void add_points_to_year(Card *c, int64_t pts, int32_t year, const RulesC *R) noexcept nogil:
    """Put points back into the lot of a given year (clamped to the lots held)."""
    cdef int32_t idx
    c.points += pts
    if R.points_valid_years == 0 or c.lot_year == 0:
        if R.points_valid_years == 0:
            c.permanent_points += pts
        else:
            c.lot_year = <uint16_t> year
            c.lot0_points += pts
        return
    idx = year - c.lot_year
    if idx <= 0:
        c.lot0_points += pts
    elif idx == 1:
        c.lot1_points += pts
    else:
        c.lot2_points += pts


cdef inline void take_points_back(Card *c, int64_t n) noexcept nogil:
    """Take back earned points, newest lots first; what the member already spent
    becomes a debt in permanent_points (it may go below zero)."""
    cdef int64_t t
    c.points -= n
    t = n if n < c.lot2_points else (c.lot2_points if c.lot2_points > 0 else 0)
    c.lot2_points -= t
    n -= t
    t = n if n < c.lot1_points else (c.lot1_points if c.lot1_points > 0 else 0)
    c.lot1_points -= t
    n -= t
    t = n if n < c.lot0_points else (c.lot0_points if c.lot0_points > 0 else 0)
    c.lot0_points -= t
    n -= t
    c.permanent_points -= n


cdef inline uint8_t do_refund(const Op *op, Card *c, JournalRec *rec, const RulesC *R,
                              const JournalRec *orig, int64_t refunded_before,
                              const JournalRec *porig, Card *payer,
                              bint swipe_card, bint refunded_any) noexcept nogil:
    """Return part (or the rest) of what a swipe took. Every component comes back in
    proportion to the cumulative refund, floored, so that refunds that add up to the
    whole return exactly the whole: the same principal/bonus split, the offset points,
    the earned points taken back, the spend. swipe_card: c is the card that swiped, or
    the card that has replaced it since."""
    cdef int64_t paid, after, p0, b0, off0, offf0, earned0, net0
    cdef int64_t p_back, b_back, off_back, offf_back, earned_back, net_back
    cdef int32_t lv
    if c.status == CANCELLED:
        return CARD_CANCELLED
    if orig.op_type != SWIPE or orig.result != OK or orig.kind != KIND_CARD:
        return REFUND_NOT_REFUNDABLE
    if not swipe_card:
        return REFUND_CARD_MISMATCH
    if (op.op_flags & REFUND_OWN_STORE) and orig.store_id != op.store_id:
        # The server sets the flag unless the chain takes refunds of other stores' sales.
        return PERMISSION_DENIED
    paid = orig.payable_fen - orig.coupon_fen
    if paid == 0 and op.amount_fen == 0:
        # Coupons paid the whole order: its reversal gives no money back, only the
        # coupons (and the visit's spend and level), once.
        if refunded_any:
            return REFUND_EXCEEDS_PAID
    elif op.amount_fen <= 0:
        return AMOUNT_NOT_POSITIVE
    if op.amount_fen > paid - refunded_before:
        return REFUND_EXCEEDS_PAID
    after = refunded_before + op.amount_fen
    # A supplementary card's swipe took its money from the primary (porig): it goes back
    # there, the rest (points, spend, the limit used) to the supplementary card.
    p0 = -(porig.principal_delta_fen if porig != NULL else orig.principal_delta_fen)
    b0 = -(porig.bonus_delta_fen if porig != NULL else orig.bonus_delta_fen)
    off0 = orig.offset_points
    offf0 = orig.offset_fen
    earned0 = orig.points_delta + orig.offset_points
    net0 = paid - orig.offset_fen
    p_back = _share(after, p0, paid) - _share(refunded_before, p0, paid)
    b_back = _share(after, b0, paid) - _share(refunded_before, b0, paid)
    off_back = _share(after, off0, paid) - _share(refunded_before, off0, paid)
    offf_back = _share(after, offf0, paid) - _share(refunded_before, offf0, paid)
    earned_back = _share(after, earned0, paid) - _share(refunded_before, earned0, paid)
    net_back = _share(after, net0, paid) - _share(refunded_before, net0, paid)
    rec.level_before = c.level
    if payer != NULL:
        payer.principal_fen += p_back
        payer.bonus_fen += b_back
        c.supp_spent_fen = c.supp_spent_fen - net_back if c.supp_spent_fen > net_back else 0
    else:
        c.principal_fen += p_back
        c.bonus_fen += b_back
    if off_back:
        add_points_to_year(c, off_back, civil_year(orig.time_s, R.tz_offset_s), R)
    if earned_back:
        take_points_back(c, earned_back)
    c.spend_total_fen -= net_back
    c.period_spend_fen = c.period_spend_fen - net_back if c.period_spend_fen > net_back else 0
    c.period_points = c.period_points - earned_back if c.period_points > earned_back else 0
    # A level the swipe brought is given back if the card no longer meets it; never below
    # the level the card had before that swipe.
    if c.level > orig.level_before:
        lv = level_met(c, R)
        if lv < orig.level_before:
            lv = orig.level_before
        if lv < c.level:
            c.level = <uint8_t> lv
    rec.discount_fen = 0
    rec.payable_fen = op.amount_fen
    rec.offset_fen = offf_back
    rec.offset_points = off_back
    rec.principal_delta_fen = p_back
    rec.bonus_delta_fen = b_back
    rec.points_delta = off_back - earned_back
    # The operator of the swipe gives back the same share of its commission.
    rec.commission_fen = -(_share(after, orig.commission_fen, paid)
                           - _share(refunded_before, orig.commission_fen, paid))
    return OK


cdef inline uint8_t do_use_count(const Op *op, Card *c, JournalRec *rec, const RulesC *R,
                                 bint *journal) noexcept nogil:
    """A count card spends uses of its service instead of money."""
    cdef uint8_t code = card_usable(c, rec.time_s)
    if code != OK:
        return code
    code = check_pin(op, c, rec, R, journal)
    if code != OK:
        return code
    if c.count_service == 0 or op.category != c.count_service:
        return SERVICE_MISMATCH
    if op.amount_fen <= 0:
        return AMOUNT_NOT_POSITIVE
    if op.amount_fen > c.count_uses:
        return INSUFFICIENT_USES
    # A service's commission is its fixed amount per use (no money changes hands).
    if R.n_cat_comm or R.n_sku_comm:
        rec.commission_fen = <int64_t> line_commission(R, 0, op.category, op.amount_fen, 0)
    rec.level_before = c.level
    c.count_uses -= <int32_t> op.amount_fen
    if c.visits < 0xFFFFFFFFU:
        c.visits += 1
    c.last_visit_s = rec.time_s
    rec.discount_fen = 0
    rec.payable_fen = 0
    rec.offset_fen = 0
    rec.offset_points = 0
    rec.principal_delta_fen = 0
    rec.bonus_delta_fen = 0
    rec.points_delta = 0
    return OK


cdef inline uint8_t do_recharge(const Op *op, Card *c, JournalRec *rec, const RulesC *R,
                                int32_t year) noexcept nogil:
    cdef int64_t amount = op.amount_fen
    cdef int64_t bonus = 0, tier_pts = 0, pts
    cdef int32_t k
    cdef uint8_t code = card_usable(c, rec.time_s)
    if code != OK:
        return code
    if amount <= 0:
        return AMOUNT_NOT_POSITIVE
    if amount > R.max_amount_fen:
        return AMOUNT_TOO_LARGE
    if R.n_types and not recharge_allowed(R, op, c.type_id):
        return RECHARGE_NOT_ALLOWED
    # Tiers are sorted by min_pay_fen; the highest one reached applies.
    for k in range(R.n_tiers):
        if amount >= R.tiers[k].min_pay_fen:
            bonus = R.tiers[k].bonus_fen
            tier_pts = R.tiers[k].points
    pts = points_for(amount, R.recharge_points_per_yuan_bp, 10000) + tier_pts
    if not is_member(c):
        pts = 0                     # the bonus is the recharge's; points are members'
    # Balances stay below max_balance_fen (<= 10**15), so these sums cannot overflow.
    if c.principal_fen + c.bonus_fen + amount + bonus > R.max_balance_fen:
        return BALANCE_LIMIT
    if (c.points > INT64_MAX - pts or c.period_points > INT64_MAX - pts
            or c.recharge_total_fen > INT64_MAX - amount
            or c.period_recharge_fen > INT64_MAX - amount):
        return BALANCE_LIMIT
    rec.level_before = c.level
    c.principal_fen += amount
    c.bonus_fen += bonus
    add_points_in(c, pts, year, R)  # year: civil_year(rec.time_s), the batch's
    c.period_points += pts
    c.recharge_total_fen += amount
    c.period_recharge_fen += amount
    maybe_upgrade(c, R, rec.time_s)
    rec.discount_fen = 0
    rec.payable_fen = amount
    rec.offset_fen = 0
    rec.offset_points = 0
    rec.principal_delta_fen = amount
    rec.bonus_delta_fen = bonus
    rec.points_delta = pts
    return OK


cdef class Rules:
    """Compiled rules as the fast path reads them; built by core/rules.py."""

    def __cinit__(self, uint32_t version, int rounding, int spend_order,
                  int64_t max_amount_fen, int64_t max_balance_fen,
                  int64_t points_per_yuan_bp, int64_t recharge_points_per_yuan_bp,
                  cnp.ndarray levels, cnp.ndarray tiers, cnp.ndarray category_mult_bp, *,
                  cnp.ndarray store_ids=None, cnp.ndarray store_mult_bp=None,
                  cnp.ndarray skus=None, cnp.ndarray prices=None,
                  int64_t offset_points_per_yuan=0, int64_t offset_max_bp=0,
                  int64_t offset_max_points=0, int32_t points_valid_years=1,
                  int32_t pin_max_failures=5, int64_t pin_lock_s=1800,
                  int64_t tz_offset_s=0, uint64_t pin_key0=0, uint64_t pin_key1=0,
                  cnp.ndarray coupon_tpls=None, cnp.ndarray scope=None,
                  cnp.ndarray type_limits=None, int64_t commission_bp=0,
                  cnp.ndarray sku_commission=None, cnp.ndarray category_commission=None):
        if levels.shape[0] < 1 or levels.shape[0] > 255:
            raise ValueError("between 1 and 255 levels")
        if category_mult_bp.shape[0] != 65536 or category_mult_bp.dtype != np.int32:
            raise ValueError("category_mult_bp must be 65536 int32")
        self._levels = np.ascontiguousarray(levels).copy()
        self._tiers = np.ascontiguousarray(tiers).copy()
        self._cats = np.ascontiguousarray(category_mult_bp).copy()
        self._store_ids = np.ascontiguousarray(store_ids if store_ids is not None else np.zeros(0), dtype=np.uint64).copy()
        self._store_mult = np.ascontiguousarray(store_mult_bp if store_mult_bp is not None else np.zeros(0), dtype=np.int64).copy()
        self._skus = np.ascontiguousarray(skus if skus is not None else np.zeros(0), dtype=np.uint64).copy()
        self._prices = np.ascontiguousarray(prices if prices is not None else np.zeros((0, levels.shape[0])), dtype=np.int64).copy()
        if self._store_ids.shape[0] != self._store_mult.shape[0]:
            raise ValueError("store_ids and store_mult_bp differ in length")
        if self._prices.ndim != 2 or self._prices.shape[0] != self._skus.shape[0] or self._prices.shape[1] != levels.shape[0]:
            raise ValueError("prices must be n_skus x n_levels")
        if (np.any(self._store_ids[1:] <= self._store_ids[:-1])
                or np.any(self._skus[1:] <= self._skus[:-1])):
            raise ValueError("store_ids and skus must be sorted and unique")
        if pin_max_failures < 1:
            raise ValueError("pin_max_failures must be >= 1")
        self.c.version = version
        self.c.rounding = rounding
        self.c.spend_order = spend_order
        self.c.max_amount_fen = max_amount_fen
        self.c.max_balance_fen = max_balance_fen
        self.c.points_per_yuan_bp = points_per_yuan_bp
        self.c.recharge_points_per_yuan_bp = recharge_points_per_yuan_bp
        self.c.n_levels = <int32_t> levels.shape[0]
        self.c.n_tiers = <int32_t> tiers.shape[0]
        self.c.levels = <const Level *> _data(self._levels, sizeof(Level), "levels")
        self.c.tiers = <const Tier *> (cnp.PyArray_DATA(self._tiers) if tiers.shape[0] else NULL)
        if tiers.shape[0]:
            _data(self._tiers, sizeof(Tier), "tiers")
        self.c.category_mult_bp = <const int32_t *> cnp.PyArray_DATA(self._cats)
        self.c.n_store_mult = <int32_t> self._store_ids.shape[0]
        self.c.store_ids = <const uint64_t *> cnp.PyArray_DATA(self._store_ids)
        self.c.store_mult_bp = <const int64_t *> cnp.PyArray_DATA(self._store_mult)
        self.c.n_skus = <int32_t> self._skus.shape[0]
        self.c.skus = <const uint64_t *> cnp.PyArray_DATA(self._skus)
        self.c.prices = <const int64_t *> cnp.PyArray_DATA(self._prices)
        self.c.offset_points_per_yuan = offset_points_per_yuan
        self.c.offset_max_bp = offset_max_bp
        self.c.offset_max_points = offset_max_points
        self.c.points_valid_years = points_valid_years
        self.c.pin_max_failures = pin_max_failures
        self.c.pin_lock_s = pin_lock_s
        self.c.tz_offset_s = tz_offset_s
        self.c.pin_key0 = pin_key0
        self.c.pin_key1 = pin_key1
        if coupon_tpls is None:
            coupon_tpls = np.zeros(0, dtype=np.dtype((np.void, sizeof(CouponTpl))))
        self._tpls = np.ascontiguousarray(coupon_tpls).copy()
        self._scope = np.ascontiguousarray(scope if scope is not None else np.zeros(1), dtype=np.uint64).copy()
        if self._tpls.shape[0] and self._tpls.dtype.itemsize != sizeof(CouponTpl):
            raise ValueError("coupon_tpls must be CouponTpl records")
        self.c.n_tpls = <int32_t> self._tpls.shape[0]
        self.c.tpls = <const CouponTpl *> cnp.PyArray_DATA(self._tpls)
        self.c.scope = <const uint64_t *> cnp.PyArray_DATA(self._scope)
        if type_limits is None:
            type_limits = np.zeros(0, dtype=np.dtype((np.void, sizeof(TypeLimit))))
        self._types = np.ascontiguousarray(type_limits).copy()
        if self._types.shape[0] and self._types.dtype.itemsize != sizeof(TypeLimit):
            raise ValueError("type_limits must be TypeLimit records")
        self.c.n_types = <int32_t> self._types.shape[0]
        self.c.types = <const TypeLimit *> cnp.PyArray_DATA(self._types)
        self.c.commission_bp = commission_bp
        empty = np.zeros(0, dtype=np.dtype((np.void, sizeof(CommissionRule))))
        self._sku_comm = np.ascontiguousarray(sku_commission if sku_commission is not None else empty).copy()
        self._cat_comm = np.ascontiguousarray(category_commission if category_commission is not None else empty).copy()
        for table in (self._sku_comm, self._cat_comm):
            if table.shape[0] and table.dtype.itemsize != sizeof(CommissionRule):
                raise ValueError("commission tables must be CommissionRule records")
        self.c.n_sku_comm = <int32_t> self._sku_comm.shape[0]
        self.c.sku_comm = <const CommissionRule *> cnp.PyArray_DATA(self._sku_comm)
        self.c.n_cat_comm = <int32_t> self._cat_comm.shape[0]
        self.c.cat_comm = <const CommissionRule *> cnp.PyArray_DATA(self._cat_comm)

    @property
    def version(self):
        return self.c.version

    @property
    def n_levels(self):
        return self.c.n_levels


# ---------------------------------------------------------------------------------------
# The batch.

# How many ops ahead the loops prefetch their hash probes: enough to cover a memory
# round trip at ~0.1-0.3 us per op.
DEF PREFETCH_AHEAD = 8


cdef class Batcher:
    """Scratch space reused across batches: the per-slot index of a card's newest record
    in the batch, and the map of client ids seen in the batch."""

    def __cinit__(self, size_t batch_max):
        self.batch_max = batch_max
        self.newest = NULL
        self.n_slots = 0
        self.batch_ids = KeyMap(batch_max)
        self.no_refunds = KeyMap(16)
        self.batch_coupons = KeyMap(batch_max)

    def __dealloc__(self):
        free(self.newest)

    cdef int ensure_slots(self, size_t n) except -1:
        cdef int32_t *p
        cdef size_t k
        if n <= self.n_slots:
            return 0
        p = <int32_t *> _table_alloc(n * sizeof(int32_t))
        if p == NULL:
            raise MemoryError()
        for k in range(n):
            p[k] = -1
        free(self.newest)
        self.newest = p
        self.n_slots = n
        return 0

    def apply_batch(self, cnp.ndarray ops, cnp.ndarray cards, KeyMap card_index,
                    KeyMap id_index, Rules rules, int64_t now_s, uint64_t first_seq,
                    cnp.ndarray out_recs, cnp.ndarray out_results, cnp.ndarray out_slots=None,
                    cnp.ndarray items=None, cnp.ndarray refs=None, KeyMap refunded=None,
                    cnp.ndarray coupons=None, KeyMap coupon_index=None,
                    cnp.ndarray coupon_ids=None, cnp.ndarray ref_coupons=None,
                    cnp.ndarray ref_coupons_off=None, cnp.ndarray ref_coupons_n=None,
                    cnp.ndarray prefs=None):
        """Apply ops against the working card table; return the number of records.

        cards is read, never written. out_recs receives one record per accepted op
        (seq first_seq, first_seq + 1, ...); out_results one OpResult per op; out_slots
        (int64, optional) the card table slot of each record, for publish(). items
        (Item array, optional) holds the line items that ops point into. For REFUND
        ops, refs (JournalRec array, one row per op) holds the referenced swipe's record
        when it was committed before this batch (seq 0 where none was found), and
        refunded (seq -> fen refunded so far) is read and updated. coupons (the Coupon
        table, read only) and coupon_index (coupon_id -> slot) serve the coupon ids ops
        name in coupon_ids; ref_coupons[ref_coupons_off[i]:+ref_coupons_n[i]] are the
        coupons a refund's committed swipe redeemed. out_recs needs room for one record
        per op plus one per coupon named or restored.
        """
        cdef Py_ssize_t n = ops.shape[0]
        if <size_t> n > self.batch_max:
            raise ValueError(f"batch of {n} ops exceeds batch_max {self.batch_max}")
        if out_results.shape[0] < n or out_recs.shape[0] < n:
            raise ValueError("output arrays are smaller than the batch")
        cdef const Op *op_p = <const Op *> _data(ops, sizeof(Op), "ops")
        cdef const Card *card_p = <const Card *> _data(cards, sizeof(Card), "cards")
        cdef JournalRec *rec_p = <JournalRec *> _data(out_recs, sizeof(JournalRec), "out_recs")
        cdef OpResult *res_p = <OpResult *> _data(out_results, sizeof(OpResult), "out_results")
        cdef int64_t *slot_p = NULL
        if out_slots is not None:
            if out_slots.dtype != np.int64 or out_slots.shape[0] < n:
                raise ValueError("out_slots must be int64 with room for every op")
            slot_p = <int64_t *> _data(out_slots, 8, "out_slots")
        cdef const Item *item_p = NULL
        cdef Py_ssize_t n_items = 0
        if items is not None and items.shape[0]:
            item_p = <const Item *> _data(items, sizeof(Item), "items")
            n_items = items.shape[0]
        cdef Extras ex
        ex.items = item_p
        ex.n_items = n_items
        ex.refs = NULL
        if refs is not None:
            if refs.shape[0] < n:
                raise ValueError("refs must have one row per op")
            ex.refs = <const JournalRec *> _data(refs, sizeof(JournalRec), "refs")
        if refunded is None:
            refunded = self.no_refunds
        if coupon_index is None:
            coupon_index = self.no_refunds
        ex.prefs = NULL
        if prefs is not None:
            if prefs.shape[0] < n:
                raise ValueError("prefs must have one row per op")
            ex.prefs = <const JournalRec *> _data(prefs, sizeof(JournalRec), "prefs")
        ex.coupon_ids = NULL
        ex.n_coupon_ids = 0
        ex.coupons = NULL
        ex.n_coupons = 0
        ex.ref_coupons = NULL
        ex.ref_coupons_off = NULL
        ex.ref_coupons_n = NULL
        cdef Py_ssize_t room = n
        if coupon_ids is not None and coupon_ids.shape[0]:
            if coupon_ids.dtype != np.uint64:
                raise ValueError("coupon_ids must be uint64")
            ex.coupon_ids = <const uint64_t *> _data(coupon_ids, 8, "coupon_ids")
            ex.n_coupon_ids = coupon_ids.shape[0]
            room += ex.n_coupon_ids
        if coupons is not None and coupons.shape[0]:
            ex.coupons = <const Coupon *> _data(coupons, sizeof(Coupon), "coupons")
            ex.n_coupons = coupons.shape[0]
        if ref_coupons is not None:
            if (ref_coupons.dtype != np.uint64 or ref_coupons_off is None or ref_coupons_n is None
                    or ref_coupons_off.dtype != np.uint32 or ref_coupons_n.dtype != np.uint8
                    or ref_coupons_off.shape[0] < n or ref_coupons_n.shape[0] < n):
                raise ValueError("ref_coupons needs uint32 offsets and uint8 counts per op")
            if np.any(ref_coupons_off[:n].astype(np.int64) + ref_coupons_n[:n] > ref_coupons.shape[0]):
                raise ValueError("ref_coupons offsets point past the array")
            ex.ref_coupons = <const uint64_t *> (cnp.PyArray_DATA(ref_coupons) if ref_coupons.shape[0] else NULL)
            ex.ref_coupons_off = <const uint32_t *> _data(ref_coupons_off, 4, "ref_coupons_off")
            ex.ref_coupons_n = <const uint8_t *> _data(ref_coupons_n, 1, "ref_coupons_n")
            room += ref_coupons.shape[0]
        # A refund in the batch may restore coupons its swipe (same batch) redeemed; a
        # supplementary card's swipe or a refund adds its primary card's record: room for
        # one more per op, or (a smaller array) exactly what these ops can need.
        if ex.n_coupon_ids:
            room += ex.n_coupon_ids
        cdef Py_ssize_t k, extra = 0
        cdef int64_t s_
        if out_recs.shape[0] < room + n:
            for k in range(n):
                if op_p[k].op_type == REFUND:
                    extra += 1
                elif op_p[k].op_type == SWIPE:
                    s_ = card_index.get(0, op_p[k].card_no)
                    if 0 <= s_ < cards.shape[0] and card_p[s_].primary_card_no != 0:
                        extra += 1
        else:
            extra = n
        if out_recs.shape[0] < room + extra:
            raise ValueError(f"out_recs needs room for {room + extra} records")
        self.ensure_slots(<size_t> cards.shape[0])
        self.rec_room = out_recs.shape[0]
        cdef Py_ssize_t n_cards = cards.shape[0]
        cdef Py_ssize_t n_recs
        with nogil:
            n_recs = self._run(op_p, n, card_p, n_cards, card_index, id_index, &rules.c,
                               now_s, first_seq, rec_p, res_p, slot_p, &ex, refunded,
                               coupon_index)
        return n_recs

    cdef uint8_t _load_coupons(self, const Op *op, const Extras *ex, KeyMap coupon_index,
                               Coupon *cps, int64_t *cslots) noexcept nogil:
        """Copy the coupons an op names, as this batch has left them; check they are the
        card's and unused."""
        cdef int k, m
        cdef int64_t slot, status
        cdef uint64_t cid
        if (op.coupons_n > COUPONS_PER_OP_MAX
                or <Py_ssize_t> op.coupons_off + op.coupons_n > ex.n_coupon_ids):
            return COUPONS_INVALID
        for k in range(op.coupons_n):
            cid = ex.coupon_ids[op.coupons_off + k]
            for m in range(k):
                if cps[m].coupon_id == cid:
                    return COUPON_USED
            slot = coupon_index.get(0, cid)
            if slot < 0 or slot >= ex.n_coupons:
                return COUPON_NOT_FOUND
            memcpy(&cps[k], &ex.coupons[slot], sizeof(Coupon))
            status = self.batch_coupons.get(0, cid)
            if status >= 0:
                cps[k].coupon_status = <uint8_t> status
            if cps[k].card_no != op.card_no:
                return COUPON_NOT_FOUND
            if cps[k].coupon_status != COUPON_ISSUED:
                return COUPON_USED
            cslots[k] = slot
        return OK

    cdef Py_ssize_t _coupon_rec(self, JournalRec *recs, Py_ssize_t n_recs, uint64_t first_seq,
                                const Op *op, const Coupon *cp, int64_t slot, uint8_t op_type,
                                int64_t amount, uint64_t ref_seq, uint64_t prev_seq,
                                int64_t *slots, const RulesC *R) noexcept nogil:
        debug_check_room(n_recs, self.rec_room)
        cdef JournalRec *r = &recs[n_recs]
        memset(r, 0, sizeof(JournalRec))
        r.seq = first_seq + <uint64_t> n_recs
        r.client_hi = op.client_hi
        r.client_lo = op.client_lo
        r.time_s = recs[n_recs - 1].time_s
        r.card_no = op.card_no
        r.prev_seq = prev_seq
        r.amount_fen = amount
        r.store_id = op.store_id
        r.terminal_id = op.terminal_id
        r.operator_id = op.operator_id
        r.rules_version = R.version
        r.op_type = op_type
        r.result = OK
        r.kind = KIND_COUPON
        r.ref_seq = ref_seq
        memcpy(&r.after, cp, sizeof(Coupon))
        self.batch_coupons.put(0, cp.coupon_id, cp.coupon_status, True)
        if slots != NULL:
            slots[n_recs] = slot
        return n_recs + 1

    cdef Py_ssize_t _restore_coupons(self, Py_ssize_t i, JournalRec *recs, Py_ssize_t n_recs,
                                     uint64_t first_seq, const Op *op, const JournalRec *orig,
                                     int64_t ref_prior, const Extras *ex, KeyMap coupon_index,
                                     int64_t *slots, const RulesC *R,
                                     uint64_t refund_seq) noexcept nogil:
        cdef Py_ssize_t j, n_ids = 0
        cdef uint64_t ids[COUPONS_PER_OP_MAX]
        cdef const Coupon *src
        cdef Coupon cp
        cdef int64_t slot, status
        if ref_prior >= 0:
            # The swipe is in this batch: its coupon records follow its card record.
            j = ref_prior + 1
            while (j < n_recs and n_ids < COUPONS_PER_OP_MAX and recs[j].kind == KIND_COUPON
                   and recs[j].client_hi == orig.client_hi and recs[j].client_lo == orig.client_lo):
                ids[n_ids] = (<const Coupon *> &recs[j].after).coupon_id
                n_ids += 1
                j += 1
        elif ex.ref_coupons != NULL:
            for j in range(ex.ref_coupons_n[i]):
                ids[n_ids] = ex.ref_coupons[ex.ref_coupons_off[i] + j]
                n_ids += 1
        for j in range(n_ids):
            slot = coupon_index.get(0, ids[j])
            if slot < 0 or slot >= ex.n_coupons:
                continue
            memcpy(&cp, &ex.coupons[slot], sizeof(Coupon))
            status = self.batch_coupons.get(0, ids[j])
            if status >= 0:
                cp.coupon_status = <uint8_t> status
            if cp.coupon_status != COUPON_REDEEMED:
                continue
            cp.coupon_status = COUPON_ISSUED
            cp.redeemed_seq = 0
            cp.redeemed_fen = 0
            cp.card_no = op.card_no      # the card that has replaced the swipe's, if any
            n_recs = self._coupon_rec(recs, n_recs, first_seq, op, &cp, slot, COUPON_RESTORE, 0,
                                      refund_seq, orig.seq, slots, R)
        return n_recs

    cdef int64_t _current_slot(self, uint64_t card_no, const Card *cards, Py_ssize_t n_cards,
                               KeyMap card_index, const JournalRec *recs) noexcept nogil:
        """The slot of the card that stands for card_no now: the card itself, or the card
        that replaced it (following replacements); -1 if there is none."""
        cdef int64_t slot = card_index.get(0, card_no)
        cdef uint8_t status
        cdef uint64_t replaced_by
        cdef int hops
        for hops in range(REPLACEMENTS_FOLLOWED_MAX):
            if slot < 0 or slot >= n_cards:
                return -1
            if self.newest[slot] >= 0:
                status = recs[self.newest[slot]].after.status
                replaced_by = recs[self.newest[slot]].after.replaced_by
            else:
                status = cards[slot].status
                replaced_by = cards[slot].replaced_by
            if status != CANCELLED or replaced_by == 0:
                return slot
            slot = card_index.get(0, replaced_by)
        return -1

    cdef const JournalRec *_payer_record(self, Py_ssize_t i, JournalRec *recs,
                                         Py_ssize_t n_recs, int64_t ref_prior,
                                         const JournalRec *orig, const Extras *ex) noexcept nogil:
        """The primary card's record of a supplementary card's swipe, if it had one."""
        cdef Py_ssize_t j
        if ref_prior >= 0:
            j = ref_prior + 1
            while (j < n_recs and recs[j].client_hi == orig.client_hi
                   and recs[j].client_lo == orig.client_lo):
                if recs[j].op_type == SUPP_DEBIT:
                    return &recs[j]
                j += 1
            return NULL
        if ex.prefs != NULL and ex.prefs[i].seq != 0:
            return &ex.prefs[i]
        return NULL

    cdef Py_ssize_t _run(self, const Op *ops, Py_ssize_t n, const Card *cards,
                         Py_ssize_t n_cards, KeyMap card_index, KeyMap id_index,
                         const RulesC *R, int64_t now_s, uint64_t first_seq,
                         JournalRec *recs, OpResult *res, int64_t *slots,
                         const Extras *ex, KeyMap refunded, KeyMap coupon_index) noexcept nogil:
        cdef Py_ssize_t i, n_recs = 0
        cdef int64_t slot, prior
        cdef const Op *op
        cdef JournalRec *rec
        cdef Card c
        cdef uint8_t code
        cdef bint journal
        cdef const JournalRec *orig
        cdef Coupon cps[COUPONS_PER_OP_MAX]
        cdef Card pc
        cdef Card *payer
        cdef const JournalRec *porig
        cdef JournalRec *prec
        cdef int64_t payer_slot
        cdef int64_t cslots[COUPONS_PER_OP_MAX]
        cdef int64_t offs[COUPONS_PER_OP_MAX]
        cdef int n_cps, k
        cdef uint8_t coupon_code
        cdef int64_t ref_prior, refunded_before = 0
        cdef bint refunded_any = False
        cdef int64_t ring[PREFETCH_AHEAD]
        cdef int64_t ahead
        cdef Py_ssize_t j
        # Every record of the batch has time now_s: its points go to one year's lot.
        cdef int32_t year = civil_year(now_s, R.tz_offset_s) if R.points_valid_years else 0
        # At most one id is put per op (below): room for n, and a small batch zeroes a
        # small table, not one sized for batch_max (a 3-op batch zeroed 393 KB of the
        # two maps; callgrind, docs/benchmarks.md issue 15 session 10). A batch without
        # coupons leaves batch_coupons empty: nothing to zero.
        self.batch_ids.reset(n)
        self.batch_coupons.clear()
        # Every probe below is a random memory access. Two stages hide their latency:
        # 2*PREFETCH_AHEAD ops ahead the index entries are fetched; PREFETCH_AHEAD ahead
        # the slot is looked up (now cached), kept in a ring, and the card row fetched.
        # The first coupon an op names is fetched the same way: its index entry, then
        # its row.
        for j in range(min(n, 2 * PREFETCH_AHEAD)):
            card_index.prefetch(0, ops[j].card_no)
            id_index.prefetch(ops[j].client_hi, ops[j].client_lo)
            if ops[j].coupons_n and ops[j].coupons_off < ex.n_coupon_ids:
                coupon_index.prefetch(0, ex.coupon_ids[ops[j].coupons_off])
        for j in range(min(n, PREFETCH_AHEAD)):
            ring[j] = card_index.get(0, ops[j].card_no)
        for i in range(n):
            if i + 2 * PREFETCH_AHEAD < n:
                op = &ops[i + 2 * PREFETCH_AHEAD]
                card_index.prefetch(0, op.card_no)
                id_index.prefetch(op.client_hi, op.client_lo)
                if op.coupons_n and op.coupons_off < ex.n_coupon_ids:
                    coupon_index.prefetch(0, ex.coupon_ids[op.coupons_off])
            slot = ring[i % PREFETCH_AHEAD]
            if i + PREFETCH_AHEAD < n:
                op = &ops[i + PREFETCH_AHEAD]
                ahead = card_index.get(0, op.card_no)
                ring[i % PREFETCH_AHEAD] = ahead
                if 0 <= ahead < n_cards:
                    prefetch_row(&cards[ahead], sizeof(Card))
                    __builtin_prefetch(&self.newest[ahead])
                if op.coupons_n and op.coupons_off < ex.n_coupon_ids:
                    ahead = coupon_index.get(0, ex.coupon_ids[op.coupons_off])
                    if 0 <= ahead < ex.n_coupons:
                        prefetch_row(&ex.coupons[ahead], sizeof(Coupon))
            op = &ops[i]
            res[i].seq = 0
            res[i].rec_index = -1
            res[i].replayed = 0
            res[i]._reserved = 0
            if op.client_hi == 0 and op.client_lo == 0:
                res[i].code = CLIENT_ID_INVALID
                continue
            # A client id seen in this batch or committed before: answer with the
            # first result, apply nothing.
            prior = self.batch_ids.get(op.client_hi, op.client_lo)
            if prior >= 0:
                res[i].code = recs[prior].result
                res[i].replayed = 1
                res[i].rec_index = <int32_t> prior
                res[i].seq = recs[prior].seq
                continue
            prior = id_index.get(op.client_hi, op.client_lo)
            if prior >= 0:
                res[i].code = <uint8_t> (prior & 0xFF)
                res[i].replayed = 1
                res[i].seq = <uint64_t> (prior >> 8)
                continue
            if (op.op_type != SWIPE and op.op_type != RECHARGE and op.op_type != USE_COUNT
                    and op.op_type != REFUND):
                res[i].code = OP_TYPE_INVALID
                continue
            orig = NULL
            ref_prior = -1
            if op.op_type == REFUND:
                # The swipe to reverse: earlier in this batch, or committed (refs).
                ref_prior = self.batch_ids.get(op.ref_hi, op.ref_lo)
                if ref_prior >= 0:
                    orig = &recs[ref_prior]
                elif ex.refs != NULL and ex.refs[i].seq != 0:
                    orig = &ex.refs[i]
                if orig == NULL:
                    res[i].code = REFUND_TARGET_NOT_FOUND
                    continue
                refunded_before = refunded.get(0, orig.seq)
                refunded_any = refunded_before >= 0
                if refunded_before < 0:
                    refunded_before = 0
            if op.card_no == 0:
                res[i].code = CARD_NO_INVALID
                continue
            if slot < 0 or slot >= n_cards:
                res[i].code = CARD_NOT_FOUND
                continue
            # The card as this op must see it: its newest record in this batch, or the
            # working table.
            if self.newest[slot] >= 0:
                memcpy(&c, &recs[self.newest[slot]].after, sizeof(Card))
            else:
                memcpy(&c, &cards[slot], sizeof(Card))
            n_cps = 0
            coupon_code = OK
            if op.op_type == SWIPE and op.coupons_n:
                # A coupon that is not the card's or is used is answered by the swipe in
                # the coupons' place: a lost card, a locked or wrong PIN come first (a
                # wrong PIN is journalled even with a bad coupon).
                coupon_code = self._load_coupons(op, ex, coupon_index, cps, cslots)
                if coupon_code == OK:
                    n_cps = op.coupons_n
            # A supplementary card's swipe pays from its primary card; the refund of such
            # a swipe pays the primary back.
            payer = NULL
            porig = NULL
            payer_slot = -1
            if (op.op_type == SWIPE and c.primary_card_no != 0
                    and not (op.op_flags & PAY_EXTERNAL)):
                payer_slot = card_index.get(0, c.primary_card_no)
                if payer_slot < 0 or payer_slot >= n_cards or payer_slot == slot:
                    res[i].code = CARD_NOT_FOUND
                    continue
            elif op.op_type == REFUND:
                porig = self._payer_record(i, recs, n_recs, ref_prior, orig, ex)
                if porig != NULL:
                    payer_slot = self._current_slot(porig.card_no, cards, n_cards,
                                                    card_index, recs)
                    if payer_slot < 0 or payer_slot >= n_cards or payer_slot == slot:
                        res[i].code = CARD_NOT_FOUND
                        continue
            if payer_slot >= 0:
                if self.newest[payer_slot] >= 0:
                    memcpy(&pc, &recs[self.newest[payer_slot]].after, sizeof(Card))
                else:
                    memcpy(&pc, &cards[payer_slot], sizeof(Card))
                code = card_usable(&pc, now_s) if op.op_type == SWIPE else (
                    CARD_CANCELLED if pc.status == CANCELLED else OK)
                if code != OK:
                    res[i].code = code
                    continue
                payer = &pc
            debug_check_room(n_recs, self.rec_room)
            rec = &recs[n_recs]
            rec.time_s = now_s
            rec.coupon_fen = 0
            rec.commission_fen = 0
            journal = False
            if op.op_type == SWIPE:
                code = do_swipe(op, &c, rec, R, ex.items, ex.n_items, &journal, cps, n_cps, offs,
                                payer, coupon_code, year)
            elif op.op_type == RECHARGE:
                code = do_recharge(op, &c, rec, R, year)
            elif op.op_type == REFUND:
                code = do_refund(op, &c, rec, R, orig, refunded_before, porig, payer,
                                 orig.card_no == op.card_no or self._current_slot(
                                     orig.card_no, cards, n_cards, card_index, recs) == slot,
                                 refunded_any)
            else:
                code = do_use_count(op, &c, rec, R, &journal)
            res[i].code = code
            if code != OK and not journal:
                continue
            rec.seq = first_seq + <uint64_t> n_recs
            rec.client_hi = op.client_hi
            rec.client_lo = op.client_lo
            rec.card_no = op.card_no
            rec.prev_seq = c.last_seq
            rec.amount_fen = op.amount_fen
            rec.store_id = op.store_id
            rec.terminal_id = op.terminal_id
            rec.operator_id = op.operator_id
            rec.rules_version = R.version
            rec.category = op.category
            rec.op_type = op.op_type
            rec.result = code
            rec.op_flags = op.op_flags
            rec.kind = KIND_CARD
            rec._reserved0 = 0
            rec.ref_seq = orig.seq if orig != NULL else 0
            if orig != NULL:
                refunded.put(0, orig.seq, refunded_before + op.amount_fen, True)
            c.last_seq = rec.seq
            debug_check_points(&c)
            memcpy(&rec.after, &c, sizeof(Card))
            self.newest[slot] = <int32_t> n_recs
            if slots != NULL:
                slots[n_recs] = slot
            self.batch_ids.put(op.client_hi, op.client_lo, n_recs, False)
            res[i].seq = rec.seq
            res[i].rec_index = <int32_t> n_recs
            n_recs += 1
            if code != OK:
                continue
            # The coupons the swipe redeemed, each as a record of its own after the card's.
            for k in range(n_cps):
                cps[k].coupon_status = COUPON_REDEEMED
                cps[k].redeemed_seq = rec.seq
                cps[k].redeemed_fen = offs[k]
                n_recs = self._coupon_rec(recs, n_recs, first_seq, op, &cps[k], cslots[k],
                                          COUPON_REDEEM, offs[k], rec.seq, cps[k].issued_seq,
                                          slots, R)
            # A refund that completes the whole gives the swipe's coupons back.
            if orig != NULL and refunded_before + op.amount_fen == orig.payable_fen - orig.coupon_fen:
                n_recs = self._restore_coupons(i, recs, n_recs, first_seq, op, orig, ref_prior,
                                               ex, coupon_index, slots, R, rec.seq)
            # The primary card's side: the money moves there, as a record of its own.
            if payer != NULL:
                debug_check_room(n_recs, self.rec_room)
                prec = &recs[n_recs]
                memset(prec, 0, sizeof(JournalRec))
                prec.seq = first_seq + <uint64_t> n_recs
                prec.client_hi = op.client_hi
                prec.client_lo = op.client_lo
                prec.time_s = now_s
                prec.card_no = pc.card_no
                prec.prev_seq = pc.last_seq
                prec.amount_fen = op.amount_fen
                prec.principal_delta_fen = rec.principal_delta_fen
                prec.bonus_delta_fen = rec.bonus_delta_fen
                rec.principal_delta_fen = 0
                rec.bonus_delta_fen = 0
                prec.store_id = op.store_id
                prec.terminal_id = op.terminal_id
                prec.operator_id = op.operator_id
                prec.rules_version = R.version
                prec.op_type = SUPP_DEBIT
                prec.result = OK
                prec.kind = KIND_CARD
                prec.level_before = pc.level
                prec.ref_seq = rec.seq
                pc.last_seq = prec.seq
                debug_check_points(&pc)
                memcpy(&prec.after, &pc, sizeof(Card))
                self.newest[payer_slot] = <int32_t> n_recs
                if slots != NULL:
                    slots[n_recs] = payer_slot
                n_recs += 1
        # Leave the scratch index clean for the next batch: the slots say where each
        # card record went (a coupon record's slot is its coupon's: skipped, its card's
        # record is in the batch too); without them, a probe per record.
        for i in range(n_recs):
            if slots != NULL:
                if recs[i].kind == KIND_CARD:
                    self.newest[slots[i]] = -1
            else:
                self.newest[card_index.get(0, recs[i].card_no)] = -1
        return n_recs


cdef Py_ssize_t _publish_loop(const JournalRec *rec_p, Py_ssize_t n_recs, Card *card_p,
                              Py_ssize_t cap, KeyMap card_index, KeyMap id_index,
                              Py_ssize_t n_cards, uint8_t *dirty, int chunk_shift,
                              const int64_t *slot_p, bint known_only) except -1 nogil:
    """publish()'s loop. known_only: every card record's slot is given and valid (a hot
    batch of apply_batch), so nothing is inserted into card_index; a record without a
    valid slot then raises ValueError."""
    cdef Py_ssize_t i
    cdef int64_t slot
    for i in range(n_recs):
        if i + PREFETCH_AHEAD < n_recs:
            if id_index is not None:
                id_index.prefetch(rec_p[i + PREFETCH_AHEAD].client_hi,
                                  rec_p[i + PREFETCH_AHEAD].client_lo)
            if (slot_p != NULL and rec_p[i + PREFETCH_AHEAD].kind == KIND_CARD
                    and 0 <= slot_p[i + PREFETCH_AHEAD] < cap):
                prefetch_row(&card_p[slot_p[i + PREFETCH_AHEAD]], sizeof(Card))
        if rec_p[i].kind != KIND_CARD:
            continue
        if slot_p != NULL:
            slot = slot_p[i]
        else:
            slot = card_index.get(0, rec_p[i].card_no)
        if slot < 0 or slot >= cap:
            if known_only or slot >= cap:
                with gil:
                    raise ValueError(f"record {i}: card {rec_p[i].card_no} has no slot in the table")
            if n_cards >= cap:
                with gil:
                    raise ValueError("card table is full; grow it before publish")
            slot = n_cards
            n_cards += 1
            card_index.put(0, rec_p[i].card_no, slot, True)
        memcpy(&card_p[slot], &rec_p[i].after, sizeof(Card))
        if dirty != NULL:
            dirty[slot >> chunk_shift] = 1
        # The first record of an op claims the client id; a later record of the same
        # op (a multi-card op) keeps pointing at the first.
        if id_index is not None:
            id_index.put(rec_p[i].client_hi, rec_p[i].client_lo,
                         id_value(rec_p[i].seq, rec_p[i].result), False)
    return n_cards


cdef int _publish_args(cnp.ndarray recs, Py_ssize_t n_recs, Py_ssize_t cap,
                       cnp.ndarray dirty_chunks, int chunk_shift, cnp.ndarray slots,
                       bint release_gil, uint8_t **dirty, int64_t **slot_p) except -1:
    """The checks publish() and publish_coupons() make of their arguments; sets the
    dirty chunk and slot pointers (NULL when not given)."""
    if n_recs > recs.shape[0]:
        raise ValueError("n_recs exceeds the record array")
    if dirty_chunks is not None:
        if dirty_chunks.dtype != np.uint8 or dirty_chunks.shape[0] < ((cap - 1) >> chunk_shift) + 1:
            raise ValueError("dirty_chunks must be uint8 covering every chunk of the table")
        dirty[0] = <uint8_t *> _data(dirty_chunks, 1, "dirty_chunks")
    if slots is not None:
        if slots.dtype != np.int64 or slots.shape[0] < n_recs:
            raise ValueError("slots must be int64 with one per record")
        slot_p[0] = <int64_t *> _data(slots, 8, "slots")
    elif release_gil:
        raise ValueError("release_gil needs the slots of apply_batch")
    return 0


def publish(cnp.ndarray recs, Py_ssize_t n_recs, cnp.ndarray cards, KeyMap card_index,
            KeyMap id_index, Py_ssize_t n_cards, cnp.ndarray dirty_chunks, int chunk_shift,
            cnp.ndarray slots=None, bint release_gil=False):  # id_index and dirty_chunks may be None
    """Copy the card after-images among records into a card table (records of another
    kind are skipped); return n_cards after.

    Runs with the GIL held by default so that readers never see a half-copied card.
    slots (from apply_batch, one per record) saves the index probe; a record of an
    unknown card (ISSUE) takes the next free slot, and the caller guarantees the table
    has room. id_index, when given, learns each record's client id (first record of an
    op wins); dirty_chunks, when given, marks the chunks that the next checkpoint must
    write.

    release_gil: copy without the GIL, for a table and an id index that no other thread
    reads or writes meanwhile (the applier's work table: Engine._publish_work). It needs
    slots, and every card record's slot must be valid: nothing is inserted into
    card_index (which readers probe under the GIL), else ValueError.
    """
    cdef JournalRec *rec_p = <JournalRec *> _data(recs, sizeof(JournalRec), "recs")
    cdef Card *card_p = <Card *> _data(cards, sizeof(Card), "cards")
    cdef Py_ssize_t cap = cards.shape[0]
    cdef int64_t *slot_p = NULL
    cdef uint8_t *dirty = NULL
    _publish_args(recs, n_recs, cap, dirty_chunks, chunk_shift, slots, release_gil, &dirty, &slot_p)
    if release_gil:
        with nogil:
            n_cards = _publish_loop(rec_p, n_recs, card_p, cap, card_index, id_index, n_cards,
                                    dirty, chunk_shift, slot_p, True)
        return n_cards
    return _publish_loop(rec_p, n_recs, card_p, cap, card_index, id_index, n_cards, dirty,
                         chunk_shift, slot_p, False)


cdef Py_ssize_t _publish_coupons_loop(const JournalRec *rec_p, Py_ssize_t n_recs,
                                      Coupon *cp_p, Py_ssize_t cap, KeyMap coupon_index,
                                      Py_ssize_t n_coupons, uint8_t *dirty, int chunk_shift,
                                      const int64_t *slot_p) except -1 nogil:
    """publish_coupons()'s loop. slot_p: each coupon record's slot (apply_batch's), a
    coupon already in the table: no index probe, nothing inserted (else ValueError)."""
    cdef Py_ssize_t i
    cdef int64_t slot
    cdef const Coupon *src
    for i in range(n_recs):
        if rec_p[i].kind != KIND_COUPON:
            continue
        src = <const Coupon *> &rec_p[i].after
        if slot_p != NULL:
            slot = slot_p[i]
            if slot < 0 or slot >= n_coupons or cp_p[slot].coupon_id != src.coupon_id:
                with gil:
                    raise ValueError(f"record {i}: coupon {src.coupon_id} is not in slot {slot}")
        else:
            slot = coupon_index.get(0, src.coupon_id)
            if slot < 0:
                if n_coupons >= cap:
                    with gil:
                        raise ValueError("coupon table is full; grow it before publish")
                slot = n_coupons
                n_coupons += 1
                coupon_index.put(0, src.coupon_id, slot, True)
        memcpy(&cp_p[slot], src, sizeof(Coupon))
        if dirty != NULL:
            dirty[slot >> chunk_shift] = 1
    return n_coupons


def publish_coupons(cnp.ndarray recs, Py_ssize_t n_recs, cnp.ndarray coupons,
                    KeyMap coupon_index, Py_ssize_t n_coupons, cnp.ndarray dirty_chunks,
                    int chunk_shift, cnp.ndarray slots=None, bint release_gil=False):
    """Copy the coupon after-images among records into a coupon table; return the number
    of coupons after. A coupon not seen before takes the next free slot (the caller
    guarantees room); dirty_chunks (optional) marks what the next checkpoint writes.

    slots (apply_batch's, one per record) saves the index probe of a hot batch, whose
    coupons are all in the table (each is checked to be in its slot). release_gil: copy
    without the GIL, for a table no other thread reads meanwhile (the applier's work
    table); it needs slots."""
    cdef JournalRec *rec_p = <JournalRec *> _data(recs, sizeof(JournalRec), "recs")
    cdef Coupon *cp_p = <Coupon *> _data(coupons, sizeof(Coupon), "coupons")
    cdef Py_ssize_t cap = coupons.shape[0]
    cdef int64_t *slot_p = NULL
    cdef uint8_t *dirty = NULL
    if n_coupons > cap:
        raise ValueError("n_coupons exceeds the coupon table")
    _publish_args(recs, n_recs, cap, dirty_chunks, chunk_shift, slots, release_gil, &dirty, &slot_p)
    if release_gil:
        with nogil:
            n_coupons = _publish_coupons_loop(rec_p, n_recs, cp_p, cap, coupon_index, n_coupons,
                                              dirty, chunk_shift, slot_p)
        return n_coupons
    return _publish_coupons_loop(rec_p, n_recs, cp_p, cap, coupon_index, n_coupons, dirty,
                                 chunk_shift, slot_p)


cdef packed struct IdRow:      # storage.IDS_DTYPE: a client id and its packed seq/result
    uint64_t hi
    uint64_t lo
    uint64_t seq


cdef packed struct ItemRec:    # rollups.JOURNAL_ITEM: a line item with its op's seq
    uint64_t seq
    Item item


def block_facts(cnp.ndarray recs, Py_ssize_t n_recs, cnp.ndarray ids_out):
    """One pass over a block of records for its publish (writer._facts): fills ids_out
    (storage.IDS_DTYPE, one row per record: the client id and seq << 8 | result) and
    returns (the number of REFUND records, the number of coupon records)."""
    cdef const JournalRec *rec_p = <const JournalRec *> _data(recs, sizeof(JournalRec), "recs")
    cdef IdRow *out = <IdRow *> _data(ids_out, sizeof(IdRow), "ids_out")
    cdef Py_ssize_t i, refunds = 0, coupons = 0
    if n_recs > recs.shape[0] or n_recs > ids_out.shape[0]:
        raise ValueError("n_recs exceeds the record or id array")
    with nogil:
        for i in range(n_recs):
            out[i].hi = rec_p[i].client_hi
            out[i].lo = rec_p[i].client_lo
            out[i].seq = (rec_p[i].seq << 8) | rec_p[i].result
            if rec_p[i].op_type == REFUND:
                refunds += 1
            if rec_p[i].kind == KIND_COUPON:
                coupons += 1
    return refunds, coupons


def journal_items(cnp.ndarray ops, cnp.ndarray results, cnp.ndarray lines, cnp.ndarray out):
    """The line items of a batch's applied ops (OK, not replayed) as journalled, in op
    order, each with the seq of its op's record, into out (rollups.JOURNAL_ITEM, at
    least len(lines) rows); returns how many rows it filled. An op's items_off/items_n
    outside lines is an error (submit checks them)."""
    cdef const Op *op_p = <const Op *> _data(ops, sizeof(Op), "ops")
    cdef const OpResult *res_p = <const OpResult *> _data(results, sizeof(OpResult), "results")
    cdef const Item *item_p = <const Item *> _data(lines, sizeof(Item), "lines")
    cdef ItemRec *out_p = <ItemRec *> _data(out, sizeof(ItemRec), "out")
    cdef Py_ssize_t n = ops.shape[0], n_lines = lines.shape[0], cap = out.shape[0]
    cdef Py_ssize_t i, j, m = 0
    cdef bint bad = False
    if results.shape[0] < n:
        raise ValueError("results must have one row per op")
    with nogil:
        for i in range(n):
            if op_p[i].items_n == 0 or res_p[i].code != OK or res_p[i].replayed:
                continue
            if (<Py_ssize_t> op_p[i].items_off + op_p[i].items_n > n_lines
                    or m + op_p[i].items_n > cap):
                bad = True
                break
            for j in range(op_p[i].items_n):
                out_p[m].seq = res_p[i].seq
                memcpy(&out_p[m].item, &item_p[op_p[i].items_off + j], sizeof(Item))
                m += 1
    if bad:
        raise ValueError(f"op {i}: its items lie outside the lines or the output")
    return m


# The hash of the sources this module was compiled from (setup.py passes it; see
# core/_source_hash.py): a test compares it with the sources on disk.
cdef extern from *:
    """
    #ifndef MMS_SOURCE_SHA
    #define MMS_SOURCE_SHA ""
    #endif
    """
    const char *MMS_SOURCE_SHA

SOURCE_SHA = (<bytes>MMS_SOURCE_SHA).decode("ascii")
