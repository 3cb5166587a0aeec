# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The rollup tailer's per-record loops in C, without the GIL (core/engine/rollups.py,
rollup_lots.py, behaviour.py call them; docs/internals/reports.md "Cost" says why).

Each function is one pass over arrays numpy already holds and gives exactly what the
numpy code it replaced gave (the property tests compare them with the rule or with a
recomputation); nothing here touches LMDB or the journal's layout.

- card_columns: a journal block's OK card records, their columns and the settlement's
  lot records (rollups.Summer);
- fast_cards, fifo_settle: the settlement's FIFO lots of the cards that only add and
  take principal, a queue per card walked in seq order, the pieces summed per (day,
  recharge store, spend store) and the spends' taken entries (rollup_lots.replay);
- behaviour_block: behaviour per card and member (behaviour.Behaviour);
- CardTally: card events and member activity (rollups.card_event_rows, activity_of);
- Sums: a hash table of int64 rows keyed by one to four 64-bit words, each column
  summed, or merged by the least positive value, or the greatest; sales_add: the sales
  rows of journal records into one (rollups.Summer).
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t


from core._fastpath cimport JournalRec

cnp.import_array()

# How a Sums column merges a new value into its row.
DEF _SUM = 0
DEF _MIN_POSITIVE = 1
DEF _CHUNK = 65536
SUM = _SUM
MIN_POSITIVE = _MIN_POSITIVE     # the least value > 0 (0: none yet)
MAX = 2


cdef inline uint64_t _mix(uint64_t a, uint64_t b) noexcept nogil:
    cdef uint64_t h = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL)
    h ^= h >> 29
    h *= 0xBF58476D1CE4E5B9ULL
    h ^= h >> 32
    return h


cdef extern from *:
    bint __builtin_add_overflow(int64_t a, int64_t b, int64_t *r) nogil
    void __builtin_prefetch(const void *addr) nogil


DEF _KW_MAX = 4


cdef inline uint64_t _hash(const uint64_t *k, Py_ssize_t kw) noexcept nogil:
    cdef uint64_t h = _mix(k[0], k[1] if kw > 1 else 0)
    if kw > 2:
        h = _mix(h, k[2] * 0xD6E8FEB86659FD93ULL ^ (k[3] if kw > 3 else 0))
    return h


cdef inline bint _merge_row(int64_t *v, const int64_t *x, const uint8_t *op,
                            Py_ssize_t nc) noexcept nogil:
    """Merge x into v column by column (op: SUM, checked; MIN_POSITIVE; MAX); True if a
    sum overflowed int64."""
    cdef Py_ssize_t c
    cdef bint over = False
    for c in range(nc):
        if op[c] == _SUM:
            over |= __builtin_add_overflow(v[c], x[c], &v[c])
        elif op[c] == _MIN_POSITIVE:
            if x[c] > 0 and (v[c] <= 0 or x[c] < v[c]):
                v[c] = x[c]
        elif x[c] > v[c]:
            v[c] = x[c]
    return over


