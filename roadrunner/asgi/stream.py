"""HTTPStream: the ASGI side of one HTTP request, shared by the h1, h2 and h3 connections.

A connection protocol parses bytes into events (body chunk, end, disconnect) and hands them to
the stream; the stream runs the app and turns its messages into calls on a `StreamTransport`,
which the connection encodes for its protocol. The stream owns the ASGI message-order state
machine, request-body backpressure and the extensions; the connection owns framing and limits.
"""

from __future__ import annotations

import asyncio
import logging
import os
from time import monotonic
from typing import TYPE_CHECKING, Any, Final, Protocol

from roadrunner.asgi.errors import ClientDisconnected, caused_by_disconnect, release_frames
from roadrunner.asgi.validation import (
    InvalidMessage,
    validate_early_hint,
    validate_response_body,
    validate_response_start,
    validate_trailers,
)
from roadrunner.logging import format_client, request_target

if TYPE_CHECKING:
    from roadrunner.server_state import ServerState

logger = logging.getLogger("roadrunner.error")
access_logger = logging.getLogger("roadrunner.access")

# Pause reading a request body once this much is buffered and not yet received by the app.
BODY_HIGH_WATER: Final = 65536
PATHSEND_CHUNK: Final = 65536
# A response streamed from memory to a client that keeps up never has to wait for the socket:
# when a stream has held the loop this long (one to two slices: see write_body), send() yields
# once, so other connections are served.
SEND_SLICE: Final = 0.001

Headers = list[tuple[bytes, bytes]]


