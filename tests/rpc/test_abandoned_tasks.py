"""mms_leadership_abandoned_tasks: an etcd call that ignores its cancellation past
leader.bounded's bounds is kept (not collected mid-flight) and counted on the real
server's /metrics until it ends."""

from __future__ import annotations

import asyncio

from test_admin_rpc import Env

from server.rpc import leader


def _gauge(e: Env) -> float:
    for line in e.metrics.text().decode().splitlines():
        if line.startswith("mms_leadership_abandoned_tasks "):
            return float(line.split()[1])
    raise AssertionError("mms_leadership_abandoned_tasks is not exported")


def test_a_call_that_ignores_its_cancellation_is_counted_until_it_ends(tmp_path):
    e = Env(str(tmp_path / "data"))
    try:
        base = leader.abandoned_tasks()
        assert _gauge(e) == base

        async def scenario():
            release = asyncio.Event()
            ended = asyncio.Event()

            async def stubborn():
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    await release.wait()        # ignores its cancellation until released
                finally:
                    ended.set()

            done, err = await leader.bounded(stubborn(), 0.01)
            assert (done, err) == (False, None)
            during = (leader.abandoned_tasks(), _gauge(e))
            release.set()
            await ended.wait()
            for _ in range(100):                # its done callback runs on a later turn
                if leader.abandoned_tasks() == base:
                    break
                await asyncio.sleep(0)
            return during

        assert asyncio.run(scenario()) == (base + 1, base + 1)
        assert leader.abandoned_tasks() == base and _gauge(e) == base
    finally:
        e.close()
