# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Protobuf wire encoding of result columns, in C: packed repeated varint fields
straight from numpy arrays (server/rpc/codec.py, results_bytes). Building an
OpResultColumns message from 15 Python lists and serialising it cost ~0.9 us per op of
a streamed batch on the event loop; this writes the same bytes in a pass over the arrays.
Byte-identical to what protobuf writes (tests/unit/test_wire.py)."""

import numpy as np

cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memmove, memset

cnp.import_array()


cdef inline Py_ssize_t _size(uint64_t v) noexcept nogil:
    cdef Py_ssize_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline Py_ssize_t _put(uint8_t* out, uint64_t v) noexcept nogil:
    cdef Py_ssize_t i = 0
    while v >= 0x80:
        out[i] = <uint8_t>((v & 0x7F) | 0x80)
        v >>= 7
        i += 1
    out[i] = <uint8_t>v
    return i + 1


def varint(uint64_t v) -> bytes:
    """One varint (a tag, a length, a scalar field's value)."""
    cdef uint8_t buf[10]
    cdef Py_ssize_t n = _put(buf, v)
    return PyBytes_FromStringAndSize(<char*>buf, n)


def packed_fields(list fields) -> bytes:
    """fields: (field number, 1-D contiguous uint64 array) pairs in field-number order,
    signed values as their two's complement (an int64 array viewed as uint64), as
    protobuf writes int64. The message body holding each as a packed repeated varint
    field; a field with no values is left out, as protobuf leaves it. One pass over the
    values: each body is written past room for its tag and length, which are put in
    front of it once its length is known."""
    cdef Py_ssize_t i, n, cap = 0, at = 0, start, w, hdr
    cdef cnp.ndarray[cnp.uint64_t, ndim=1, mode="c"] col
    cdef uint64_t* p
    cdef uint8_t head[15]
    for number, arr in fields:
        col = arr
        cap += 15 + 10 * col.shape[0]
    cdef uint8_t* buf = <uint8_t*>malloc(cap if cap else 1)
    if buf == NULL:
        raise MemoryError()
    try:
        for number, arr in fields:
            col = arr
            n = col.shape[0]
            if not n:
                continue
            p = <uint64_t*>col.data
            start = at + 15
            w = start
            with nogil:
                for i in range(n):
                    w += _put(buf + w, p[i])
            hdr = _put(head, (<uint64_t>number << 3) | 2)
            hdr += _put(head + hdr, <uint64_t>(w - start))
            memmove(buf + at + hdr, buf + start, w - start)
            memcpy(buf + at, head, hdr)
            at += hdr + (w - start)
        return PyBytes_FromStringAndSize(<char*>buf, at)
    finally:
        free(buf)


def single_messages(int outer, list fields) -> list:
    """One message per op i: a message whose field `outer` holds an embedded message of
    fields' i-th values, each a singular varint field, left out when 0 (proto3), as
    protobuf writes SwipeResponse(result=OpResult(...)). fields: (field number,
    1-D contiguous uint64 array) pairs in field-number order, all of one length."""
    cdef Py_ssize_t nf = len(fields), n = 0, i, j, body, at
    if nf == 0:
        return []
    n = len(fields[0][1])
    cdef uint64_t[:, ::1] vals = np.empty((nf, n), dtype=np.uint64)
    cdef uint64_t[::1] tags = np.empty(nf, dtype=np.uint64)
    cdef uint64_t[::1] col
    for j in range(nf):
        number, arr = fields[j]
        col = arr
        if col.shape[0] != n:
            raise ValueError("every field needs one value per op")
        tags[j] = (<uint64_t>number) << 3
        for i in range(n):
            vals[j, i] = col[i]
    cdef uint64_t outer_tag = (<uint64_t>outer << 3) | 2
    cdef uint8_t buf[400]   # 15 fields x (tag <= 2 + value <= 10) + the outer tag and length
    cdef list out = []
    if nf > 30:
        raise ValueError("at most 30 fields")
    for i in range(n):
        body = 0
        for j in range(nf):
            if vals[j, i]:
                body += _size(tags[j]) + _size(vals[j, i])
        at = _put(buf, outer_tag)
        at += _put(buf + at, <uint64_t>body)
        for j in range(nf):
            if vals[j, i]:
                at += _put(buf + at, tags[j])
                at += _put(buf + at, vals[j, i])
        out.append(PyBytes_FromStringAndSize(<char*>buf, at))
    return out


# --- decoding swipe batches ---------------------------------------------------------------
#
# SwipeStreamRequest {uint64 batch_id = 1; SwipeColumns swipes = 2; uint32 store_id = 3}
# and SwipeBatchRequest {SwipeColumns swipes = 1; uint32 store_id = 2}, where
# SwipeColumns {bytes client_ids = 1; repeated uint64 card_nos = 2; repeated int64
# amount_fen = 3; repeated uint32 category = 4, flags = 5, operator_ids = 6}, parsed as
# protobuf (upb) parses them: packed and unpacked repeated fields alike and appended in
# the order met, the last of a singular field kept, a message field met twice merged, a
# known field with another wire type kept as an unknown field, unknown fields (groups
# too) skipped, uint32 values cut to their low 32 bits, varints of at most 10 bytes (what
# lies past 64 bits dropped), tags of at most 5 bytes and below 2**32, field number 0,
# wire types 6 and 7, a length past the end, a truncated varint, an unmatched end group
# all refused. What this refuses, codec.swipe_request has protobuf confirm
# (tests/unit/test_wire_decode.py holds the two to the same answer).

# Unknown groups nested deeper than this are refused here (protobuf's own limit is 100;
# codec.swipe_request lets protobuf decide such a message).
cdef enum:
    _GROUP_DEPTH_MAX = 32
# The repeated columns of SwipeColumns, by field number 2..6.
cdef enum:
    _NCOLS = 5

cdef struct _Walk:
    bint fill
    Py_ssize_t n[_NCOLS]
    uint64_t* out[_NCOLS]
    const uint8_t* cid
    Py_ssize_t cid_len
    uint64_t batch_id
    uint64_t store_id


cdef inline const uint8_t* _varint(const uint8_t* p, const uint8_t* end,
                                   uint64_t* v) noexcept nogil:
    """One varint at p (at most 10 bytes); NULL when it is truncated or longer."""
    cdef uint64_t val = 0
    cdef int i
    cdef uint64_t b
    for i in range(10):
        if p >= end:
            return NULL
        b = p[0]
        p += 1
        val |= (b & 0x7F) << (7 * i)   # what lies past bit 63 drops, as in upb
        if not (b & 0x80):
            v[0] = val
            return p
    return NULL


cdef inline const uint8_t* _tag(const uint8_t* p, const uint8_t* end,
                                uint32_t* tag) noexcept nogil:
    cdef const uint8_t* start = p
    cdef uint64_t v
    p = _varint(p, end, &v)
    if p == NULL or p - start > 5 or v > 0xFFFFFFFFu:
        return NULL
    if (v >> 3) == 0:
        return NULL
    tag[0] = <uint32_t>v
    return p


cdef const uint8_t* _skip(const uint8_t* p, const uint8_t* end, uint32_t tag,
                          int depth) noexcept nogil:
    """Past the value of an unknown field whose tag was just read; NULL when malformed."""
    cdef uint32_t wt = tag & 7, inner
    cdef uint64_t v
    if wt == 0:
        return _varint(p, end, &v)
    if wt == 1:
        return p + 8 if end - p >= 8 else NULL
    if wt == 5:
        return p + 4 if end - p >= 4 else NULL
    if wt == 2:
        p = _varint(p, end, &v)
        if p == NULL or v >= 0x7FFFFFFF or <uint64_t>(end - p) < v:
            return NULL
        return p + v
    if wt == 3:
        if depth >= _GROUP_DEPTH_MAX:
            return NULL
        while True:
            p = _tag(p, end, &inner)
            if p == NULL:
                return NULL
            if (inner & 7) == 4:
                return p if (inner >> 3) == (tag >> 3) else NULL
            p = _skip(p, end, inner, depth + 1)
            if p == NULL:
                return NULL
    return NULL   # 4 (an end group with no start) and 6, 7


cdef inline int _put_value(_Walk* w, int col, uint64_t v) noexcept nogil:
    if w.fill:
        if col >= 2:   # the uint32 columns (category, flags, operator_ids)
            v &= 0xFFFFFFFFu
        w.out[col][w.n[col]] = v
    w.n[col] += 1
    return 0


cdef int _columns(const uint8_t* p, const uint8_t* end, _Walk* w) noexcept nogil:
    """SwipeColumns' fields into w; -1 when malformed."""
    cdef uint32_t tag, fn, wt
    cdef uint64_t v, ln
    cdef const uint8_t* stop
    cdef int col
    while p < end:
        p = _tag(p, end, &tag)
        if p == NULL:
            return -1
        fn = tag >> 3
        wt = tag & 7
        if fn == 1 and wt == 2:
            p = _varint(p, end, &ln)
            if p == NULL or ln >= 0x7FFFFFFF or <uint64_t>(end - p) < ln:
                return -1
            w.cid = p
            w.cid_len = <Py_ssize_t>ln
            p += ln
        elif 2 <= fn <= 6 and wt == 0:
            p = _varint(p, end, &v)
            if p == NULL:
                return -1
            _put_value(w, fn - 2, v)
        elif 2 <= fn <= 6 and wt == 2:
            col = fn - 2
            p = _varint(p, end, &ln)
            if p == NULL or ln >= 0x7FFFFFFF or <uint64_t>(end - p) < ln:
                return -1
            stop = p + ln
            while p < stop:
                p = _varint(p, stop, &v)
                if p == NULL:
                    return -1
                _put_value(w, col, v)
        else:
            if wt == 4:
                return -1
            p = _skip(p, end, tag, 0)
            if p == NULL:
                return -1
    return 0


cdef int _request(const uint8_t* p, const uint8_t* end, _Walk* w, uint32_t batch_field,
                  uint32_t swipes_field, uint32_t store_field) noexcept nogil:
    """The request's fields into w; -1 when malformed."""
    cdef uint32_t tag, fn, wt
    cdef uint64_t v, ln
    while p < end:
        p = _tag(p, end, &tag)
        if p == NULL:
            return -1
        fn = tag >> 3
        wt = tag & 7
        if fn == swipes_field and wt == 2:
            p = _varint(p, end, &ln)
            if p == NULL or ln >= 0x7FFFFFFF or <uint64_t>(end - p) < ln:
                return -1
            if _columns(p, p + ln, w) < 0:
                return -1
            p += ln
        elif fn == batch_field and wt == 0:
            p = _varint(p, end, &v)
            if p == NULL:
                return -1
            w.batch_id = v
        elif fn == store_field and wt == 0:
            p = _varint(p, end, &v)
            if p == NULL:
                return -1
            w.store_id = v & 0xFFFFFFFFu
        else:
            if wt == 4:
                return -1
            p = _skip(p, end, tag, 0)
            if p == NULL:
                return -1
    return 0


def swipe_columns(bytes raw, uint32_t batch_field, uint32_t swipes_field,
                  uint32_t store_field):
    """A SwipeStreamRequest or SwipeBatchRequest (their field numbers given; 0 for one
    the message has not) parsed in two passes over its bytes (count, then fill): None
    when protobuf's rules refuse it (above), else (batch_id, store_id, client_ids,
    card_nos uint64, amount_fen int64, category, flags, operator_ids int64 arrays)."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(raw)
    cdef const uint8_t* end = p + len(raw)
    cdef _Walk w
    cdef int k, rc
    memset(&w, 0, sizeof(w))
    with nogil:
        rc = _request(p, end, &w, batch_field, swipes_field, store_field)
    if rc < 0:
        return None
    cards = np.empty(w.n[0], dtype=np.uint64)
    cols = [cards] + [np.empty(w.n[k], dtype=np.int64) for k in range(1, _NCOLS)]
    cdef cnp.ndarray a
    for k in range(_NCOLS):
        a = cols[k]
        w.out[k] = <uint64_t*>a.data
        w.n[k] = 0
    w.fill = True
    w.cid = NULL
    w.cid_len = 0
    with nogil:
        _request(p, end, &w, batch_field, swipes_field, store_field)
    cid = PyBytes_FromStringAndSize(<const char*>w.cid, w.cid_len) if w.cid_len else b""
    return (w.batch_id, w.store_id, cid, cards, cols[1], cols[2], cols[3], cols[4])


# --- gathering result columns ------------------------------------------------------------

cdef inline uint64_t _read(const uint8_t* p, int kind) noexcept nogil:
    """One integer field at p: kind 1, 2, 4, 8 unsigned, -1, -2, -4, -8 signed (as its
    two's complement in 64 bits), 0 a bool (1 byte, any non-zero is 1)."""
    cdef uint8_t u1
    cdef uint16_t u2
    cdef uint32_t u4
    cdef uint64_t u8
    if kind == 8 or kind == -8:
        memcpy(&u8, p, 8)
        return u8
    if kind == 4:
        memcpy(&u4, p, 4)
        return u4
    if kind == -4:
        memcpy(&u4, p, 4)
        return <uint64_t><int64_t><int32_t>u4
    if kind == 2:
        memcpy(&u2, p, 2)
        return u2
    if kind == -2:
        memcpy(&u2, p, 2)
        return <uint64_t><int64_t><int16_t>u2
    u1 = p[0]
    if kind == 0:
        return 1 if u1 else 0
    if kind == -1:
        return <uint64_t><int64_t><int8_t>u1
    return u1


def gather_results(cnp.ndarray results, cnp.ndarray recs, Py_ssize_t index_offset,
                   Py_ssize_t seq_offset, list specs):
    """A batch's result columns as one (len(specs), n) uint64 array, row j for spec j =
    (source, byte offset, kind): source 0 reads op i's row of results, 1 the record its
    rec_index (an int32 at index_offset) names in recs, 0 when it has none (a rejected
    op). None when an op's record is not in recs (seq, a uint64 at seq_offset, set and
    no rec_index: a replay of an earlier batch, read from the journal instead). The
    columns BatchResult.columns() gathers field by field, in one pass."""
    if results.ndim != 1 or recs.ndim != 1:
        raise ValueError("one-dimensional results and records")
    cdef Py_ssize_t n = results.shape[0], m = recs.shape[0], nf = len(specs), i, j
    cdef Py_ssize_t rstride = results.strides[0], cstride = recs.strides[0]
    cdef const uint8_t* rbase = <const uint8_t*>results.data
    cdef const uint8_t* cbase = <const uint8_t*>recs.data
    cdef Py_ssize_t[::1] offs = np.empty(nf, dtype=np.intp)
    cdef int[::1] kinds = np.empty(nf, dtype=np.intc)
    cdef unsigned char[::1] srcs = np.empty(nf, dtype=np.uint8)
    cdef Py_ssize_t rsize = results.dtype.itemsize, csize = recs.dtype.itemsize, size
    for j in range(nf):
        src, off, kind = specs[j]
        size = abs(kind) if kind else 1
        if off < 0 or off + size > (csize if src else rsize) or kind not in (0, 1, 2, 4, 8, -1, -2, -4, -8):
            raise ValueError(f"spec {j} lies outside its row")
        srcs[j], offs[j], kinds[j] = src, off, kind
    if index_offset < 0 or index_offset + 4 > rsize or seq_offset < 0 or seq_offset + 8 > rsize:
        raise ValueError("rec_index and seq lie outside the result row")
    out = np.zeros((nf, n), dtype=np.uint64)
    cdef uint64_t[:, ::1] o = out
    cdef const uint8_t* row
    cdef const uint8_t* rec
    cdef int32_t idx
    cdef uint64_t seq
    with nogil:
        for i in range(n):
            row = rbase + i * rstride
            memcpy(&idx, row + index_offset, 4)
            if idx >= m:
                with gil:
                    raise ValueError(f"rec_index {idx} past the {m} records")
            if idx < 0:
                memcpy(&seq, row + seq_offset, 8)
                if seq != 0:
                    with gil:
                        return None
                rec = NULL
            else:
                rec = cbase + idx * cstride
            for j in range(nf):
                if srcs[j] == 0:
                    o[j, i] = _read(row + offs[j], kinds[j])
                elif rec != NULL:
                    o[j, i] = _read(rec + offs[j], kinds[j])
    return out


# --- decoding single ops ------------------------------------------------------------------

cdef enum:
    _F_SKIP = 0     # not a field of the message: skipped as unknown
    _F_UINT64 = 1
    _F_INT64 = 2
    _F_UINT32 = 3
    _F_BYTES = 4
    _F_OTHER = 5    # a field this parser leaves to protobuf (a basket, a PIN)


def scalar_fields(bytes raw, bytes kinds):
    """A message of singular scalar and bytes fields (SwipeRequest without its basket,
    RechargeRequest) read as protobuf reads it (the rules above swipe_columns): a list of
    the fields' values by field number (index 0 unused; 0 or b"" when absent), or None
    when it is malformed or carries a field whose kind is _F_OTHER, for protobuf to
    decide. kinds[k] is field k's kind; numbers past its end are unknown fields."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(raw)
    cdef const uint8_t* end = p + len(raw)
    cdef const uint8_t* kp = <const uint8_t*>PyBytes_AS_STRING(kinds)
    cdef Py_ssize_t nk = len(kinds), k
    cdef uint32_t tag, fn, wt
    cdef uint64_t v, ln
    cdef int kind
    cdef uint64_t vals[32]
    cdef const uint8_t* starts[32]
    cdef Py_ssize_t lens[32]
    if nk > 32:
        raise ValueError("at most 31 fields")
    memset(vals, 0, sizeof(vals))
    memset(lens, 0, sizeof(lens))
    while p < end:
        p = _tag(p, end, &tag)
        if p == NULL:
            return None
        fn = tag >> 3
        wt = tag & 7
        kind = kp[fn] if fn < nk else _F_SKIP
        if kind == _F_OTHER:
            return None
        if kind == _F_BYTES and wt == 2:
            p = _varint(p, end, &ln)
            if p == NULL or ln >= 0x7FFFFFFF or <uint64_t>(end - p) < ln:
                return None
            starts[fn] = p
            lens[fn] = <Py_ssize_t>ln
            p += ln
        elif (kind == _F_UINT64 or kind == _F_INT64 or kind == _F_UINT32) and wt == 0:
            p = _varint(p, end, &v)
            if p == NULL:
                return None
            vals[fn] = v & 0xFFFFFFFFu if kind == _F_UINT32 else v
        else:
            if wt == 4:
                return None
            p = _skip(p, end, tag, 0)
            if p == NULL:
                return None
    out = [None] * nk
    for k in range(1, nk):
        kind = kp[k]
        if kind == _F_BYTES:
            out[k] = PyBytes_FromStringAndSize(<const char*>starts[k], lens[k]) if lens[k] else b""
        elif kind == _F_INT64:
            out[k] = <int64_t>vals[k]
        elif kind == _F_UINT64 or kind == _F_UINT32:
            out[k] = vals[k]
    return out
