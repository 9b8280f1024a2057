"""H1Connection: what both HTTP/1.1 parsers share.

Request validation (the RFC 9112 rules of rules.py), limits, scope building, pipelining,
keep-alive and header-read timers and write backpressure; the response's framing and writes are
writer.ResponseWriter's. The parser
subclasses turn bytes into the calls `begin_request` / `request_body` / `request_end` /
`reject`, and apply the limits only they can see as the head arrives (414, 431).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections import deque
from typing import TYPE_CHECKING, Any

from roadrunner.asgi.scope import asgi_info, http_scope
from roadrunner.asgi.stream import HTTPStream
from roadrunner.logging import escape_control
from roadrunner.protocols.http1.rules import (
    ERROR_BODIES,
    LINGER_SECONDS,
    STATUS_LINES,
    RequestRejected,
    check_headers,
    check_section_limits,
    field_cost,
    valid_authority,
)
from roadrunner.protocols.http1.writer import ResponseWriter
from roadrunner.protocols.tcp import (
    ConnectionProtocol,
    describe_peer,
    reset_transport,
    send_wait,
    transport_addresses,
)
from roadrunner.protocols.timer import DeadlineTimer

if TYPE_CHECKING:
    from roadrunner.config import Config
    from roadrunner.server_state import ServerState

logger = logging.getLogger("roadrunner.error")
access_logger = logging.getLogger("roadrunner.access")

Headers = list[tuple[bytes, bytes]]


class H1Connection(ResponseWriter, asyncio.BufferedProtocol):
    """Shared HTTP/1.1 connection machinery; subclasses supply the parser."""

    supports_trailers = True
    # Slots, not a __dict__: an idle keep-alive connection is mostly this object.
    __slots__ = (
        "config", "app", "rewrite_scope", "state", "app_state", "loop", "root_path", "asgi_info",
        "access_log", "limit_request_line", "limit_headers_size", "limit_fields", "limit_body",
        "transport", "client", "server", "scheme", "parsing", "active", "pipeline",
        "closing", "read_paused", "write_paused", "drain_waiter", "timer", "bytes_in_request",
        "body_received", "upgraded_to", "draining", "shedding", "last_request", "reads_done",
        "deferred_error", "discarding",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.inner_app
        self.rewrite_scope = config.scope_rewriter
        self.state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.root_path = config.root_path
        self.asgi_info = asgi_info(config.asgi_version)
        # Formatting access lines costs per request: skip it when nobody listens.
        self.access_log = config.access_log and access_logger.hasHandlers()
        self.limit_request_line = config.limit_request_line
        self.limit_headers_size = config.limit_request_headers_size
        self.limit_fields = config.limit_request_fields
        self.limit_body = config.limit_request_body
        # Load shedding is checked per request only when a concurrency limit is configured.
        self.shedding = config.limit_concurrency is not None or config.limit_concurrency_soft is not None
        self.transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.scheme = "http"
        # Per-connection state.
        self.parsing = None  # the request whose body is being parsed
        self.active = None  # the request whose response is being written
        self.pipeline = None  # created on the first pipelined request
        self.keep_alive = True
        self.closing = False
        self.draining = False  # graceful shutdown: answer what comes, then close
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.timer = DeadlineTimer(self.loop)  # header-read or keep-alive deadline
        self.bytes_in_request = 0
        self.start_writer()  # the response side's state (writer.ResponseWriter)
        self.body_received = 0
        self.upgraded_to: ConnectionProtocol | None = None  # set when an Upgrade took the socket
        # RFC 9112 §9.6: no request is read after one that ends the connection (close, 1.0).
        self.last_request = False
        self.reads_done = False
        self.deferred_error = 0  # the status of a refused request answered after those before it
        self.discarding = False  # reading and dropping the body of a request already answered
        self.start_parser()

    def start_parser(self) -> None:
        """The parser subclass's own state (called last by __init__)."""

    # -- asyncio.BufferedProtocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        self.client, self.server, self.scheme = transport_addresses(transport)
        self.timer.arm(self.config.timeout_request_header, self.on_header_timeout)
        if self.state.draining:  # adopted from a closing listener's queue during shutdown
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.closing = True
        self.cancel_timers()
        for stream in (self.active, self.parsing, *(self.pipeline or ())):
            if stream is not None:
                stream.feed_disconnect()
        self.pipeline = None
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def eof_received(self) -> bool | None:
        return None

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError  # pragma: no cover - every parser subclass has its own

    # A buffered protocol: reads land in the server's one buffer (tcp.reads_by_data_received;
    # the parser subclasses' PlainReads variants take them by data_received instead).
    def get_buffer(self, sizehint: int) -> memoryview:
        return self.state.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.state.read_buffer[:nbytes].tobytes())

    def pause_writing(self) -> None:
        self.write_paused = True
        self.state.send_pace.watch(self)  # bytes wait on the client: its pace counts

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def cancel_timers(self) -> None:
        self.timer.cancel()

    # -- timers ---------------------------------------------------------------------------------------

    def arm_header_timer(self) -> None:
        """A request head is arriving: idle timer off, header-read timer on (once per head)."""
        if self.timer.callback != self.on_header_timeout:
            self.timer.arm(self.config.timeout_request_header, self.on_header_timeout)

    def on_header_timeout(self) -> None:
        """Slowloris guard: a request head not complete in time gets 408 (or a plain close)."""
        if self.transport.is_closing():
            return
        if self.bytes_in_request and self.active is None:
            logger.info("Request header read timed out from %s", self.peer_text())
            self.send_error(408)
        else:
            self.transport.close()

    def on_keep_alive_timeout(self) -> None:
        if not self.transport.is_closing():
            self.close_connection(linger=self.discarding)

    # -- events from the parser -----------------------------------------------------------------

    def begin_request(
        self, method: bytes, target: bytes, http_version: str, headers: Headers
    ) -> None:
        """A complete request head: validate it, build the scope and queue or start the stream."""
        self.timer.callback = None  # the header-read deadline is met (DeadlineTimer.disarm)
        self.bytes_in_request = 0
        content_length, chunked, expect_continue, keep_alive, wants_trailers, upgrade, forwarded = (
            check_headers(headers, http_version)
        )
        self.last_request = not keep_alive
        if len(target) > self.limit_request_line:
            raise RequestRejected(414, "request target too long")
        if target.startswith(b"/"):
            raw_path, _, query = target.partition(b"?")
        elif target == b"*":
            if method != b"OPTIONS":
                raise RequestRejected(400, "asterisk-form is only valid for OPTIONS")
            raw_path, query = b"*", b""
        else:
            # RFC 9112 §3.2.2: absolute-form; the path is taken from the target.
            try:
                url = urllib.parse.urlsplit(target.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                raise RequestRejected(400, "invalid request target") from None
            if url.scheme not in ("http", "https") or not url.netloc or not valid_authority(target):
                raise RequestRejected(400, "invalid request target")
            raw_path = (url.path or "/").encode("ascii")
            query = url.query.encode("ascii")
        # find, not `in`: bytes.__contains__ tries its operand as an int first, and raising and
        # clearing that TypeError cost ~1,800 instructions per request (Python 3.11).
        if raw_path.find(b"#") != -1:
            raw_path = raw_path.partition(b"#")[0]
        if self.limit_body is not None and content_length is not None and content_length > self.limit_body:
            raise RequestRejected(413, "request body too large")
        scope = http_scope(
            asgi=self.asgi_info, http_version=http_version, server=self.server,
            client=self.client, scheme=self.scheme, method=method.decode("ascii"),
            root_path=self.root_path, raw_path=raw_path, query_string=query, headers=headers,
            app_state=self.app_state,
        )
        if forwarded and self.rewrite_scope is not None:
            self.rewrite_scope(scope)
        has_body = chunked or bool(content_length)
        stream = HTTPStream(
            scope, self, self.state, self.access_log, expect_continue and has_body, has_body
        )
        stream.wants_trailers = wants_trailers and http_version == "1.1"
        stream.keep_alive = keep_alive
        self.body_received = 0
        self.parsing = stream if has_body else None
        if upgrade is not None and self.handle_upgrade(upgrade, stream):
            return
        if self.active is None:
            self.run_stream(stream)
        else:
            # RFC 9112 §9.3.2: pipelined requests are answered in order; stop reading meanwhile.
            if self.pipeline is None:
                self.pipeline = deque()
            self.pipeline.append(stream)
            self.pause_reading()

    def handle_upgrade(self, token: bytes, stream: HTTPStream) -> bool:
        """Hook for protocol upgrades (WebSocket, h2c); plain HTTP handles none."""
        if token == b"websocket":
            from roadrunner.protocols.websocket import upgrade_h1

            return upgrade_h1(self, stream)
        if token == b"h2c":
            from roadrunner.protocols.http2.upgrade import upgrade_from_h1

            return upgrade_from_h1(self, stream)
        return False

    def forward_upgraded(self, data: bytes) -> None:
        """Bytes after an upgrade request's head belong to the protocol that took over."""
        if self.upgraded_to is not None and data:
            self.upgraded_to.data_received(data)

    def check_header_limits(self, headers: Headers) -> None:
        """431 past --limit-request-fields or --limit-request-headers-size (whole head at once)."""
        size = sum(field_cost(name, value) for name, value in headers)
        check_section_limits(len(headers), size, self.limit_fields, self.limit_headers_size)

    def request_body(self, data: bytes) -> None:
        self.body_received += len(data)
        if self.limit_body is not None and self.body_received > self.limit_body:
            if self.discarding:  # the request was answered: no 413 now, just stop reading
                self.close_connection(linger=True)
                return
            raise RequestRejected(413, "request body too large")
        if self.parsing is not None:
            self.parsing.feed_body(data)

    def request_end(self) -> None:
        self.discarding = False
        self.reads_done = self.last_request
        if self.parsing is not None:
            self.parsing.feed_end()
            self.parsing = None

    def reject(self, status: int, reason: str) -> None:
        """Answer a request the parser or the rules refused, log one line, then close."""
        logger.warning("Invalid HTTP request from %s: %s", self.peer_text(), escape_control(reason))
        if self.parsing is not None:
            stream, self.parsing = self.parsing, None
            if stream.task is not None and not stream.app_called:
                stream.task.cancel()  # the app never saw this request: it never will
                self.state.tasks.discard(stream.task)  # run() never starts to discard it
            stream.feed_disconnect()
            if stream.response_started:
                self.close_connection()
                return
            if stream is self.active:
                self.active = None
            elif self.pipeline and stream in self.pipeline:
                self.pipeline.remove(stream)  # queued, never to run: its answer is the error
        if self.active is not None and not self.transport.is_closing():
            # RFC 9112 §9.3.2: responses leave in request order, so a pipelined request refused
            # while an earlier one is answered gets its error after it; nothing more is read.
            self.deferred_error = status
            self.reads_done = True
            return
        self.send_error(status)

    def send_error(self, status: int) -> None:
        self.flush_head()  # what earlier pipelined responses still hold leaves first
        body = ERROR_BODIES.get(status, b"Error")
        out = (
            STATUS_LINES[status]
            + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        self.write_out(out)
        self.close_connection(linger=True)

    def close_connection(self, linger: bool = False) -> None:
        """Close; with `linger`, half-close first and discard what the client still sends.

        RFC 9112 §9.6: closing with unread request bytes makes the kernel send a reset that can
        destroy the response before the client reads it (an early 413 or 503 during an upload),
        so the write side closes first and the read side drains for up to LINGER_SECONDS.
        """
        self.closing = True
        self.cancel_timers()
        transport = self.transport
        if transport.is_closing():
            return
        self.flush_head()
        if transport.get_write_buffer_size():
            # The transport closes once its buffer is out: only as soon as the client reads.
            self.state.send_pace.watch(self)
        if linger and transport.can_write_eof():
            transport.write_eof()
            if self.read_paused:
                self.read_paused = False
                transport.resume_reading()
            self.timer.arm(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def peer_text(self) -> str:
        return describe_peer(self.client)

    # -- running streams ----------------------------------------------------------------------------

    def run_stream(self, stream: HTTPStream) -> None:
        self.active = stream
        self.keep_alive = stream.keep_alive and not self.closing and not self.draining
        self.head_response = stream.head_request
        app = self.app
        if self.shedding:
            shed = self.shed_app()
            if shed is not None:
                logger.warning("Exceeded concurrency limit.")
                app = shed
        stream.task = self.state.start_task(self.loop, stream.run(app), self_removing=True)

    def shed_app(self) -> Any:
        """Load shedding: past --limit-concurrency-soft, 503 + Retry-After; at --limit-concurrency
        (counted as uvicorn: open connections, this one included, or running requests), 503."""
        state = self.state
        soft = self.config.limit_concurrency_soft
        limit = self.config.limit_concurrency
        if soft is not None and len(state.tasks) >= soft:
            return self.service_unavailable
        if limit is not None and (len(state.connections) >= limit or len(state.tasks) >= limit):
            return self.concurrency_limit_reached
        return None

    def over_concurrency_limit(self) -> bool:
        return self.shed_app() is not None

    async def service_unavailable(self, scope: Any, receive: Any, send: Any) -> None:
        """Load shedding answer: 503 with Retry-After so clients back off (RFC 9110 §15.6.4)."""
        stream = self.active
        assert stream is not None
        stream.send_error_response(503, [(b"retry-after", str(self.config.retry_after).encode())])

    async def concurrency_limit_reached(self, scope: Any, receive: Any, send: Any) -> None:
        """uvicorn's --limit-concurrency answer: 503, Connection: close, no Retry-After."""
        stream = self.active
        assert stream is not None
        stream.send_error_response(503)

    # -- StreamTransport: what the active stream calls ------------------------------------------------

    async def drain(self) -> None:
        if self.write_paused and not self.transport.is_closing():
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter
            self.drain_waiter = None

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.pipeline:
            self.read_paused = False
            self.transport.resume_reading()

    def body_consumed(self, nbytes: int) -> None:
        pass

    def abort(self) -> None:
        """The app failed after starting its response: the only honest answer is a close (which
        writes what is held first)."""
        self.close_connection()

    def cancel(self) -> None:
        """The client is too slow (asgi/pace.py): close, unless the answer already closes."""
        if not self.closing:
            self.abort()

    def body_held(self) -> bool:
        return False  # the app waiting in receive() has resumed reading (no pipeline meanwhile)

    def response_complete(self) -> None:
        self.active = None
        self.state.requests_done += 1
        if self.deferred_error and not self.pipeline and self.keep_alive and not self.transport.is_closing():
            self.send_error(self.deferred_error)
            return
        if not self.keep_alive or self.transport.is_closing():
            # Linger when the request body was not read to its end.
            self.close_connection(linger=self.parsing is not None)
            return
        if self.pipeline:
            self.run_stream(self.pipeline.popleft())
            if not self.pipeline:
                self.resume_reading()
            return
        if self.parsing is not None:
            # The app answered without reading all of its request body, and nobody will: read the
            # rest and drop it, keeping the connection (uvicorn does the same; RFC 9110 §10.1.1
            # lets a server that answered early go on reading and discarding). The keep-alive
            # timer armed below bounds how long the client may take over it.
            self.parsing = None
            self.discarding = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.parsing is None and self.timer.callback is None:
            self.timer.arm(self.config.timeout_keep_alive, self.on_keep_alive_timeout)

    # -- the response-send pace guard (asgi/pace.py) ------------------------------------------------

    def pace_probe(self) -> tuple[bool, int] | None:
        """Waiting while the transport holds response bytes back (tcp.send_wait)."""
        if self.upgraded_to is not None:
            return None
        return send_wait(self.transport, self.written)

    def pace_trip(self) -> None:
        """The client takes the response too slowly: reset the connection (RFC 9112 §9.5)."""
        logger.info("Response send too slow to %s: closing the connection", self.peer_text())
        reset_transport(self.transport)

    # -- server control -------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful shutdown: finish the response in flight with Connection: close.

        An idle keep-alive connection stays open for `timeout_shutdown_idle` and answers one
        more request (with Connection: close) before closing: its client may already have sent
        that request, and closing at once would lose it to the race RFC 9112 §9.3.1 describes.
        """
        self.keep_alive = False
        self.draining = True
        if self.active is None and not self.pipeline:
            grace = self.config.timeout_shutdown_idle
            if grace > 0 and self.upgraded_to is None and not self.transport.is_closing():
                self.timer.arm(grace, self.close_connection)
            else:
                self.close_connection()
