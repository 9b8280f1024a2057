"""DeadlineTimer: one event-loop timer serving a deadline that moves on every request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

# Firing this close to the deadline counts as on time (the loop's clock resolution).
SLACK: Final = 0.001


class DeadlineTimer:
    """Re-arming is two assignments, not a timer-heap operation.

    The loop handle is only rescheduled when the new deadline is earlier than the one it will
    fire at; a handle that fires early sees the later deadline and re-schedules itself once.
    """

    __slots__ = ("loop", "handle", "when", "deadline", "callback")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = None
        self.when = 0.0
        self.deadline = 0.0
        self.callback: Callable[[], None] | None = None

    def arm(self, timeout: float, callback: Callable[[], None]) -> None:
        deadline = self.loop.time() + timeout
        self.deadline = deadline
        self.callback = callback
        if self.handle is None or self.when > deadline:
            if self.handle is not None:
                self.handle.cancel()
            self.when = deadline
            self.handle = self.loop.call_at(deadline, self.fire)

    def disarm(self) -> None:
        self.callback = None

    def cancel(self) -> None:
        self.callback = None
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def fire(self) -> None:
        self.handle = None
        callback = self.callback
        if callback is None:
            return
        if self.loop.time() + SLACK < self.deadline:
            self.when = self.deadline
            self.handle = self.loop.call_at(self.deadline, self.fire)
            return
        self.callback = None
        callback()
