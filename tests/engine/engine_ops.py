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
