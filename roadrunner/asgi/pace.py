"""The client's pace: slow request bodies and slow readers, judged once for h1, h2 and h3.

RFC 9112 §9.5 lets a server close a connection it no longer wants to wait on; Apache's
mod_reqtimeout (`body=20,MinRate=500`) is the model. A client is judged only while the server
waits on it: for a request body, while the app waits in receive() with nothing buffered (a slow
app that does not read stops the clock, and so does flow control the server withholds); for a
response, while bytes the app produced wait for the client to take them (a slow app that
produces slowly never waits). Time is counted in windows of `window` seconds of such waiting;
a window in which the client moved fewer than `min_bytes` (at least one byte) trips the guard.

A protocol supplies only the probe and the answer: an item watched here has
`pace_probe() -> (waiting, moved) | None` (None: nothing to judge any more, stop watching;
`moved`: a running count of the bytes the client has moved) and `pace_trip()` (h1: 408 or a
close; h2: 408 or RST_STREAM; h3: 408 or a stream reset). Items are watched only from when a
wait begins, and one loop timer per guard sweeps them while any is watched: nothing runs for a
request that never waits on its client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

logger = logging.getLogger("roadrunner.error")

# The sweep runs this often (shorter for short windows: a verdict lands within a quarter window).
SWEEP_PERIOD = 1.0
MIN_SWEEP_PERIOD = 0.02


class Paced(Protocol):
    """What a guard needs of a watched item (an HTTPStream, a connection, an h2/h3 stream)."""

    def pace_probe(self) -> tuple[bool, int] | None: ...

    def pace_trip(self) -> None: ...


class Meter:
    """One item's account: waiting time and bytes moved in the current window."""

    __slots__ = ("waited", "moved", "last_moved", "last_time")

    def __init__(self, moved: int, now: float) -> None:
        self.waited = 0.0
        self.moved = 0
        self.last_moved = moved
        self.last_time = now

    def judge(self, now: float, waiting: bool, moved: int, window: float, min_bytes: int) -> bool:
        """Account one sample; True when a whole window of waiting moved too few bytes."""
        interval = now - self.last_time
        self.last_time = now
        # Bytes moved count whether or not the server was waiting at the sample: in doubt the
        # client gets the credit. Only waiting time runs the clock.
        self.moved += moved - self.last_moved
        self.last_moved = moved
        if not waiting:
            return False
        self.waited += interval
        if self.waited < window:
            return False
        slow = self.moved < min_bytes
        self.waited = 0.0
        self.moved = 0
        return slow


class PaceGuard:
    """Watches the items whose client the server waits on, and trips the ones too slow."""

    __slots__ = ("name", "window", "min_bytes", "items", "loop", "handle")

    def __init__(self, name: str) -> None:
        self.name = name
        self.window = 0.0  # 0: the guard is off
        self.min_bytes = 1
        self.items: dict[Paced, Meter] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.handle: asyncio.TimerHandle | None = None

    def configure(self, window: float, rate: int) -> None:
        """Each `window` seconds of waiting must move `rate` bytes/s (at least one byte)."""
        self.window = window
        self.min_bytes = max(1, int(rate * window))

    def watch(self, item: Paced) -> None:
        """A wait on the client begins (idempotent; cheap when already watched)."""
        if self.window <= 0 or item in self.items:
            return
        probe = item.pace_probe()
        if probe is None:
            return
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # the first wait, or a ServerState serving again on a new loop
            self.close()
            self.loop = loop
        self.items[item] = Meter(probe[1], loop.time())
        if self.handle is None:
            self.handle = loop.call_later(self.period, self.sweep)

    @property
    def period(self) -> float:
        return max(MIN_SWEEP_PERIOD, min(SWEEP_PERIOD, self.window / 4))

    def sweep(self) -> None:
        self.handle = None
        assert self.loop is not None
        now = self.loop.time()
        window, min_bytes = self.window, self.min_bytes
        tripped = []
        for item, meter in list(self.items.items()):
            try:
                probe = item.pace_probe()
            except Exception:  # one broken item must not stop the guard
                logger.exception("%s guard: probe failed", self.name)
                probe = None
            if probe is None:
                del self.items[item]
            elif meter.judge(now, probe[0], probe[1], window, min_bytes):
                del self.items[item]
                tripped.append(item)
        for item in tripped:
            try:
                item.pace_trip()
            except Exception:
                logger.exception("%s guard: answering a slow client failed", self.name)
        if self.items:
            self.handle = self.loop.call_later(self.period, self.sweep)

    def close(self) -> None:
        """Forget every item and stop the sweep timer (the server shut down)."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.items.clear()
