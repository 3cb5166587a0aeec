"""Requests to engine ops and engine results to replies: the one decoder of ops (batch
columns and single requests) and the one encoder of results."""

from __future__ import annotations

import logging

import grpc
import numpy as np

from core.records import (
    CATEGORY_COUNT,
    COUPONS_PER_OP,
    ITEM,
    OP,
    PIN_DIGITS_MAX,
    CardFlag,
    ItemFlag,
    is_ascii_digits,
    ops_from_rows,
)
from server.mms_pb import (
    pos_pb2,
    types_pb2,
)
from server.rpc import _wire
from server.rpc.auth import Terminal
from server.rpc.constants import CLIENT_ID_BYTES
from server.rpc.errors import RpcFailure, invalid

log = logging.getLogger("mms.server")

# --- decoding -------------------------------------------------------------------------

def check_store(term: Terminal, store_id: int) -> None:
    if store_id and store_id != term.store_id:
        raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "STORE_MISMATCH",
                         f"terminal {term.terminal_id} belongs to store {term.store_id}, "
                         f"not {store_id}", {"store_id": str(term.store_id)})


def _column(values, n: int, name: str, dtype, limit: int | None = None) -> np.ndarray | None:
    """An optional column: empty (None) or exactly n values, each below limit."""
    if len(values) == 0:
        return None
    if len(values) != n:
        raise invalid("COLUMN_LENGTH", f"{name} has {len(values)} values for {n} ops",
                      column=name)
    arr = np.asarray(values, dtype=np.uint64 if dtype == np.uint64 else np.int64)
    if limit is not None and (arr.max() >= limit or arr.min() < 0):
        raise invalid("VALUE_OUT_OF_RANGE", f"{name} values must be 0..{limit - 1}", column=name)
    return arr


def decode_ops(client_ids: bytes, card_nos, amount_fen, *, op_type: int, term: Terminal,
               batch_ops_max: int, category=(), flags=(), operator_ids=(),
               operator_id: int = 0) -> np.ndarray:
    """Packed request columns -> OP array, stamped with the terminal's store and id.
    batch_ops_max is the engine's batch_ops_max: one request is one engine submission."""
    n = len(card_nos)
    if not 1 <= n <= batch_ops_max:
        raise invalid("BATCH_SIZE", f"a batch holds 1..{batch_ops_max} ops, not {n}",
                      batch_ops_max=str(batch_ops_max))
    if len(client_ids) != CLIENT_ID_BYTES * n:
        raise invalid("CLIENT_IDS_LENGTH",
                      f"client_ids must be {CLIENT_ID_BYTES} bytes per op ({CLIENT_ID_BYTES * n}), "
                      f"not {len(client_ids)}")
    if len(amount_fen) != n:
        raise invalid("COLUMN_LENGTH", f"amount_fen has {len(amount_fen)} values for {n} ops",
                      column="amount_fen")
    ops = np.zeros(n, dtype=OP)
    pairs = np.frombuffer(client_ids, dtype=">u8").reshape(n, 2)
    ops["client_hi"] = pairs[:, 0]
    ops["client_lo"] = pairs[:, 1]
    ops["card_no"] = np.asarray(card_nos, dtype=np.uint64)
    ops["amount_fen"] = np.asarray(amount_fen, dtype=np.int64)
    ops["store_id"] = term.store_id
    ops["terminal_id"] = term.terminal_id
    ops["op_type"] = op_type
    cat = _column(category, n, "category", np.int64, CATEGORY_COUNT)
    if cat is not None:
        ops["category"] = cat
    fl = _column(flags, n, "flags", np.int64, 256)
    if fl is not None:
        ops["op_flags"] = fl
    opr = _column(operator_ids, n, "operator_ids", np.int64, 2**32)
    ops["operator_id"] = opr if opr is not None else operator_id
    return ops


