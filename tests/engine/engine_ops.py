"""Op arrays the engine tests submit."""

from __future__ import annotations

import numpy as np

from core.records import OP, OpType


def ops_for(cards, amount, op_type=OpType.SWIPE, ns=7, start=0) -> np.ndarray:
    """One op of op_type and amount per card, client ids (ns, start + 1), (ns, start + 2), ..."""
    ops = np.zeros(len(cards), dtype=OP)
    ops["client_hi"] = ns
    ops["client_lo"] = np.arange(start + 1, start + len(cards) + 1)
    ops["card_no"] = cards
    ops["amount_fen"] = amount
    ops["op_type"] = op_type
    return ops


def client_op(card: int, amount: int, op_type: int, client: bytes,
              ref: bytes | None = None) -> np.ndarray:
    """One op under a 16-byte client id, a refund's target client id in ref."""
    ops = np.zeros(1, dtype=OP)
    ops["client_hi"], ops["client_lo"] = (int.from_bytes(client[:8], "big"),
                                          int.from_bytes(client[8:], "big"))
    ops["card_no"], ops["amount_fen"], ops["op_type"] = card, amount, op_type
    if ref is not None:
        ops["ref_hi"], ops["ref_lo"] = (int.from_bytes(ref[:8], "big"),
                                        int.from_bytes(ref[8:], "big"))
    return ops
