"""PaceGuard (asgi/pace.py) outside any protocol: a stalled item trips within its window, and
a guard that outlives its event loop (a ServerState served again on a new loop) still sweeps."""

from __future__ import annotations

import asyncio

from roadrunner.asgi.pace import PaceGuard


class Stalled:
    """Always waiting on its client, which never moves a byte."""

    def __init__(self) -> None:
        self.tripped = asyncio.Event()

    def pace_probe(self) -> tuple[bool, int]:
        return True, 0

    def pace_trip(self) -> None:
        self.tripped.set()


async def trips_within(guard: PaceGuard, seconds: float) -> bool:
    item = Stalled()
    guard.watch(item)
    try:
        await asyncio.wait_for(item.tripped.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


def test_a_guard_left_with_items_on_a_closed_loop_sweeps_on_the_next_one() -> None:
    guard = PaceGuard("request body")
    guard.configure(0.2, 100)

    async def leave_one_watched() -> None:
        guard.watch(Stalled())  # its loop ends before the first sweep: the timer dies with it

    asyncio.run(leave_one_watched())
    assert asyncio.run(trips_within(guard, 2.0))


def test_close_forgets_every_item_and_its_timer() -> None:
    guard = PaceGuard("response send")
    guard.configure(0.2, 100)

    async def watch_then_close() -> None:
        guard.watch(Stalled())
        guard.close()
        assert guard.handle is None and not guard.items

    asyncio.run(watch_then_close())
    assert asyncio.run(trips_within(guard, 2.0))