cdef class Sums:
    """Distinct keys of key_words 64-bit words (1 to 4) and an int64 row each, merged
    column by column (SUM, checked against int64 overflow; MIN_POSITIVE; MAX): an open
    addressing table (load at most 1/2) over rows kept in numpy arrays. The one table of
    the tailer's sums: behaviour, card events and activity (two words), the settlement
    pieces, the sales rows (four words, sales_add)."""

    cdef object _keys, _vals, _slots, _ops, _kbuf, _hbuf
    cdef uint64_t *kp
    cdef int64_t *vp
    cdef int64_t *sp
    cdef const uint8_t *op
    cdef bint all_sum
    cdef Py_ssize_t n, rows_cap, cap
    cdef readonly Py_ssize_t ncols, kw

    def __cinit__(self, ops, Py_ssize_t rows_hint=1024, Py_ssize_t key_words=2):
        self._ops = np.ascontiguousarray(ops, np.uint8)
        self.ncols = len(self._ops)
        if self.ncols == 0:
            raise ValueError("Sums: no columns")
        if not 1 <= key_words <= _KW_MAX:
            raise ValueError("Sums: 1 to 4 key words")
        cdef const uint8_t[::1] o = self._ops
        self.op = &o[0]
        self.all_sum = bool((self._ops == _SUM).all())
        self.kw = key_words
        self.n = 0
        self.rows_cap = 0
        self._grow(max(rows_hint, 16))
        self._kbuf = self._hbuf = None

    def _grow(self, Py_ssize_t need):
        cdef Py_ssize_t rows_cap = max(need, 2 * self.rows_cap)
        cdef Py_ssize_t cap = 16
        while cap < 2 * rows_cap:
            cap <<= 1
        keys = np.zeros((rows_cap, self.kw), np.uint64)
        vals = np.zeros((rows_cap, self.ncols), np.int64)
        if self.n:
            keys[:self.n] = self._keys[:self.n]
            vals[:self.n] = self._vals[:self.n]
        slots = np.full(cap, -1, np.int64)
        cdef uint64_t[:, ::1] K = keys
        cdef int64_t[:, ::1] V = vals
        cdef int64_t[::1] S = slots
        cdef Py_ssize_t r, i
        cdef uint64_t mask = cap - 1
        for r in range(self.n):
            i = _hash(&K[r, 0], self.kw) & mask
            while S[i] >= 0:
                i = (i + 1) & mask
            S[i] = r
        self._keys, self._vals, self._slots = keys, vals, slots
        self.kp, self.vp, self.sp = &K[0, 0], &V[0, 0], &S[0]
        self.rows_cap, self.cap = rows_cap, cap

    def __len__(self):
        return self.n

    cdef inline Py_ssize_t _row(self, const uint64_t *key, uint64_t h) noexcept nogil:
        """The row of key, a new zero row if it is new (room for it must exist)."""
        cdef uint64_t mask = self.cap - 1
        cdef Py_ssize_t i = h & mask, r, c, kw = self.kw
        cdef uint64_t *k
        while True:
            r = self.sp[i]
            if r < 0:
                r = self.n
                self.n += 1
                self.sp[i] = r
                k = self.kp + r * kw
                for c in range(kw):
                    k[c] = key[c]
                return r
            k = self.kp + r * kw
            if (k[0] == key[0] and (kw < 2 or k[1] == key[1]) and (kw < 3 or k[2] == key[2])
                    and (kw < 4 or k[3] == key[3])):
                return r
            i = (i + 1) & mask

    cdef inline bint _merge(self, Py_ssize_t r, const int64_t *x) noexcept nogil:
        """Merge x into row r; True if a sum overflowed int64."""
        cdef Py_ssize_t c, nc = self.ncols
        cdef int64_t *v = self.vp + r * nc
        cdef bint over = False
        if self.all_sum:
            for c in range(nc):
                over |= __builtin_add_overflow(v[c], x[c], &v[c])
            return over
        return _merge_row(v, x, self.op, nc)

    def add(self, const uint64_t[::1] k0, const uint64_t[::1] k1, const int64_t[:, ::1] vals):
        """Merge rows (k0[j], k1[j]) -> vals[j] into a table of two key words."""
        cdef Py_ssize_t m = k0.shape[0], lo
        if self.kw != 2:
            raise ValueError("add: a table of two key words (add_rows for others)")
        if k1.shape[0] != m or vals.shape[0] != m:
            raise ValueError("k0, k1, vals: lengths differ")
        if m and vals.shape[1] != self.ncols:
            raise ValueError("vals: wrong number of columns")
        # In chunks, so that the table grows with the distinct keys, not the rows.
        for lo in range(0, m, _CHUNK):
            self._add2(k0, k1, vals, lo, min(m, lo + _CHUNK))

    cdef _scratch(self, Py_ssize_t m):
        """Room for m keys (kw words each) and their hashes in the scratch buffers."""
        if self._hbuf is None or self._hbuf.shape[0] < m:
            self._hbuf = np.empty(max(m, 1024), np.uint64)
            self._kbuf = np.empty((max(m, 1024), self.kw), np.uint64)

    cdef bint _add_many(self, const uint64_t *keys, const int64_t *vals, Py_ssize_t m,
                        uint64_t *h) noexcept nogil:
        """Merge m rows (keys: m x kw words, vals: m x ncols, both packed) into the table,
        which has room for m new rows; h: scratch for m hashes. Two passes: every key's
        slot first (sequential), then the probes with the slot 16 rows ahead and its row
        8 ahead prefetched (the tables of a flush are larger than the caches: a probe
        without it waits for memory each time). True if a sum overflowed int64."""
        cdef Py_ssize_t j, kw = self.kw, nc = self.ncols
        cdef uint64_t mask = self.cap - 1
        cdef bint over = False
        for j in range(m):
            h[j] = _hash(keys + j * kw, kw) & mask
        for j in range(m):
            self._prefetch(h, j, m)
            over |= self._merge(self._row(keys + j * kw, h[j]), vals + j * nc)
        return over

    cdef inline void _prefetch(self, const uint64_t *h, Py_ssize_t j, Py_ssize_t m) noexcept nogil:
        """The second pass's prefetch at key j of m (h: their slots): the slot 16 keys
        ahead, the row of the one 8 ahead."""
        cdef Py_ssize_t q, c
        if j + 16 < m:
            __builtin_prefetch(&self.sp[h[j + 16]])
        if j + 8 < m:
            q = self.sp[h[j + 8]]
            if q >= 0:
                __builtin_prefetch(self.kp + q * self.kw)
                for c in range(0, self.ncols, 8):
                    __builtin_prefetch(self.vp + q * self.ncols + c)

    cdef _add2(self, const uint64_t[::1] k0, const uint64_t[::1] k1,
               const int64_t[:, ::1] vals, Py_ssize_t lo, Py_ssize_t hi):
        cdef Py_ssize_t j, m = hi - lo
        cdef bint over = False
        if self.n + m > self.rows_cap:
            self._grow(self.n + m)
        self._scratch(m)
        cdef uint64_t[:, ::1] K = self._kbuf
        cdef uint64_t[::1] H = self._hbuf
        with nogil:
            for j in range(m):
                K[j, 0], K[j, 1] = k0[lo + j], k1[lo + j]
            over = self._add_many(&K[0, 0], &vals[lo, 0], m, &H[0])
        if over:
            raise OverflowError("a rollup sum overflows int64")

    def add_rows(self, const uint64_t[:, ::1] keys, const int64_t[:, ::1] vals):
        """Merge rows keys[j] (n x key_words, as rows() gives them) -> vals[j]."""
        cdef Py_ssize_t m = keys.shape[0]
        if keys.shape[1] != self.kw or vals.shape[0] != m or (m and vals.shape[1] != self.ncols):
            raise ValueError("keys n x key_words, vals n x ncols")
        if m == 0:
            return
        if self.n + m > self.rows_cap:
            self._grow(self.n + m)
        self._scratch(m)
        cdef uint64_t[::1] H = self._hbuf
        cdef bint over = False
        with nogil:
            over = self._add_many(&keys[0, 0], &vals[0, 0], m, &H[0])
        if over:
            raise OverflowError("a rollup sum overflows int64")

    def clear(self):
        """Empty the table and keep its room: the next rows go into memory already
        mapped (a table made anew each flush grows from its hint again, each step a
        rehash into freshly zeroed pages)."""
        if self.n:
            self._vals[:self.n] = 0
            self._slots.fill(-1)
        self.n = 0

    def rows(self):
        """(n x key_words uint64 keys, n x ncols int64), copies, in the order keys first
        came."""
        return self._keys[:self.n].copy(), self._vals[:self.n].copy()

    def sorted_ids(self):
        """(the ids ascending, the order of the rows that gives them) of a table keyed
        by one id (its first key word, the others 0)."""
        cdef Py_ssize_t n = self.n
        if n and self.kw > 1 and (self._keys[:n, 1:] != 0).any():
            raise ValueError("sorted_ids: rows keyed by one id (the other key words 0)")
        keys = self._keys[:n, 0]
        order = np.argsort(keys)            # distinct: any sort
        return keys[order], order

    def merge_into(self, cnp.ndarray stored, const int64_t[::1] order):
        """Merge the rows of a table keyed by one id (order: sorted_ids') into stored rows
        of the same ids, column by column as add does: stored is a C-contiguous array of
        rows (u8 id, then ncols int64), sorted by id, one row per id (core.engine.
        card_blocks' rows of the blocks the ids fall in), changed in place. Returns, per
        id in order, the index of its row in stored (-1: none, nothing merged for it).
        One walk of both in id order: no search per id."""
        cdef Py_ssize_t nc = self.ncols, n = self.n, ns = stored.shape[0], j, r, a = 0
        cdef Py_ssize_t w = stored.dtype.itemsize, kw = self.kw
        if order.shape[0] != n:
            raise ValueError("order: one per row")
        if not stored.flags.c_contiguous or not stored.flags.writeable or w != 8 * (nc + 1):
            raise ValueError("stored: writable C-contiguous rows of (u8 id, ncols int64)")
        for j in range(n):
            if order[j] < 0 or order[j] >= n:
                raise IndexError("order out of the rows")
        at = np.full(n, -1, np.int64)
        cdef int64_t[::1] AT = at
        cdef uint8_t *base = <uint8_t *> cnp.PyArray_DATA(stored)
        cdef uint64_t *row
        cdef uint64_t key, prev = 0
        cdef bint over = False, unsorted = False
        with nogil:
            for j in range(n):
                r = order[j]
                if j + 8 < n:
                    __builtin_prefetch(self.vp + order[j + 8] * nc)
                    __builtin_prefetch(self.vp + order[j + 8] * nc + 8)
                key = self.kp[r * kw]
                if j and key <= prev:
                    unsorted = True
                    break
                prev = key
                while a < ns and (<uint64_t *> (base + a * w))[0] < key:
                    a += 1
                if a == ns:
                    break
                row = <uint64_t *> (base + a * w)
                if row[0] != key:
                    continue
                AT[j] = a
                over |= _merge_row(<int64_t *> (row + 1), self.vp + r * nc, self.op, nc)
        if unsorted:
            raise ValueError("merge_into: order does not sort the ids (stored is changed)")
        if over:
            raise OverflowError("a rollup sum overflows int64")
        return at