class StreamTransport(Protocol):
    """What a connection protocol offers one stream (h1: the connection; h2/h3: a stream)."""

    supports_trailers: bool

    def write_informational(self, status: int, headers: Headers) -> None: ...

    def write_head(self, status: int, headers: Headers, end_stream: bool) -> None: ...

    def write_body(self, data: bytes, end_stream: bool) -> None: ...

    def write_trailers(self, headers: Headers) -> None: ...

    async def drain(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def body_consumed(self, nbytes: int) -> None: ...

    def abort(self) -> None: ...

    def cancel(self) -> None: ...

    def body_held(self) -> bool: ...

    def response_complete(self) -> None: ...


class HTTPStream:
    """One request/response exchange: the ASGI scope with its receive() and send()."""

    __slots__ = (
        "scope", "transport", "state", "access_log", "body", "more_body", "disconnected",
        "response_started", "response_complete", "expect_continue", "wants_trailers",
        "expects_trailers", "status", "waiter", "head_request", "task", "paused",
        "body_ended", "trailers", "keep_alive", "app_called", "request_delivered",
        "slice_start", "slice_probe", "received",
    )

    def __init__(
        self,
        scope: dict[str, Any],
        transport: StreamTransport,
        state: ServerState,
        access_log: bool,
        expect_continue: bool = False,
        more_body: bool = True,
    ) -> None:
        self.scope = scope
        self.transport = transport
        self.state = state
        self.access_log = access_log
        self.body = bytearray()
        self.more_body = more_body
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.expect_continue = expect_continue
        self.wants_trailers = False  # the client accepts trailers (TE: trailers / h2 / h3)
        self.expects_trailers = False  # the app announced trailers in http.response.start
        self.status = 0
        self.waiter: asyncio.Future[None] | None = None  # receive() waiting for an event
        self.head_request = scope["method"] == "HEAD"
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self.body_ended = False
        self.trailers: Headers = []
        self.keep_alive = True  # h1: the request allows reusing the connection
        self.app_called = False
        self.request_delivered = False  # receive() has returned the last http.request
        self.slice_start = 0.0  # when the send slice began (0: no chunk streamed yet)
        self.slice_probe = False  # a probe is scheduled and the loop has not run it yet
        self.received = 0  # request body bytes so far (the request-body pace guard)

    # -- events from the connection --------------------------------------------------------------

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed_body(self, data: bytes) -> None:
        self.body += data
        self.received += len(data)
        if len(self.body) > BODY_HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self.wake()

    def feed_end(self) -> None:
        self.more_body = False
        self.wake()

    def feed_disconnect(self) -> None:
        self.disconnected = True
        self.wake()

    # -- running the app ---------------------------------------------------------------------------

    async def run(self, app: Any) -> None:
        """Call the app and enforce what it must do: answer, completely, once."""
        self.app_called = True
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and self.disconnected:
                # The client went away and the connection cancelled the app: nothing to answer.
                self.transport.abort()
                raise
            if self.disconnected and isinstance(exc, Exception) and caused_by_disconnect(exc):
                # send() raised ClientDisconnected and the app let it (or its framework's
                # rewrap) out: the expected end of a response nobody reads any more.
                # The connection already dealt with the disconnect (or is answering 413).
                logger.debug("ASGI application stopped after the client disconnected: %r", exc)
                release_frames(exc)
                return
            msg = "Exception in ASGI application\n"
            logger.error(msg, exc_info=exc)
            if not self.response_started:
                self.send_error_response(500)
            elif not self.response_complete:
                self.transport.abort()
            # A response already complete stays valid: the connection's framing is intact.
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.response_started:
                if not self.disconnected:
                    logger.error("ASGI callable returned without starting response.")
                    self.send_error_response(500)
            elif not self.response_complete and not self.disconnected:
                logger.error("ASGI callable returned without completing response.")
                self.transport.abort()
        finally:
            # Tasks started with start_task(self_removing=True) leave the registry here.
            self.state.tasks.discard(self.task)  # type: ignore[arg-type]

    def send_error_response(self, status: int, extra: Headers | None = None) -> None:
        """Answer with a short plain-text error (500 after an app failure, 503 when shedding, 408
        when the client's body is too slow)."""
        if self.disconnected:
            return
        phrase = {
            408: b"Request Timeout", 500: b"Internal Server Error", 503: b"Service Unavailable",
        }.get(status, b"Error")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(phrase)).encode()),
            (b"connection", b"close"),
        ]
        if extra:
            headers.extend(extra)
        self.response_started = True
        self.status = status
        self.transport.write_head(status, headers, False)
        self.transport.write_body(b"" if self.head_request else phrase, True)
        self.finish_response()

    # -- ASGI receive / send -------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue and not self.response_started and not self.disconnected:
            # RFC 9110 §10.1.1: 100 Continue only once the app asks for the body.
            self.expect_continue = False
            self.transport.write_informational(100, [])
        # Wait while there is nothing to hand over: no body yet, or the whole request already
        # delivered. After the last http.request, receive() blocks until the client goes or
        # the response is complete, then says http.disconnect (uvicorn; ASGI HTTP spec,
        # "Disconnected Client"): answering at once would make a disconnect watcher spin.
        while (
            not self.disconnected
            and not self.response_complete
            and (self.request_delivered or (self.more_body and not self.body))
        ):
            if self.paused:
                self.paused = False
                self.transport.resume_reading()
            if self.more_body:
                self.state.body_pace.watch(self)  # from here the client's pace counts
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = bytes(self.body)
        self.body.clear()
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        if body:
            self.transport.body_consumed(len(body))
        more_body = self.more_body
        if not more_body:
            self.request_delivered = True
        return {"type": "http.request", "body": body, "more_body": more_body}

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if self.disconnected:
            # ASGI spec 2.4+ (we advertise 2.5): send() to a gone client raises an OSError.
            raise ClientDisconnected("client disconnected")
        if not self.response_started:
            if message_type == "http.response.start":
                self.start_response(message)
                return
            if message_type == "http.response.early_hint":
                links = validate_early_hint(message)
                self.transport.write_informational(103, [(b"link", link) for link in links])
                return
            raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message_type}'.")
        if self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' sent, after response already completed.")
        if message_type == "http.response.body" and not self.body_ended:
            body = message.get("body", b"")
            if type(body) is not bytes:
                body, _ = validate_response_body(message)
            if message.get("more_body", False):
                await self.write_body(body, True)
            else:
                self.end_body(body)  # the common last chunk: no coroutine needed
        elif message_type == "http.response.pathsend" and not self.body_ended:
            await self.send_path(message)
        elif message_type == "http.response.trailers" and self.expects_trailers and self.body_ended:
            headers, more_trailers = validate_trailers(message)
            self.trailers.extend(headers)
            if not more_trailers:
                if self.wants_trailers and self.transport.supports_trailers:
                    self.transport.write_trailers(self.trailers)
                else:
                    self.transport.write_body(b"", True)
                self.finish_response()
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' sent, after response already started.")

    def start_response(self, message: dict[str, Any]) -> None:
        try:
            status, headers, trailers = validate_response_start(message)
        except InvalidMessage as exc:
            raise RuntimeError(str(exc)) from None
        self.response_started = True
        self.status = status
        self.expects_trailers = trailers
        self.transport.write_head(status, headers, False)

    async def write_body(self, body: bytes, more_body: bool) -> None:
        """Write one body chunk; the last one ends the stream unless trailers follow."""
        if self.head_request:
            body = b""
        if more_body:
            self.transport.write_body(body, False)
            await self.transport.drain()
            if self.disconnected:
                raise ClientDisconnected("client disconnected while the response was sent")
            now = monotonic()
            if not self.slice_start:
                # The slice starts with the first streamed chunk: one that yielded at once
                # would split every streamed response into two writes for nothing.
                self.slice_start = now
            elif now - self.slice_start >= SEND_SLICE:
                if self.slice_probe:
                    # The probe scheduled when this slice began has not run: the loop had no
                    # turn for a whole slice. Fairness: a busy stream cannot hold the loop.
                    await asyncio.sleep(0)
                    if self.disconnected:
                        raise ClientDisconnected("client disconnected while the response was sent")
                    now = monotonic()
                # An app that awaits between chunks gives the loop its turns itself, and for
                # it send() is no suspension point, as under uvicorn: a cancel lands in the
                # app's own await (Starlette's body iterator is closed there, not left to GC).
                self.slice_start = now
                self.slice_probe = True
                asyncio.get_running_loop().call_soon(self.slice_probe_ran)
        else:
            self.end_body(body)

    def slice_probe_ran(self) -> None:
        self.slice_probe = False

    def end_body(self, body: bytes) -> None:
        """The last body chunk: it ends the stream unless trailers follow."""
        if self.head_request:
            body = b""
        self.body_ended = True
        self.transport.write_body(body, not self.expects_trailers)
        if not self.expects_trailers:
            self.finish_response()

    async def send_path(self, message: dict[str, Any]) -> None:
        """ASGI pathsend extension: stream a file from disk in bounded chunks."""
        path = message.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise RuntimeError("http.response.pathsend requires an absolute 'path' string.")
        loop = asyncio.get_running_loop()
        with open(path, "rb") as file:
            while True:
                chunk = await loop.run_in_executor(None, file.read, PATHSEND_CHUNK)
                if not chunk:
                    break
                await self.write_body(chunk, True)
        await self.write_body(b"", False)

    def finish_response(self) -> None:
        self.response_complete = True
        if self.waiter is not None:
            self.wake()
        if self.access_log:
            self.log_access()
        self.transport.response_complete()

    # -- the client's pace (asgi/pace.py) -----------------------------------------------------------

    def pace_probe(self) -> tuple[bool, int] | None:
        """Request-body guard: waiting while the app waits for body the client has not sent.

        Not while the app is busy (it has not asked), nor while body is buffered, nor while the
        connection holds the client back with flow control (`body_held`).
        """
        if self.disconnected or not self.more_body or self.response_complete:
            return None
        waiting = self.waiter is not None and not self.body and not self.transport.body_held()
        return waiting, self.received

    def pace_trip(self) -> None:
        """Too slow a body: 408 if nothing was answered yet, then the protocol ends the request."""
        logger.info("Request body read too slow from %s", format_client(self.scope.get("client")))
        if not self.response_started:
            self.send_error_response(408)
        self.transport.cancel()
        self.feed_disconnect()  # the app's receive() says http.disconnect, send() raises

    def log_access(self) -> None:
        scope = self.scope
        access_logger.info(
            '%s - "%s %s HTTP/%s" %d',
            format_client(scope.get("client")),
            scope["method"],
            request_target(scope),
            scope["http_version"],
            self.status,
        )