class _SwipeColumns:
    """SwipeColumns as the C decoder read it: the same attributes, numpy columns."""

    __slots__ = ("client_ids", "card_nos", "amount_fen", "category", "flags", "operator_ids")

    def __init__(self, client_ids, card_nos, amount_fen, category, flags, operator_ids):
        self.client_ids = client_ids
        self.card_nos = card_nos
        self.amount_fen = amount_fen
        self.category = category
        self.flags = flags
        self.operator_ids = operator_ids


class SwipeColumnsRequest:
    """A SwipeStreamRequest or SwipeBatchRequest as the C decoder read it: what the
    handlers read of either (batch_id, swipes, store_id)."""

    __slots__ = ("batch_id", "swipes", "store_id")

    def __init__(self, batch_id: int, swipes: _SwipeColumns, store_id: int) -> None:
        self.batch_id = batch_id
        self.swipes = swipes
        self.store_id = store_id


def _swipe_request_decoder(message_type, batch_field: int, swipes_field: int,
                           store_field: int):
    def decode(raw: bytes):
        """The request's bytes parsed in C (server/rpc/_wire.pyx swipe_columns) straight
        into numpy columns, for decode_ops to check as it checks protobuf's. What the C
        parser refuses, protobuf decides: it raises (the guard answers MALFORMED_REQUEST)
        or returns its message (an unknown group nested past the C parser's depth)."""
        got = _wire.swipe_columns(bytes(raw), batch_field, swipes_field, store_field)
        if got is None:
            return message_type.FromString(raw)
        batch_id, store_id, cids, cards, amounts, category, flags, operators = got
        return SwipeColumnsRequest(
            batch_id, _SwipeColumns(cids, cards, amounts, category, flags, operators),
            store_id)
    return decode


class SingleRequest:
    """A plain SwipeRequest (no basket, coupons, offset or PIN) or a RechargeRequest as
    the C decoder read it: the attributes single_op and the handlers read, as slots
    (protobuf's attributes cost ~0.15 us each to read, a repeated one ~0.6 us)."""

    __slots__ = ("client_id", "card_no", "amount_fen", "category", "flags", "operator_id",
                 "store_id")
    items = coupon_ids = ()
    points_offset = 0
    pin = ""

    def __init__(self, client_id: bytes, card_no: int, amount_fen: int, category: int,
                 flags: int, operator_id: int, store_id: int) -> None:
        self.client_id = client_id
        self.card_no = card_no
        self.amount_fen = amount_fen
        self.category = category
        self.flags = flags
        self.operator_id = operator_id
        self.store_id = store_id


# Field kinds for _wire.scalar_fields, by field number (pos.proto).
_U64, _I64, _U32, _BYTES, _OTHER = 1, 2, 3, 4, 5
_SWIPE_KINDS = bytes([0, _BYTES, _U64, _I64, _U32, _U32, _U32, _U32, _OTHER, _OTHER, _OTHER, _OTHER])
_RECHARGE_KINDS = bytes([0, _BYTES, _U64, _I64, _U32, _U32])


def _swipe_single(raw: bytes):
    """SwipeRequest's bytes: a SingleRequest when it is a plain swipe, else (a basket,
    coupons, an offset, a PIN, or what the C parser refuses) protobuf's message, or
    protobuf's DecodeError (the guard answers MALFORMED_REQUEST)."""
    got = _wire.scalar_fields(bytes(raw), _SWIPE_KINDS)
    if got is None:
        return pos_pb2.SwipeRequest.FromString(raw)
    return SingleRequest(got[1], got[2], got[3], got[4], got[5], got[6], got[7])


def _recharge_single(raw: bytes):
    """RechargeRequest's bytes as a SingleRequest (what the C parser refuses: protobuf's)."""
    got = _wire.scalar_fields(bytes(raw), _RECHARGE_KINDS)
    if got is None:
        return pos_pb2.RechargeRequest.FromString(raw)
    return SingleRequest(got[1], got[2], got[3], 0, 0, got[4], got[5])


