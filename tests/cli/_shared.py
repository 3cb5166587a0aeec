"""What the `mms` command tests share besides fixtures (tests/cli/conftest.py)."""

from __future__ import annotations

import asyncio

import grpc

from server.client import CHANNEL_OPTIONS, aio_channel, auth, stubs
from server.mms_pb import pos_pb2, pos_pb2_grpc
from server.tools.launch import ChildServer, TerminalSpec, issue_and_fund

BOOT = "cli-boot-secret"


def funded_child(tmp_path_factory, name: str, cards: list[int]) -> ChildServer:
    """A started `mms serve` child with an admin and a pos terminal, cards issued (no
    balance); the caller terminates it."""
    terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 8, "pos")]
    c = ChildServer(str(tmp_path_factory.mktemp(name)), terms).start()

    async def setup() -> None:
        async with aio_channel(c.target) as ch:
            pos, admin = stubs(ch)
            await issue_and_fund(admin, pos, c.token("admin"), c.token("pos"), cards, 0)

    asyncio.run(setup())
    return c


def principal(child, no: int) -> int:
    """Card no's principal balance, read through the child's POS service."""
    with grpc.insecure_channel(child.target, options=CHANNEL_OPTIONS) as ch:
        card = pos_pb2_grpc.PosServiceStub(ch).GetCard(pos_pb2.GetCardRequest(card_no=no),
                                                       metadata=auth(child.token()))
    return card.card.principal_fen