# ---------------------------------------------------------------------------------------
# The sales rollup (core/engine/rollups.py): journal records summed into sales rows in a
# Sums of four key words whose lexicographic order is the byte order of
# rollups.SALES_KEY:
#   w0 = day << 8 | hour,  w1 = store << 32 | terminal,
#   w2 = operator << 32 | level << 24 | category << 8 | op_type,  w3 = status << 32 | issue
# and SALES_NCOL columns, rollups.SALES_COLS in that order.

DEF SALES_NCOL = 17
SALES_NCOLS = SALES_NCOL


def sales_add(Sums t, cnp.ndarray block, const int64_t[::1] sel, const int64_t[::1] issue,
              const uint8_t[::1] first, const uint32_t[::1] operator, int64_t tz_offset_s,
              int64_t pay_external):
    """Add the records block[sel] (a C-contiguous JOURNAL array) to t (four key words,
    SALES_NCOL summed columns); issue, first and operator are per selected record: its
    store of issue, 1 on a card's first record, the operator its row is filed under.
    pay_external: the PAY_EXTERNAL op flag (core.records)."""
    cdef Py_ssize_t m = sel.shape[0], j, r
    if t.kw != 4 or t.ncols != SALES_NCOL or not t.all_sum:
        raise ValueError("sales_add: a Sums of 4 key words and 17 summed columns")
    if issue.shape[0] != m or first.shape[0] != m or operator.shape[0] != m:
        raise ValueError("sel, issue, first, operator: lengths differ")
    if not block.flags.c_contiguous or <size_t> block.dtype.itemsize != sizeof(JournalRec):
        raise ValueError("block: a C-contiguous JOURNAL array")
    cdef Py_ssize_t nb = block.shape[0]
    for j in range(m):
        if sel[j] < 0 or sel[j] >= nb:
            raise IndexError("sel out of the block")
    if t.n + m > t.rows_cap:
        t._grow(t.n + m)
    cdef const JournalRec *recs = <const JournalRec *> cnp.PyArray_DATA(block)
    cdef uint64_t[:, ::1] W = np.empty((m, 4), np.uint64)
    cdef uint64_t[::1] H = np.empty(m, np.uint64)
    cdef uint64_t mask = t.cap - 1
    cdef const JournalRec *p
    cdef int64_t local, day, x[SALES_NCOL]
    cdef int64_t pd, bd, pts
    cdef bint over = False
    with nogil:
        # Pass 1: every record's key words and hash (sequential reads).
        for j in range(m):
            p = &recs[sel[j]]
            local = p.time_s + tz_offset_s
            day = local // 86400
            if day * 86400 > local:         # floor for times before the epoch
                day -= 1
            W[j, 0] = (<uint64_t> <uint32_t> day) << 8 | <uint64_t> ((local - day * 86400) // 3600)
            W[j, 1] = (<uint64_t> p.store_id) << 32 | p.terminal_id
            W[j, 2] = ((<uint64_t> operator[j]) << 32 | (<uint64_t> p.level_before) << 24
                       | (<uint64_t> p.category) << 8 | p.op_type)
            W[j, 3] = (<uint64_t> p.after.status) << 32 | <uint64_t> <uint32_t> issue[j]
            H[j] = _hash(&W[j, 0], 4) & mask
        # Pass 2: probe and add, the slot 16 records ahead and its row 8 ahead
        # prefetched (the table of a flush is larger than the caches).
        for j in range(m):
            t._prefetch(&H[0], j, m)
            r = t._row(&W[j, 0], H[j])
            p = &recs[sel[j]]
            pd, bd, pts = p.principal_delta_fen, p.bonus_delta_fen, p.points_delta
            x[0] = 1
            x[1] = p.amount_fen
            x[2] = p.discount_fen
            x[3] = p.payable_fen
            x[4] = p.coupon_fen
            x[5] = p.offset_fen
            x[6] = p.offset_points
            x[7] = pd if pd > 0 else 0
            x[8] = -pd if pd < 0 else 0
            x[9] = bd if bd > 0 else 0
            x[10] = -bd if bd < 0 else 0
            x[11] = pts if pts > 0 else 0
            x[12] = -pts if pts < 0 else 0
            x[13] = p.commission_fen
            x[14] = (p.payable_fen - p.coupon_fen - p.offset_fen) if p.op_flags & pay_external else 0
            x[15] = first[j]
            x[16] = 1 if p.coupon_fen > 0 else 0
            over |= t._merge(r, x)
    if over:
        raise OverflowError("a sales rollup sum overflows int64")


def behaviour_block(cnp.ndarray block, int64_t tz_offset_s, const int64_t[::1] codes,
                    Sums cards, Sums members, Sums days, Sums stores, Sums cats):
    """Behaviour.block's card records in one pass: every OK card record (card_no != 0)
    of block (a C-contiguous JOURNAL array) merged into cards (card_no -> TOTAL_COLS),
    members (member_id != 0 -> TOTAL_COLS), and for its visits, swipes and refunds
    days ((day, member) -> DAY_COLS), stores ((member, store) -> STORE_COLS), cats
    ((member, category) -> CAT_COLS, swipes and refunds only). codes: the record codes
    (core.records) RESULT_OK, KIND_CARD, SWIPE, USE_COUNT, REFUND, RECHARGE, GIFT_REDEEM.
    The definitions: core/engine/behaviour.py."""
    if not block.flags.c_contiguous or <size_t> block.dtype.itemsize != sizeof(JournalRec):
        raise ValueError("block: a C-contiguous JOURNAL array")
    if codes.shape[0] != 7:
        raise ValueError("codes: 7 record codes")
    if (cards.ncols != 12 or members.ncols != 12 or days.ncols != 3 or stores.ncols != 2
            or cats.ncols != 2):
        raise ValueError("behaviour_block: the tables' columns")
    cdef Py_ssize_t nb = block.shape[0], j, n = 0, na = 0, nc = 0, nm = 0
    cdef const JournalRec *recs = <const JournalRec *> cnp.PyArray_DATA(block)
    cdef const JournalRec *p
    card_k = np.empty(nb, np.uint64)
    mem_k = np.empty(nb, np.uint64)
    tot = np.empty((nb, 12), np.int64)
    mem_at = np.empty(nb, np.int64)
    act_d = np.empty(nb, np.uint64)
    act_m = np.empty(nb, np.uint64)
    act_s = np.empty(nb, np.uint64)
    act_v = np.empty((nb, 3), np.int64)
    cat_m = np.empty(nb, np.uint64)
    cat_c = np.empty(nb, np.uint64)
    cat_v = np.empty((nb, 2), np.int64)
    cdef uint64_t[::1] CK = card_k, MK = mem_k, AD = act_d, AM = act_m, AS = act_s
    cdef uint64_t[::1] TM = cat_m, TC = cat_c
    cdef int64_t[:, ::1] T = tot, AV = act_v, TV = cat_v
    cdef int64_t[::1] MA = mem_at
    cdef int64_t ok = codes[0], kcard = codes[1], c_swipe = codes[2], c_use = codes[3]
    cdef int64_t c_refund = codes[4], c_recharge = codes[5], c_gift = codes[6]
    cdef int64_t local, day, op, spend, pd, offp, earned, redeemed
    cdef bint swipe, refund, visit, recharge
    with nogil:
        for j in range(nb):
            p = &recs[j]
            if p.result != ok or p.kind != kcard or p.card_no == 0:
                continue
            local = p.time_s + tz_offset_s
            day = local // 86400
            if day * 86400 > local:
                day -= 1
            op = p.op_type
            swipe = op == c_swipe
            refund = op == c_refund
            visit = swipe or op == c_use
            recharge = op == c_recharge
            spend = 0
            if swipe:
                spend = p.payable_fen - p.coupon_fen
            if refund:
                spend = -p.amount_fen
            pd = p.points_delta
            offp = p.offset_points
            if swipe:
                earned = pd + offp
                redeemed = offp
            else:
                earned = 0 if refund else (pd if pd > 0 else 0)
                redeemed = (-pd if pd < 0 else 0) if op == c_gift else 0
            CK[n] = p.card_no
            T[n, 0] = day + 1 if visit else 0
            T[n, 1] = T[n, 0]
            T[n, 2] = visit
            T[n, 3] = swipe
            T[n, 4] = spend
            T[n, 5] = refund
            T[n, 6] = p.amount_fen if refund else 0
            T[n, 7] = recharge
            T[n, 8] = p.principal_delta_fen if recharge else 0
            T[n, 9] = earned
            T[n, 10] = redeemed
            T[n, 11] = 0
            if p.after.member_id != 0:
                MK[nm] = p.after.member_id
                MA[nm] = n
                nm += 1
                if swipe or refund or visit:
                    AD[na] = <uint64_t> day
                    AM[na] = p.after.member_id
                    AS[na] = p.store_id
                    AV[na, 0] = visit
                    AV[na, 1] = swipe
                    AV[na, 2] = spend
                    na += 1
                    if swipe or refund:
                        TM[nc] = p.after.member_id
                        TC[nc] = p.category
                        TV[nc, 0] = swipe
                        TV[nc, 1] = spend
                        nc += 1
            n += 1
    cards.add(card_k[:n], np.zeros(n, np.uint64), tot[:n])
    if nm:
        members.add(mem_k[:nm], np.zeros(nm, np.uint64), tot[mem_at[:nm]])
    if na:
        days.add(act_d[:na], act_m[:na], act_v[:na])
        stores.add(act_m[:na], act_s[:na], np.ascontiguousarray(act_v[:na, ::2]))
    if nc:
        cats.add(cat_m[:nc], cat_c[:nc], cat_v[:nc])
    return n


cdef inline int64_t _day(int64_t time_s, int64_t tz) noexcept nogil:
    cdef int64_t local = time_s + tz, day = local // 86400
    if day * 86400 > local:
        day -= 1
    return day


# Per card of a CardTally, the rows of its last record in first and visits: (first's
# row, its key words), (visits' row, its key words); a row -1: none yet.
DEF _MEMO = 6


cdef inline Py_ssize_t _memo_row(Sums t, int64_t *memo, uint64_t k0, uint64_t k1) noexcept nogil:
    """The row of (k0, k1) in t (which has room for a new one): memo's (row, k0, k1)
    when they are the same keys, else probed and remembered in memo."""
    cdef uint64_t kk[2]
    if memo[0] >= 0 and <uint64_t> memo[1] == k0 and <uint64_t> memo[2] == k1:
        return memo[0]
    kk[0], kk[1] = k0, k1
    memo[0] = t._row(kk, _hash(kk, 2))
    memo[1], memo[2] = <int64_t> k0, <int64_t> k1
    return memo[0]


cdef class CardTally:
    """The card records of a stretch, for the card events and member activity
    (rollups.card_event_rows, rollups.activity_of), kept as they come:

    - per card (a hash table): its status after its last record so far; a record whose
      card came before in the stretch has its status before, so its events go into
      events at once; a card's first record in the stretch (a head) waits for the
      card's stored status (finish_events);
    - member activity: first ((member key, store of issue) -> first day seen + 1, first
      visit day + 1) and visits ((member key, day << 32 | store of issue) -> visits).

    codes (core.records): CANCELLED, DORMANT, LOST, REPLACE, RENEW, SWIPE, USE_COUNT."""

    cdef object _card, _after, _slots, _memo
    cdef object _h_slot, _h_after, _h_op, _h_first, _h_day, _h_issue
    cdef Py_ssize_t ncards, cards_cap, cap, nheads, heads_cap
    cdef int64_t c_cancelled, c_dormant, c_lost, c_replace, c_renew, c_swipe, c_use
    cdef public Sums events, first, visits

    def __cinit__(self, const int64_t[::1] codes):
        if codes.shape[0] != 7:
            raise ValueError("codes: 7 record codes")
        self.c_cancelled, self.c_dormant, self.c_lost = codes[0], codes[1], codes[2]
        self.c_replace, self.c_renew, self.c_swipe, self.c_use = codes[3], codes[4], codes[5], codes[6]
        self.ncards = self.cards_cap = self.nheads = self.heads_cap = 0
        self._grow_cards(1024)
        self._grow_heads(1024)
        self.events = Sums((SUM,) * 7, 256)                 # (day, issue store)
        self.first = Sums((_MIN_POSITIVE, _MIN_POSITIVE), 1024)
        self.visits = Sums((SUM,), 1024)

    def _grow_cards(self, Py_ssize_t need):
        cdef Py_ssize_t rows_cap = max(need, 2 * self.cards_cap), cap = 16, r, i
        while cap < 2 * rows_cap:
            cap <<= 1
        card = np.zeros(rows_cap, np.uint64)
        after = np.zeros(rows_cap, np.int64)
        memo = np.full((rows_cap, _MEMO), -1, np.int64)
        if self.ncards:
            card[:self.ncards] = self._card[:self.ncards]
            after[:self.ncards] = self._after[:self.ncards]
            memo[:self.ncards] = self._memo[:self.ncards]
        slots = np.full(cap, -1, np.int64)
        cdef uint64_t[::1] C = card
        cdef int64_t[::1] S = slots
        cdef uint64_t mask = cap - 1
        for r in range(self.ncards):
            i = _mix(C[r], 0) & mask
            while S[i] >= 0:
                i = (i + 1) & mask
            S[i] = r
        self._card, self._after, self._slots, self._memo = card, after, slots, memo
        self.cards_cap, self.cap = rows_cap, cap

    def _grow_heads(self, Py_ssize_t need):
        cdef Py_ssize_t cap = max(need, 2 * self.heads_cap), n = self.nheads
        new = [np.zeros(cap, np.int64) for _ in range(6)]
        if n:
            for a, b in zip(new, (self._h_slot, self._h_after, self._h_op, self._h_first,
                                  self._h_day, self._h_issue)):
                a[:n] = b[:n]
        (self._h_slot, self._h_after, self._h_op, self._h_first, self._h_day,
         self._h_issue) = new
        self.heads_cap = cap

    cdef inline void _event(self, int64_t before, int64_t after, int64_t op, bint first,
                            int64_t *v) noexcept nogil:
        cdef int64_t moved
        cdef bint replaced, in_before, in_after
        if first:
            before = -1
        moved = after if before != after else -1
        in_before = before != -1 and before != self.c_cancelled
        in_after = after != self.c_cancelled
        replaced = moved == self.c_cancelled and op == self.c_replace
        v[0] = first
        v[1] = moved == self.c_cancelled and not replaced
        v[2] = op == self.c_renew
        v[3] = replaced
        v[4] = moved == self.c_dormant
        v[5] = moved == self.c_lost
        v[6] = <int64_t> in_after - <int64_t> in_before

    def add(self, cnp.ndarray block, const int64_t[::1] sel, const int64_t[::1] issue,
            int64_t tz_offset_s):
        """The records block[sel] (OK card records of a C-contiguous JOURNAL array, in seq
        order); issue: each one's store of issue."""
        cdef Py_ssize_t m = sel.shape[0], nb = block.shape[0], j, i, r, ne = 0
        if issue.shape[0] != m:
            raise ValueError("sel, issue: lengths differ")
        if not block.flags.c_contiguous or <size_t> block.dtype.itemsize != sizeof(JournalRec):
            raise ValueError("block: a C-contiguous JOURNAL array")
        for j in range(m):
            if sel[j] < 0 or sel[j] >= nb:
                raise IndexError("sel out of the block")
        if self.ncards + m > self.cards_cap:
            self._grow_cards(self.ncards + m)
        if self.nheads + m > self.heads_cap:
            self._grow_heads(self.nheads + m)
        cdef const JournalRec *recs = <const JournalRec *> cnp.PyArray_DATA(block)
        cdef const JournalRec *p
        cdef uint64_t[::1] C = self._card
        cdef int64_t[::1] A = self._after, S = self._slots
        cdef int64_t[::1] HS = self._h_slot, HA = self._h_after, HO = self._h_op
        cdef int64_t[::1] HF = self._h_first, HD = self._h_day, HI = self._h_issue
        ev_k = np.empty(m, np.uint64)
        ev_v = np.empty((m, 7), np.int64)
        cdef uint64_t[::1] EK = ev_k
        cdef int64_t[:, ::1] EV = ev_v, MEMO = self._memo
        cdef uint64_t mask = self.cap - 1, card, key, iss, vk1
        cdef int64_t day, after, op
        cdef bint first, visit, over = False
        cdef int64_t v[7]
        cdef int64_t fx[2]
        cdef int64_t one[1]
        cdef int c
        cdef Py_ssize_t q
        cdef int64_t *M
        # first and visits take at most one new row a record: room made here, so the
        # loop below adds to them directly (a card's rows remembered in MEMO: a card's
        # later records in the stretch skip the probe).
        cdef Sums fs = self.first, vs = self.visits
        if fs.n + m > fs.rows_cap:
            fs._grow(fs.n + m)
        if vs.n + m > vs.rows_cap:
            vs._grow(vs.n + m)
        one[0] = 1
        hashes = np.empty(m, np.uint64)
        cdef uint64_t[::1] HH = hashes
        with nogil:
            # Every record's slot first, then the probes with the slot 16 records ahead
            # and its card 8 ahead prefetched (the table of a flush's cards is larger
            # than the caches).
            for j in range(m):
                HH[j] = _mix(recs[sel[j]].card_no, 0) & mask
            for j in range(m):
                if j + 16 < m:
                    __builtin_prefetch(&S[HH[j + 16]])
                if j + 8 < m:
                    q = S[HH[j + 8]]
                    if q >= 0:
                        __builtin_prefetch(&C[q])
                        __builtin_prefetch(&A[q])
                        __builtin_prefetch(&MEMO[q, 0])
                p = &recs[sel[j]]
                card = p.card_no
                after = p.after.status
                op = p.op_type
                first = p.prev_seq == 0
                day = _day(p.time_s, tz_offset_s)
                i = HH[j]
                while True:
                    r = S[i]
                    if r < 0 or C[r] == card:
                        break
                    i = (i + 1) & mask
                if r < 0:
                    r = self.ncards
                    self.ncards += 1
                    S[i] = r
                    C[r] = card
                    HS[self.nheads] = r
                    HA[self.nheads] = after
                    HO[self.nheads] = op
                    HF[self.nheads] = first
                    HD[self.nheads] = day
                    HI[self.nheads] = issue[j]
                    self.nheads += 1
                else:
                    self._event(A[r], after, op, first, v)
                    if v[0] or v[1] or v[2] or v[3] or v[4] or v[5] or v[6]:
                        EK[ne] = (<uint64_t> <uint32_t> day) << 32 | <uint64_t> <uint32_t> issue[j]
                        for c in range(7):
                            EV[ne, c] = v[c]
                        ne += 1
                A[r] = after
                # Member activity: the member key is the member, else -card_no; first
                # (key, issue) -> (day + 1, day + 1 of a visit), visits (key, day << 32 |
                # issue) -> 1 a visit.
                key = p.after.member_id if p.after.member_id != 0 else <uint64_t> (-<int64_t> card)
                iss = <uint64_t> <uint32_t> issue[j]
                visit = op == self.c_swipe or op == self.c_use
                M = &MEMO[r, 0]
                fx[0] = day + 1
                fx[1] = day + 1 if visit else 0
                fs._merge(_memo_row(fs, M, key, iss), fx)
                if visit:
                    vk1 = (<uint64_t> <uint32_t> day) << 32 | iss
                    over |= vs._merge(_memo_row(vs, M + 3, key, vk1), one)
        if over:
            raise OverflowError("a visits sum overflows int64")
        if ne:
            self.events.add(ev_k[:ne], np.zeros(ne, np.uint64), ev_v[:ne])

    def head_cards(self):
        """The distinct cards of the stretch, in the order they came (uint64)."""
        return self._card[:self.ncards].copy()

    def finish_events(self, const int64_t[::1] known):
        """The events of the heads, given known: each card's status before the stretch
        (head_cards' order; < 0: none). Returns the cards whose status moved and their
        statuses after (rollup_card_status puts), by card ascending."""
        if known.shape[0] != self.ncards:
            raise ValueError("known: one status per card")
        cdef Py_ssize_t n = self.nheads, j, ne = 0, r
        ev_k = np.empty(n, np.uint64)
        ev_v = np.empty((n, 7), np.int64)
        cdef uint64_t[::1] EK = ev_k
        cdef int64_t[:, ::1] EV = ev_v
        cdef int64_t[::1] HS = self._h_slot, HA = self._h_after, HO = self._h_op
        cdef int64_t[::1] HF = self._h_first, HD = self._h_day, HI = self._h_issue
        cdef int64_t before
        cdef int64_t v[7]
        cdef int c
        with nogil:
            for j in range(n):
                before = known[HS[j]]
                if before < 0:
                    before = -1
                self._event(before, HA[j], HO[j], HF[j] != 0, v)
                if v[0] or v[1] or v[2] or v[3] or v[4] or v[5] or v[6]:
                    EK[ne] = (<uint64_t> <uint32_t> HD[j]) << 32 | <uint64_t> <uint32_t> HI[j]
                    for c in range(7):
                        EV[ne, c] = v[c]
                    ne += 1
        if ne:
            self.events.add(ev_k[:ne], np.zeros(ne, np.uint64), ev_v[:ne])
        self.nheads = 0
        cards = self._card[:self.ncards]
        final = self._after[:self.ncards]
        moved = np.flatnonzero(final != np.asarray(known))
        order = np.argsort(cards[moved])
        return cards[moved][order].copy(), final[moved][order].copy()


# rollup_lots.LOT_REC, packed (the fields of a journal record the settlement replay reads).
cdef packed struct LotRec:
    uint64_t seq
    int64_t time_s
    uint64_t card_no
    int64_t principal_delta_fen
    uint32_t store_id
    uint8_t op_type
    uint64_t ref_seq
    uint64_t replaced_by


def card_columns(cnp.ndarray block, const int64_t[::1] codes, cnp.ndarray lot_out):
    """One pass over a journal block (a C-contiguous JOURNAL array) for rollups.Summer:
    the OK card records (card_no != 0) and their columns, the OK coupon records, and
    the lot records (rollup_lots.lot_records: the card records that move principal, and
    every REFUND) written into lot_out (a LOT_REC array of at least len(block) rows).
    codes (core.records): RESULT_OK, KIND_CARD, KIND_COUPON, REFUND.

    Returns (sel, card_no, first (prev_seq 0), store_id, operator_id, op_type, ref_seq)
    of the card records, the coupon records' indices, and the lot records written."""
    if not block.flags.c_contiguous or <size_t> block.dtype.itemsize != sizeof(JournalRec):
        raise ValueError("block: a C-contiguous JOURNAL array")
    if not lot_out.flags.c_contiguous or <size_t> lot_out.dtype.itemsize != sizeof(LotRec):
        raise ValueError("lot_out: a C-contiguous LOT_REC array")
    if codes.shape[0] != 4:
        raise ValueError("codes: 4 record codes")
    cdef Py_ssize_t nb = block.shape[0], j, n = 0, nc = 0, nl = 0
    if lot_out.shape[0] < nb:
        raise ValueError("lot_out: fewer rows than the block")
    cdef const JournalRec *recs = <const JournalRec *> cnp.PyArray_DATA(block)
    cdef LotRec *lots = <LotRec *> cnp.PyArray_DATA(lot_out)
    cdef const JournalRec *p
    cdef LotRec *q
    sel = np.empty(nb, np.int64)
    card = np.empty(nb, np.uint64)
    first = np.empty(nb, np.bool_)
    store = np.empty(nb, np.uint32)
    operator = np.empty(nb, np.uint32)
    op = np.empty(nb, np.uint8)
    ref = np.empty(nb, np.uint64)
    csel = np.empty(nb, np.int64)
    cdef int64_t[::1] SEL = sel, CSEL = csel
    cdef uint64_t[::1] CARD = card, REF = ref
    cdef uint8_t[::1] FIRST = first.view(np.uint8), OP = op
    cdef uint32_t[::1] STORE = store, OPER = operator
    cdef int64_t ok = codes[0], kcard = codes[1], kcoupon = codes[2], refund = codes[3]
    with nogil:
        for j in range(nb):
            p = &recs[j]
            if p.result != ok:
                continue
            if p.kind == kcoupon:
                CSEL[nc] = j
                nc += 1
                continue
            if p.kind != kcard or p.card_no == 0:
                continue
            SEL[n] = j
            CARD[n] = p.card_no
            FIRST[n] = p.prev_seq == 0
            STORE[n] = p.store_id
            OPER[n] = p.operator_id
            OP[n] = p.op_type
            REF[n] = p.ref_seq
            n += 1
            if p.principal_delta_fen != 0 or p.op_type == refund:
                q = &lots[nl]
                q.seq = p.seq
                q.time_s = p.time_s
                q.card_no = p.card_no
                q.principal_delta_fen = p.principal_delta_fen
                q.store_id = p.store_id
                q.op_type = p.op_type
                q.ref_seq = p.ref_seq
                q.replaced_by = p.after.replaced_by
                nl += 1
    return ((sel[:n], card[:n], first[:n], store[:n], operator[:n], op[:n], ref[:n]),
            csel[:nc], nl)


cdef packed struct TakenRec:
    uint64_t seq
    uint32_t store
    int64_t fen


def fast_cards(cnp.ndarray recs, const uint8_t[::1] slow):
    """The records of recs (a LOT_REC array, seq order) the vectorised settlement takes
    (not slow, principal_delta_fen != 0): their distinct cards, ascending, and each
    record's card as its index in them (-1: a record not taken)."""
    if not recs.flags.c_contiguous or <size_t> recs.dtype.itemsize != sizeof(LotRec):
        raise ValueError("recs: a C-contiguous LOT_REC array")
    cdef Py_ssize_t n = recs.shape[0], j, i, r, nc = 0, cap = 16
    if slow.shape[0] != n:
        raise ValueError("slow: one flag per record")
    while cap < 2 * n + 2:
        cap <<= 1
    cdef const LotRec *L = <const LotRec *> cnp.PyArray_DATA(recs)
    slots = np.full(cap, -1, np.int64)
    slot_card = np.empty(n, np.uint64)
    of = np.full(n, -1, np.int64)          # each record's card slot (-1: not taken)
    cdef int64_t[::1] S = slots, OF = of
    cdef uint64_t[::1] SC = slot_card
    cdef uint64_t mask = cap - 1, c
    with nogil:
        for j in range(n):
            if slow[j] or L[j].principal_delta_fen == 0:
                continue
            c = L[j].card_no
            i = _mix(c, 0) & mask
            while True:
                r = S[i]
                if r < 0 or SC[r] == c:
                    break
                i = (i + 1) & mask
            if r < 0:
                r = nc
                nc += 1
                S[i] = r
                SC[r] = c
            OF[j] = r
    cards = slot_card[:nc]
    by = np.argsort(cards)
    rank = np.empty(nc, np.int64)
    rank[by] = np.arange(nc, dtype=np.int64)
    cdef int64_t[::1] RK = rank
    with nogil:
        for j in range(n):
            if OF[j] >= 0:
                OF[j] = RK[OF[j]]
    return cards[by].astype(np.int64), of


def fifo_settle(cnp.ndarray recs, const int64_t[::1] card_of, const int64_t[::1] cards,
                const int64_t[::1] st_card, const int64_t[::1] st_store,
                const int64_t[::1] st_fen, int64_t tz_offset_s, const int64_t[::1] codes):
    """The settlement of the records of recs (a LOT_REC array, seq order) whose card_of
    (fast_cards) is >= 0, the index of their card in cards (ascending): each card's lots
    a queue, its stored lots first (st_*: by card ascending, each card's oldest first;
    other cards' are skipped), then the records in seq order: principal in (delta > 0)
    a lot at the back at the record's store, principal out taken from the front. Each
    piece is summed into its (day, lot store, spend store) row (a spend counts once per
    record and lot store). codes (core.records): SWIPE, SUPP_DEBIT, USE_COUNT (the
    spends; a SUPP_DEBIT's taken key is its ref_seq, the supplementary card's swipe).

    Returns (n x 3 int64 keys (day, lot store, spend store), n x 4 SETTLEMENT_COLS) in
    any order; the taken entries of the spends' pieces from a lot (TAKEN rows, as
    bytes) in seq order of their records, each record's oldest lot first; the taken
    keys of every spend; cards and their lots after as (card, store, fen), by card,
    oldest first; and the pieces (record, lot store, fen, whether from a lot: a take
    beyond every lot, which cannot happen, is one more piece at store 0), in seq order
    of their records, each record's oldest lot first."""
    if not recs.flags.c_contiguous or <size_t> recs.dtype.itemsize != sizeof(LotRec):
        raise ValueError("recs: a C-contiguous LOT_REC array")
    if codes.shape[0] != 3:
        raise ValueError("codes: 3 record codes")
    cdef Py_ssize_t nr = recs.shape[0], nc = cards.shape[0], ns = st_card.shape[0], j
    if card_of.shape[0] != nr:
        raise ValueError("card_of: one per record")
    if st_store.shape[0] != ns or st_fen.shape[0] != ns:
        raise ValueError("st_card, st_store, st_fen: lengths differ")
    for j in range(nr):
        if card_of[j] >= nc:
            raise IndexError("card_of out of the cards")
    for j in range(1, nc):
        if cards[j] <= cards[j - 1]:
            raise ValueError("cards: ascending and distinct")
    cdef const LotRec *L = <const LotRec *> cnp.PyArray_DATA(recs)
    # A take's pieces are the lots it empties and one more (a lot's part, or beyond every
    # lot), and each lot (stored or added) is emptied once: pieces <= takes + lots.
    cdef Py_ssize_t cap_p = nr + ns + 1, cap_q = nr + ns + 1
    p_rec = np.empty(cap_p, np.int64)
    p_store = np.empty(cap_p, np.int64)
    p_fen = np.empty(cap_p, np.int64)
    p_have = np.empty(cap_p, np.uint8)
    # The lots: a pool of nodes (store, fen, next), each card's queue from head to tail.
    n_store = np.empty(cap_q, np.int64)
    n_fen = np.empty(cap_q, np.int64)
    n_next = np.empty(cap_q, np.int64)
    head_a = np.full(nc, -1, np.int64)
    tail_a = np.full(nc, -1, np.int64)
    l_card = np.empty(cap_q, np.int64)
    l_store = np.empty(cap_q, np.int64)
    l_fen = np.empty(cap_q, np.int64)
    spends = np.empty(nr, np.uint64)
    taken = np.zeros(cap_p * sizeof(TakenRec), np.uint8)
    cdef TakenRec *E = <TakenRec *> cnp.PyArray_DATA(taken)
    cdef int64_t[::1] PR = p_rec, PS = p_store, PF = p_fen
    cdef int64_t[::1] NS = n_store, NF = n_fen, NX = n_next, H = head_a, T = tail_a
    cdef int64_t[::1] LC = l_card, LS = l_store, LF = l_fen
    cdef uint8_t[::1] PH = p_have
    cdef uint64_t[::1] SPK = spends
    cdef Py_ssize_t sp = 0, np_ = 0, nl = 0, nsp = 0, nn = 0, ne = 0, k, q, p0, x
    cdef int64_t d, out, m, c_swipe = codes[0], c_supp = codes[1], c_use = codes[2]
    cdef int64_t day
    cdef uint64_t key
    cdef bint spend, seen
    k0 = np.empty(cap_p, np.uint64)
    k1 = np.empty(cap_p, np.uint64)
    v = np.zeros((cap_p, 4), np.int64)
    cdef uint64_t[::1] K0 = k0, K1 = k1
    cdef int64_t[:, ::1] V = v
    with nogil:
        # The stored lots of the cards, each appended in order to its card's queue.
        k = 0
        for sp in range(ns):
            while k < nc and cards[k] < st_card[sp]:
                k += 1
            if k == nc:
                break
            if cards[k] != st_card[sp] or st_fen[sp] <= 0:
                continue
            NS[nn], NF[nn], NX[nn] = st_store[sp], st_fen[sp], -1
            if T[k] >= 0:
                NX[T[k]] = nn
            else:
                H[k] = nn
            T[k] = nn
            nn += 1
        for j in range(nr):
            k = card_of[j]
            if k < 0:
                continue
            d = L[j].principal_delta_fen
            if d > 0:
                NS[nn], NF[nn], NX[nn] = L[j].store_id, d, -1
                if T[k] >= 0:
                    NX[T[k]] = nn
                else:
                    H[k] = nn
                T[k] = nn
                nn += 1
            elif d < 0:
                spend = (L[j].op_type == c_swipe or L[j].op_type == c_supp
                         or L[j].op_type == c_use)
                key = L[j].ref_seq if L[j].op_type == c_supp else L[j].seq
                if spend:
                    SPK[nsp] = key
                    nsp += 1
                day = _day(L[j].time_s, tz_offset_s)
                p0 = np_
                out = -d
                while out > 0:
                    x = H[k]
                    if x >= 0:
                        m = NF[x] if NF[x] < out else out
                        PS[np_] = NS[x]
                        PH[np_] = 1
                        NF[x] -= m
                        if NF[x] == 0:
                            H[k] = NX[x]
                            if H[k] < 0:
                                T[k] = -1
                    else:                # beyond every lot (cannot happen): store 0
                        m = out
                        PS[np_] = 0
                        PH[np_] = 0
                    out -= m
                    PR[np_] = j
                    PF[np_] = m
                    K0[np_] = (<uint64_t> <uint32_t> day) << 32 | (<uint64_t> <uint32_t> PS[np_])
                    K1[np_] = L[j].store_id
                    if spend:
                        seen = False
                        for q in range(p0, np_):
                            if PS[q] == PS[np_]:
                                seen = True
                                break
                        V[np_, 0] = 0 if seen else 1
                        V[np_, 1] = m
                        if PH[np_]:
                            E[ne].seq = key
                            E[ne].store = <uint32_t> PS[np_]
                            E[ne].fen = m
                            ne += 1
                    else:
                        V[np_, 3] = m
                    np_ += 1
        for k in range(nc):
            x = H[k]
            while x >= 0:
                LC[nl], LS[nl], LF[nl] = cards[k], NS[x], NF[x]
                nl += 1
                x = NX[x]
    sums = Sums((SUM, SUM, SUM, SUM), 1024)
    sums.add(k0[:np_], k1[:np_], v[:np_])
    keys, vals = sums.rows()
    out_k = np.empty((len(keys), 3), np.int64)
    out_k[:, 0] = (keys[:, 0] >> np.uint64(32)).astype(np.int64)
    out_k[:, 1] = (keys[:, 0] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    out_k[:, 2] = keys[:, 1].astype(np.int64)
    return (out_k, vals, taken[:ne * sizeof(TakenRec)], spends[:nsp], np.asarray(cards).copy(),
            l_card[:nl], l_store[:nl], l_fen[:nl],
            (p_rec[:np_], p_store[:np_], p_fen[:np_], p_have[:np_].view(np.bool_)))


# The hash of the sources this module was compiled from (setup.py passes it; see
# core/_source_hash.py TALLY_SOURCES): a test compares it with the sources on disk.
cdef extern from *:
    """
    #ifndef MMS_SOURCE_SHA
    #define MMS_SOURCE_SHA ""
    #endif
    """
    const char *MMS_SOURCE_SHA

SOURCE_SHA = (<bytes>MMS_SOURCE_SHA).decode("ascii")