# The hot methods whose requests the guard hands to these decoders instead of protobuf's
# (server/rpc/guard.py): a 1,024-swipe batch as 6 arrays, not 1,024 x 5 Python ints; a
# unary swipe as 7 slots.
RAW_REQUEST_DECODERS = {
    "/mms.v1.PosService/SwipeStream": _swipe_request_decoder(pos_pb2.SwipeStreamRequest, 1, 2, 3),
    "/mms.v1.PosService/SwipeBatch": _swipe_request_decoder(pos_pb2.SwipeBatchRequest, 0, 1, 2),
    "/mms.v1.PosService/Swipe": _swipe_single,
    "/mms.v1.PosService/Recharge": _recharge_single,
}


_CARD_INT_FIELDS = frozenset(f.name for f in types_pb2.Card.DESCRIPTOR.fields
                             if f.type != f.TYPE_BOOL)


def card_pb(card: dict) -> types_pb2.Card:
    """A card (core's card_to_dict) as the API shows it, with its membership state."""
    return types_pb2.Card(
        **{k: int(v) for k, v in card.items() if k in _CARD_INT_FIELDS},
        membership_lapsed=bool(int(card.get("flags", 0)) & CardFlag.CARD_FLAG_MEMBERSHIP_LAPSED))


def encode_results(res) -> types_pb2.OpResultColumns:
    """A batch's results as columns: one list per result column (BatchResult.columns())."""
    return types_pb2.OpResultColumns(
        codes=res.codes.tolist(), replayed=res.replayed.astype(bool).tolist(),
        seq=res.seq.tolist(), **{k: v.tolist() for k, v in res.columns().items()})


# OpResultColumns' fields by number, as the wire carries them (field-number order).
_RESULT_FIELDS = tuple(sorted((f.number, f.name)
                              for f in types_pb2.OpResultColumns.DESCRIPTOR.fields))


_KINDS = {"u1": 1, "u2": 2, "u4": 4, "u8": 8, "i1": -1, "i2": -2, "i4": -4, "i8": -8, "b1": 0}
_SPECS: dict[tuple, tuple] = {}


def _kind(dt: np.dtype) -> int:
    return _KINDS[f"{dt.kind}{dt.itemsize}"]


def _specs(results_dt: np.dtype, recs_dt: np.dtype, names: tuple[str, ...]) -> tuple:
    """Where each named result column lies: (source, byte offset, kind) for
    _wire.gather_results, read from the dtypes as BatchResult.columns() reads them (a
    result field, a record field, else the record's after-image)."""
    key = (results_dt, recs_dt, names)
    got = _SPECS.get(key)
    if got is None:
        after_dt, after_off = recs_dt.fields["after"][:2]
        specs = []
        for name in names:
            field = {"codes": "code"}.get(name, name)
            if field in ("code", "replayed", "seq"):
                dt, off = results_dt.fields[field][:2]
                specs.append((0, off, 0 if field == "replayed" else _kind(dt)))
            elif field in recs_dt.names and field != "after":
                dt, off = recs_dt.fields[field][:2]
                specs.append((1, off, _kind(dt)))
            else:
                dt, off = after_dt.fields[field][:2]
                specs.append((1, after_off + off, _kind(dt)))
        got = _SPECS[key] = (results_dt.fields["rec_index"][1], results_dt.fields["seq"][1],
                             specs)
    return got


def _gathered(res, names: tuple[str, ...]) -> np.ndarray | None:
    """The named result columns of a BatchResult as rows of one uint64 array, gathered
    in C; None when some op's record is in an earlier batch (columns() reads those)."""
    arrays = getattr(res, "arrays", None)
    if arrays is None:
        return None
    results, recs = arrays()
    index_off, seq_off, specs = _specs(results.dtype, recs.dtype, names)
    return _wire.gather_results(results, recs, index_off, seq_off, specs)


_RESULT_NAMES = tuple(name for _, name in _RESULT_FIELDS)


