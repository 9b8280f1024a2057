"""H11Connection: HTTP/1.1 over h11, the strict pure-Python path with the same behaviour."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import h11

from roadrunner.protocols.http1.connection import H1Connection
from roadrunner.protocols.http1.rules import (
    CHUNK_SIZE_LINE,
    CL_FIELD,
    EMPTY_TE,
    HEAD_END,
    INVALID_HEAD,
    KNOWN_METHODS,
    MAX_CHUNK_LINE,
    NOT_IN_LINE,
    REQUEST_LINE,
    SP_RUN,
    TE_FIELD,
    TE_NOT_LAST,
    TE_TAB,
    TRAILER_FRAMING,
    RequestRejected,
    check_section_limits,
    field_cost,
    served_version,
    target_refused,
)


def sent_coding(head: bytes) -> bytes:
    """Transfer-Encoding's value as sent: h11 lowercases it (llhttp hands it over as it is).

    h11 has taken exactly one such field, "chunked" in any case, so it is found after the name.
    """
    start = head.lower().find(b"chunked", TE_FIELD.search(head).end())  # type: ignore[union-attr]
    return head[start:start + 7]


class ChunkLines:
    """Follows a chunked body (RFC 9112 §7.1) beside h11 for the rules h11 is lax on.

    h11 waits forever on bare LF line ends and takes any chunk extension and spaces after the
    size; llhttp refuses them. This checks each size and trailer line; h11 does the rest. The
    trailer section is held to the head's limits here, counted as on the httptools path.
    """

    __slots__ = ("left", "line", "trailer", "limit_fields", "limit_size", "fields", "size")

    def __init__(self, limit_fields: int, limit_size: int) -> None:
        self.left = 0  # chunk data (and its CRLF) still to pass before the next line
        self.line = b""
        self.trailer = False
        self.limit_fields = limit_fields
        self.limit_size = limit_size
        self.fields = self.size = 0  # of the trailer section so far

    def count_field(self, line: bytes, complete: bool) -> None:
        """RFC 9112 §7.1.2: a 431 past the trailer section's own field and size budget.

        An incomplete line counts what it holds so far (its field and CRLF not yet), so a long
        one is refused before it ends, and never beyond what it will cost once complete.
        """
        name, _, value = line.rstrip(b"\r\n").partition(b":")
        cost = field_cost(name, value.lstrip(b" \t"))  # llhttp's value: leading OWS stripped
        if complete:
            self.fields += 1
            self.size += cost
            check_section_limits(self.fields, self.size, self.limit_fields, self.limit_size)
        else:
            check_section_limits(self.fields, self.size + cost - 4, self.limit_fields, self.limit_size)

    def feed(self, data: bytes) -> bool:
        """Check the lines in `data`; True once the body's last line went by."""
        pos, size = 0, len(data)
        while pos < size:
            if self.left:
                step = min(self.left, size - pos)
                self.left -= step
                pos += step
                continue
            newline = data.find(b"\n", pos)
            if newline == -1:
                if self.trailer:
                    self.line += data[pos:]
                    self.count_field(self.line, False)
                else:
                    self.line = (self.line + data[pos:])[-MAX_CHUNK_LINE:]  # h11 bounds the line
                return False
            line, self.line, pos = self.line + data[pos : newline + 1], b"", newline + 1
            if not line.endswith(b"\r\n"):
                raise RequestRejected(400, "bare LF in chunked framing")
            if self.trailer:
                if line == b"\r\n":
                    return True
                if TRAILER_FRAMING.match(line):
                    raise RequestRejected(400, "framing field in trailer section")
                if line[:1] in b" \t" or INVALID_HEAD.search(line):
                    raise RequestRejected(400, "invalid character or line folding in trailer")
                self.count_field(line, True)
                continue
            match = CHUNK_SIZE_LINE.fullmatch(line)
            if match is None:
                raise RequestRejected(400, "invalid chunk size line")
            self.left = int(match[1], 16)
            if self.left:
                self.left += 2
            else:
                self.trailer = True
        return False


