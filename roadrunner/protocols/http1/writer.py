"""ResponseWriter: how an HTTP/1.1 response leaves (RFC 9112 §6, §7): the head, the framing
(Content-Length or chunked), small pieces held and joined into one write per loop pass, and
pipelined responses carried into one write.

A mixin of `connection.H1Connection`, which sets the connection state it reads.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Final

from roadrunner.protocols.http1.rules import (
    CARRY_LIMIT,
    JOIN_LIMIT,
    STATUS_LINES,
    chunk_size_line,
    remember,
)

if TYPE_CHECKING:
    from roadrunner.asgi.stream import HTTPStream
    from roadrunner.server_state import ServerState

Headers = list[tuple[bytes, bytes]]

# Encoded response header lines by (name, value): responses repeat the same few. Bounded.
HEADER_LINES: Final[dict[tuple[bytes, bytes], bytes]] = {}
HEADER_LINES_LIMIT: Final = 4096
SHORT_BODY: Final = "Response content shorter than Content-Length"


class ResponseWriter:
    """The response side of an HTTP/1.1 connection: framing, held output, writes."""

    # The state this mixin assigns (H1Connection declares the rest of its slots).
    __slots__ = (
        "chunked", "expected_length", "sent_length", "head_response", "pending_head", "held_body",
        "held_size", "held_registered", "carrying", "written", "keep_alive",
    )

    # Set by H1Connection (declared here: mypyc compiles both into one layout).
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    state: ServerState
    active: HTTPStream | None
    parsing: HTTPStream | None
    pipeline: deque[HTTPStream] | None
    closing: bool
    # Assigned here (keep_alive by H1Connection too: a response may end the connection).
    keep_alive: bool
    chunked: bool
    expected_length: int | None
    sent_length: int
    head_response: bool
    pending_head: bytes
    held_body: list[bytes] | None
    held_size: int
    held_registered: bool
    carrying: bool
    written: int

    def start_writer(self) -> None:
        """The state of a connection that has written nothing yet."""
        self.chunked = False  # the framing of the response being written
        self.expected_length = None
        self.sent_length = 0
        self.head_response = False
        self.pending_head = b""  # the head, held until the first body piece (write_head)
        # Small body chunks held back with the head until the loop pass ends (write_body).
        self.held_body = None
        self.held_size = 0
        self.held_registered = False  # in ServerState.held_heads, to be flushed this loop pass
        # A pipelined response's end held for the next one's (write_body): kept one more pass.
        self.carrying = False
        self.written = 0  # bytes handed to the transport (the response-send pace guard)

    def write_informational(self, status: int, headers: Headers) -> None:
        if self.active is None or self.active.scope["http_version"] != "1.1":
            return  # RFC 9110 §15.2: no 1xx to HTTP/1.0 clients
        self.flush_head()  # earlier pipelined responses first (RFC 9112 §9.3.2)
        out = STATUS_LINES[status] + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
        self.write_out(out)

    def write_head(self, status: int, headers: Headers, end_stream: bool) -> None:
        stream = self.active
        assert stream is not None
        # RFC 9110 §10.1.1: a client answered before its 100 Continue may never send the body it
        # announced; close rather than read its next request as that body.
        keep_alive = self.keep_alive and not self.closing and not (
            stream.expect_continue and self.parsing is stream)
        expected: int | None = None
        chunked = False
        state = self.state
        default_names = state.default_header_names
        fields_of_interest = state.h1_response_fields_of_interest
        overridden: set[bytes] | None = None
        parts = [STATUS_LINES[status], b""]
        lines = HEADER_LINES
        for pair in headers:
            name, value = pair
            if name in fields_of_interest:
                if name in default_names:
                    # A header the app sets itself replaces the server default (Server, Date...).
                    overridden = {name} if overridden is None else overridden | {name}
                if name == b"content-length":
                    if not value.isdigit():
                        raise RuntimeError(f"Invalid Content-Length {value!r} in response.")
                    expected = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    if value.lower() == b"close":
                        keep_alive = False
                    continue
            line = lines.get(pair)
            if line is None:
                line = remember(lines, HEADER_LINES_LIMIT, pair, name + b": " + value + b"\r\n")
            parts.append(line)
        bodyless = self.head_response or status in (204, 304) or status < 200
        if expected is None and not chunked and not bodyless:
            if stream.scope["http_version"] == "1.1":
                chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                keep_alive = False  # HTTP/1.0: the body ends when the connection closes
        if not keep_alive:
            self.keep_alive = False
            parts.append(b"connection: close\r\n")
        elif stream.scope["http_version"] == "1.0":
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        if overridden is None:
            parts[1] = state.default_header_block
        else:
            parts[1] = b"".join(
                name + b": " + value + b"\r\n"
                for name, value in state.default_headers
                if name not in overridden
            )
        self.chunked = chunked and not bodyless
        self.expected_length = None if bodyless else expected
        self.sent_length = 0
        # Hold the head so the first body chunk leaves in the same write (one syscall for a
        # small response); flush it on the next loop pass if no body comes right away.
        head = b"".join(parts)
        # Behind what earlier pipelined responses still hold, if any (carry).
        self.pending_head = self.pending_head + head if self.pending_head else head
        self.hold_output()

    def hold_output(self) -> None:
        """Flush what is held (the head, small body chunks) on the next loop pass."""
        if self.held_registered:
            return
        self.held_registered = True
        held = self.state.held_heads
        held.append(self)
        if len(held) == 1:
            self.loop.call_soon(self.state.flush_held_heads)

    def flush_held(self) -> None:
        """The loop pass ended (ServerState.flush_held_heads): write what is held, unless a
        pipelined response ended in that pass and the next one is running: hold on for it."""
        if self.carrying:
            self.carrying = False
            self.hold_output()
        else:
            self.flush_head()

    def carry(self, out: bytes) -> bool:
        """Hold a finished response's bytes (all that is held) for the next pipelined one's
        head, so that responses the app answers back to back leave in one write (one send;
        over TLS, one record) of up to CARRY_LIMIT bytes. They leave on the first loop pass
        that ends without another response done: an app that waits delays nothing."""
        if not self.keep_alive or len(out) >= CARRY_LIMIT:
            return False
        self.pending_head = out
        self.carrying = True
        self.hold_output()
        return True

    def take_held(self) -> list[bytes]:
        """The held head and body pieces, in order, no longer held (the caller joins them once)."""
        head, body = self.pending_head, self.held_body
        self.pending_head = b""
        if body is None:
            return [head] if head else []
        self.held_body = None
        self.held_size = 0
        if head:
            body.insert(0, head)
        return body

    def flush_head(self) -> None:
        pieces = self.take_held()
        if pieces and not self.transport.is_closing():
            self.write_joined(pieces)

    def write_joined(self, pieces: list[bytes]) -> None:
        """One write of `pieces` joined: one send, and over TLS one record where they fit."""
        if pieces:
            self.write_out(pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def write_out(self, out: bytes) -> None:
        """Hand `out` to the transport (if any), counted for the response-send pace guard."""
        if out:
            self.written += len(out)
            self.transport.write(out)

    def write_body(self, data: bytes, end_stream: bool) -> None:
        if self.head_response:
            data = b""
        size = len(data)
        if size and self.expected_length is not None:
            if self.sent_length + size > self.expected_length:
                raise RuntimeError("Response content longer than Content-Length")
        # RFC 9112 §7.1: a chunk is its size line, its data and a CRLF.
        size_line = chunk_size_line(size) if self.chunked and size else b""
        if not end_stream and size < JOIN_LIMIT:
            # Small chunks sent back to back leave together when the loop pass ends: one write,
            # one TLS record and one send, not one each (at most JOIN_LIMIT bytes held). Held
            # as they are, copied once when joined.
            framed = len(size_line) + size + 2 if size_line else size
            held = self.held_size + len(self.pending_head)
            if held + framed < JOIN_LIMIT:
                if framed:
                    self.sent_length += size
                    if not held:
                        self.hold_output()
                    pieces = self.held_body
                    if pieces is None:
                        self.held_body = pieces = []
                    if size_line:
                        pieces += (size_line, data, b"\r\n")
                    else:
                        pieces.append(data)
                    self.held_size += framed
                return
        if self.held_body is None and size < JOIN_LIMIT:
            # At most the head held (a response of one or two messages): concatenated, no list.
            out = self.pending_head
            self.pending_head = b""
            if size:
                self.sent_length += size
                out += size_line + data + b"\r\n" if size_line else data
            if end_stream:
                if self.body_short():
                    self.write_out(out)
                    raise RuntimeError(SHORT_BODY)
                if self.chunked:
                    out += b"0\r\n\r\n"
                if self.pipeline and self.carry(out):
                    return
            self.write_out(out)
            return
        pieces = self.take_held()
        if data:
            self.sent_length += size
            if size >= JOIN_LIMIT:
                # A large chunk leaves beside its framing in one writev, not copied to join it.
                if size_line:
                    pieces.append(size_line)
                    framing = b"".join(pieces)
                    tail = b"\r\n0\r\n\r\n" if end_stream else b"\r\n"
                    self.written += len(framing) + size + len(tail)
                    self.transport.writelines((framing, data, tail))
                    return
                self.written += size
                if pieces:
                    out = b"".join(pieces)
                    self.written += len(out)
                    self.transport.writelines((out, data))
                else:
                    self.transport.writelines((data,))
                pieces = []
            elif size_line:
                pieces += (size_line, data, b"\r\n")
            else:
                pieces.append(data)
        if end_stream:
            if self.body_short():
                self.write_joined(pieces)
                raise RuntimeError(SHORT_BODY)
            if self.chunked:
                pieces.append(b"0\r\n\r\n")
            if self.pipeline and pieces:
                out = b"".join(pieces)
                if not self.carry(out):
                    self.write_out(out)
                return
        if pieces:
            self.write_joined(pieces)

    def body_short(self) -> bool:
        """At the body's end: shorter than its Content-Length (the app's error, raised to it)."""
        return self.expected_length is not None and self.sent_length < self.expected_length

    def write_trailers(self, headers: Headers) -> None:
        self.flush_head()
        if self.chunked:
            # RFC 9112 §7.1.2: trailer section after the last chunk.
            out = b"0\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
            self.write_out(out)
        else:
            self.write_body(b"", True)