def results_bytes(res) -> bytes:
    """encode_results(res).SerializeToString(), byte for byte, written from the result
    columns in C (server/rpc/_wire.pyx) instead of through 15 Python lists and a message:
    the reply of a streamed batch. tests/unit/test_wire.py holds it to protobuf's bytes."""
    rows = _gathered(res, _RESULT_NAMES)
    if rows is not None:
        return _wire.packed_fields([(number, rows[j])
                                    for j, (number, _) in enumerate(_RESULT_FIELDS)])
    cols = res.columns()
    cols["codes"] = res.codes
    cols["replayed"] = res.replayed.astype(bool)
    cols["seq"] = res.seq
    return _wire.packed_fields([
        (number, np.ascontiguousarray(cols[name], dtype=np.int64).view(np.uint64))
        for number, name in _RESULT_FIELDS])


def message_bytes(*fields: tuple[int, int | bytes]) -> bytes:
    """A message of (field number, value) pairs, in field-number order: an int is a
    varint field (left out when 0, as protobuf leaves it), bytes a length-delimited one
    (an embedded message, written even when empty: it is set)."""
    out = []
    for number, value in fields:
        if isinstance(value, bytes):
            out.append(_wire.varint(number << 3 | 2) + _wire.varint(len(value)) + value)
        elif value:
            out.append(_wire.varint(number << 3) + _wire.varint(value))
    return b"".join(out)


def encode_one(res, i: int = 0) -> types_pb2.OpResult:
    """One op's result, from the same columns as encode_results."""
    return SingleResults(res).op_result(i)


# OpResult's fields by number (field-number order), for replies written as bytes.
_OP_RESULT_FIELDS = tuple(sorted((f.number, f.name) for f in types_pb2.OpResult.DESCRIPTOR.fields))
_OP_RESULT_NAMES = tuple(name for _, name in _OP_RESULT_FIELDS)


class SingleResults:
    """The answers to one submission of coalesced single ops, decoded for all of them
    at once on first use (one numpy step per column, not per op and field)."""

    __slots__ = ("res", "codes", "replayed", "_cols", "_replies")

    def __init__(self, res) -> None:
        self.res = res
        self.codes: list[int] = res.codes.tolist()
        self.replayed: list[bool] = res.replayed.astype(bool).tolist()
        self._cols: dict[str, list[int]] | None = None
        self._replies: list[bytes] | None = None

    def replies(self) -> list[bytes]:
        """Every op's reply bytes (reply(i) for each i), written at once."""
        if self._replies is None:
            self.reply(0)
        return self._replies

    def reply(self, i: int) -> bytes:
        """The wire bytes of a reply whose field 1 is op i's OpResult (SwipeResponse,
        RechargeResponse): the same bytes as Response(result=self.op_result(i))
        serialised, written for every op of the submission at once in C
        (server/rpc/_wire.pyx), so an answer costs no message and no serialisation."""
        if self._replies is None:
            rows = _gathered(self.res, _OP_RESULT_NAMES)
            if rows is not None:
                self._replies = _wire.single_messages(1, [
                    (number, rows[j]) for j, (number, _) in enumerate(_OP_RESULT_FIELDS)])
                return self._replies[i]
            cols = self.res.columns()
            cols["code"] = self.res.codes
            cols["replayed"] = self.res.replayed.astype(bool)
            cols["seq"] = self.res.seq
            self._replies = _wire.single_messages(1, [
                (number, np.ascontiguousarray(cols[name], dtype=np.int64).view(np.uint64))
                for number, name in _OP_RESULT_FIELDS])
        return self._replies[i]

    def op_result(self, i: int) -> types_pb2.OpResult:
        """Op i's result, from the batch's columns (decoded once for all the ops)."""
        if self._cols is None:
            cols = self.res.columns()
            self._cols = {k: v.tolist() for k, v in cols.items()}
            self._cols["seq"] = self.res.seq.tolist()
        return types_pb2.OpResult(code=self.codes[i], replayed=self.replayed[i],
                                  **{k: v[i] for k, v in self._cols.items()})


