"""An HTTP/2 connection's lifetime: the preface and idle timers and graceful shutdown (GOAWAY).

`ConnectionLifetime` is a mixin of `connection.Http2Connection`, which sets the state it uses.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from roadrunner.protocols.http2.guards import guard_counters

if TYPE_CHECKING:
    from roadrunner.config import Config
    from roadrunner.protocols.http2.stream import H2StreamTransport

logger = logging.getLogger("roadrunner.error")


class ConnectionLifetime:
    """When an HTTP/2 connection ends: preface timeout, idle timeout, graceful shutdown."""

    # The state this mixin assigns (Http2Connection declares the rest of its slots).
    __slots__ = ("preface_timer", "idle_timer", "idle_since", "goaway_sent", "written")

    # Set by Http2Connection.__init__ (declared here: mypyc compiles both into one layout).
    config: Config
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    streams: dict[int, H2StreamTransport]
    dead: bool
    goaway_sent: bool
    last_stream_id: int
    written: int
    preface_timer: asyncio.TimerHandle | None
    idle_timer: asyncio.TimerHandle | None
    idle_since: float

    # Defined by Http2Connection.
    @abstractmethod
    def close(self, error_code: ErrorCodes | None) -> None:
        raise NotImplementedError

    @abstractmethod
    def flush(self) -> None:
        raise NotImplementedError

    @abstractmethod
    def reset(self, stream: H2StreamTransport, code: ErrorCodes) -> None:
        raise NotImplementedError

    @abstractmethod
    def peer_text(self) -> str:
        raise NotImplementedError

    def cancel_timers(self) -> None:
        for timer in (self.preface_timer, self.idle_timer):
            if timer is not None:
                timer.cancel()
        self.preface_timer = self.idle_timer = None

    def on_preface_timeout(self) -> None:
        self.preface_timer = None
        guard_counters["preface_timeout"] += 1
        logger.info("HTTP/2 connection preface timed out from %s", self.peer_text())
        self.close(ErrorCodes.NO_ERROR)

    def arm_idle_timer(self) -> None:
        """(Re)start the idle clock; with no stream open past timeout_keep_alive, we close.

        One timer serves many idle periods: a request does not cancel it, and on_idle waits out
        the rest of the latest period (a timer created and cancelled per request was a
        measurable part of a small request's cost).
        """
        if self.dead or self.streams:
            return
        self.idle_since = now = self.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_at(now + self.config.timeout_keep_alive, self.on_idle)

    def on_idle(self) -> None:
        self.idle_timer = None
        if self.streams or self.dead:
            return  # busy: drop() restarts the clock when the last stream goes
        deadline = self.idle_since + self.config.timeout_keep_alive
        if self.loop.time() < deadline:
            self.idle_timer = self.loop.call_at(deadline, self.on_idle)
            return
        guard_counters["idle_timeout"] += 1
        self.close(ErrorCodes.NO_ERROR)

    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY with the last stream we took; close once those finish."""
        if self.dead or self.goaway_sent:
            return
        self.goaway_sent = True
        for stream in list(self.streams.values()):
            server_shutdown = getattr(stream.http, "server_shutdown", None)
            if server_shutdown is not None:
                server_shutdown()  # a WebSocket (RFC 8441) closes with 1012
        # Sent by hand: h2's close_connection() would also forbid finishing in-flight streams.
        self.flush()
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.last_stream_id
        frame.error_code = ErrorCodes.NO_ERROR
        goaway = frame.serialize()
        self.written += len(goaway)
        self.transport.write(goaway)
        for stream in list(self.streams.values()):
            if stream.answered and not self.dead:
                self.reset(stream, ErrorCodes.NO_ERROR)  # only its upload was left (maybe_finish)
        if not self.streams and not self.dead:
            self.close(None)