class H11Connection(H1Connection):
    """HTTP/1.1 over h11: the strict, pure-Python path with the same behaviour."""

    __slots__ = ("max_event", "h11", "head_bytes", "in_head", "chunk_lines", "line_held")

    def start_parser(self) -> None:
        self.max_event = self.config.h11_max_incomplete_event_size or (
            self.limit_request_line + self.limit_headers_size + 64
        )
        self.h11 = self.new_parser()
        self.head_bytes = bytearray()
        self.in_head = True
        self.chunk_lines: ChunkLines | None = None
        self.line_held = True  # the request line is passed to h11 once complete

    def new_parser(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_event)

    def data_received(self, data: bytes) -> None:
        if self.closing or self.reads_done:
            return
        self.bytes_in_request += len(data)
        try:
            self.feed(data)
        except RequestRejected as exc:
            self.reject(exc.status, str(exc))
        except h11.RemoteProtocolError as error:  # one name per exception type (mypyc)
            status = error.error_status_hint
            if self.in_head:
                status = self.head_status(status, str(error))
                # h11's incomplete-event bound tripped before the request line ended: too long a
                # line. (In a trailer section that bound is a 431: RFC 9112 §7.1.2.)
                if status == 431 and b"\r\n" not in bytes(self.head_bytes[: self.limit_request_line + 2]):
                    status = 414
            self.reject(status, str(error))

    def head_status(self, status: int, reason: str) -> int:
        """The status llhttp's order of checks gives a head h11 refused.

        llhttp stops at a bad byte first (400), the version comes next (505, see
        served_version), then Host and the transfer coding (h11 judges those first).
        """
        head = bytes(self.head_bytes)
        end = HEAD_END.search(head)
        head = head[: end.end()] if end else head
        if INVALID_HEAD.search(head) or EMPTY_TE.search(head) or TE_NOT_LAST.search(head):
            return 400
        if TE_FIELD.search(head) and CL_FIELD.search(head):
            return 400  # RFC 9112 §6.1: both framings is a 400 before any coding is judged
        if len(CL_FIELD.findall(head)) > 1:
            return 400  # RFC 9112 §6.3: llhttp refuses a repeat before Host and the version
        line = REQUEST_LINE.match(head)
        if line is None:
            return 400 if b"\n" in head else status
        method, target = line[1], line[2]
        if method not in KNOWN_METHODS or target_refused(method, target):
            return 400
        if status == 501 or reason.startswith(("Found multiple Host", "Missing mandatory Host")):
            try:
                served_version(method, line[3].decode("ascii"))
            except RequestRejected as exc:
                return exc.status
        return status

    def take_head(self, data: bytes) -> bytes:
        """Collect a head's bytes; what h11 may parse of them so far (the request line held back)."""
        if not self.head_bytes:
            # RFC 9112 §2.2: empty lines before a request line are ignored (llhttp takes any CR
            # and LF there; h11 would refuse them).
            data = data.lstrip(b"\r\n")
            if not data:
                return b""
            self.arm_header_timer()
            self.line_held = True
        self.head_bytes += data
        first_line_end = self.head_bytes.find(b"\r\n")
        limit = self.limit_request_line + 64
        if (first_line_end == -1 and len(self.head_bytes) > limit) or first_line_end > limit:
            raise RequestRejected(414, "request line too long")
        if not self.line_held:
            return data
        end = self.head_bytes.find(b"\n")
        if end == -1 and not NOT_IN_LINE.search(self.head_bytes):
            return b""  # (a byte no request line has is h11's to refuse at once)
        self.line_held = False
        if end == -1:
            return bytes(self.head_bytes)
        # RFC 9112 §3: SP runs between the request-line parts are taken, as llhttp does.
        return SP_RUN.sub(b" ", bytes(self.head_bytes[:end])) + bytes(self.head_bytes[end:])

    def feed(self, data: bytes) -> None:
        if self.in_head:
            data = self.take_head(data)
            if not data:
                return
        elif self.chunk_lines is not None and self.chunk_lines.feed(data):
            self.chunk_lines = None
        conn = self.h11
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                head = bytes(self.head_bytes)
                end = HEAD_END.search(head)
                block = head[: end.end()] if end else head
                if INVALID_HEAD.search(block) or TE_TAB.search(block):
                    raise RequestRejected(400, "invalid character, line end or line folding in head")
                if len(CL_FIELD.findall(block)) > 1:
                    # RFC 9112 §6.3: h11 merges equal Content-Length fields; llhttp refuses them.
                    raise RequestRejected(400, "invalid or repeated Content-Length")
                self.in_head = False
                self.head_bytes.clear()
                if event.method not in KNOWN_METHODS:
                    raise RequestRejected(400, "unknown method")
                if target_refused(event.method, event.target):
                    raise RequestRejected(400, "invalid request target")  # llhttp: before the version
                version = served_version(event.method, event.http_version.decode("ascii"))
                headers = [
                    (name, sent_coding(block) if name == b"transfer-encoding" else value)
                    for name, value in event.headers
                ]
                self.check_header_limits(headers)
                self.begin_request(event.method, event.target, version, headers)
                if self.upgraded_to is not None or self.transport.is_closing():
                    self.forward_upgraded(bytes(conn.trailing_data[0]))
                    return
                if self.parsing is not None and any(n == b"transfer-encoding" for n, _ in headers):
                    self.chunk_lines = ChunkLines(self.limit_fields, self.limit_headers_size)
                    if self.chunk_lines.feed(bytes(conn.trailing_data[0])):
                        self.chunk_lines = None
            elif isinstance(event, h11.Data):
                # h11 types Data.data as bytes but hands out a bytearray: read through Any, or
                # mypyc refuses the value (and takes bytes() of a bytes for a no-op).
                self.request_body(bytes(cast(Any, event).data))
            elif isinstance(event, h11.EndOfMessage):
                self.request_end()
                if self.reads_done:
                    return
                leftover = bytes(conn.trailing_data[0])
                conn = self.h11 = self.new_parser()
                self.in_head = True
                release = self.take_head(leftover) if leftover else b""
                if release:  # (an empty receive_data would tell h11 the peer closed)
                    conn.receive_data(release)
            elif isinstance(event, h11.ConnectionClosed):
                return


class PlainReadsH11Connection(H11Connection, asyncio.Protocol):
    """H11Connection taking reads by data_received: uvloop's plaintext transport (uvloop treats
    an asyncio.Protocol as one; see tcp.reads_by_data_received)."""

    __slots__ = ()