def single_op(req, term: Terminal, op_type: int, category: int = 0, flags: int = 0, *,
               zero_amount: bool = False) -> tuple:
    """A unary request as one row of SINGLE_OP, checked at the edge. zero_amount lets an
    amount of 0 through to the engine (a refund of 0 reverses an order the coupons paid
    in full; the engine decides whether the swipe is one)."""
    if len(req.client_id) != CLIENT_ID_BYTES:
        raise invalid("RESULT_CLIENT_ID_INVALID",
                      f"client_id must be {CLIENT_ID_BYTES} bytes, not {len(req.client_id)}")
    if req.card_no == 0:
        raise invalid("RESULT_CARD_NO_INVALID", "card_no must be set")
    if req.amount_fen < 0 or (req.amount_fen == 0 and not zero_amount):
        raise invalid("RESULT_AMOUNT_NOT_POSITIVE", "amount_fen must be positive")
    if category >= CATEGORY_COUNT:
        raise invalid("VALUE_OUT_OF_RANGE", "category must be 0..65535", column="category")
    if flags >= 256:
        raise invalid("VALUE_OUT_OF_RANGE", "flags must be 0..255", column="flags")
    check_store(term, req.store_id)
    cid = req.client_id
    return (int.from_bytes(cid[:8], "big"), int.from_bytes(cid[8:], "big"), req.card_no,
            req.amount_fen, term.store_id, term.terminal_id, req.operator_id, category,
            op_type, flags)


# A basket at one till: enough lines for a supermarket trolley, small enough to check.
ITEMS_PER_SWIPE_MAX = 256


def _pin(digits: str) -> tuple[int, int]:
    if not digits:
        return 0, 0
    if len(digits) > PIN_DIGITS_MAX or not is_ascii_digits(digits):
        raise invalid("PIN_MALFORMED", f"pin: a PIN is 1 to {PIN_DIGITS_MAX} ASCII digits 0-9",
                      field="pin")
    return int(digits), len(digits)


def full_op(row: tuple, *, pin: str = "", points_offset: int = 0,
             ref_client_id: bytes = b"") -> np.ndarray:
    """One OP row from a SINGLE_OP tuple plus the domain inputs."""
    ops = ops_from_rows([row])
    ops["pin"], ops["pin_len"] = _pin(pin)
    if points_offset < 0:
        raise invalid("RESULT_OFFSET_INVALID", "points_offset must not be negative")
    ops["points_offset"] = points_offset
    if ref_client_id:
        if len(ref_client_id) != CLIENT_ID_BYTES:
            raise invalid("RESULT_CLIENT_ID_INVALID", "swipe_client_id must be 16 bytes")
        ops["ref_hi"] = int.from_bytes(ref_client_id[:8], "big")
        ops["ref_lo"] = int.from_bytes(ref_client_id[8:], "big")
    return ops


def basket(req, ops: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The swipe's line items and coupons as engine arrays, checked at the edge."""
    items = coupons = None
    if req.items:
        if len(req.items) > ITEMS_PER_SWIPE_MAX:
            raise invalid("TOO_MANY_ITEMS", f"at most {ITEMS_PER_SWIPE_MAX} lines per swipe")
        items = np.zeros(len(req.items), dtype=ITEM)
        for i, line in enumerate(req.items):
            if line.category >= CATEGORY_COUNT or line.qty == 0 or line.amount_fen < 0:
                raise invalid("RESULT_ITEMS_INVALID", f"line {i}: category 0..65535, qty >= 1, amount >= 0")
            items[i] = (line.sku, line.amount_fen, line.qty, line.category,
                        ItemFlag.ITEM_NO_POINTS if line.no_points else 0, 0)
        ops["items_off"], ops["items_n"] = 0, len(items)
    if req.coupon_ids:
        if len(req.coupon_ids) > COUPONS_PER_OP:
            raise invalid("RESULT_COUPONS_INVALID", f"at most {COUPONS_PER_OP} coupons per swipe")
        coupons = np.array(req.coupon_ids, dtype=np.uint64)
        ops["coupons_off"], ops["coupons_n"] = 0, len(coupons)
    return items, coupons


