"""HttpToolsConnection: HTTP/1.1 over httptools (llhttp), the fast path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar, Final

from roadrunner.protocols.http1.connection import H1Connection
from roadrunner.protocols.http1.rules import (
    RequestRejected,
    check_section_limits,
    field_cost,
    lower_name,
    served_version,
    target_refused,
)

try:
    import httptools
except ImportError:  # pragma: no cover - httptools is a hard dependency on CPython
    httptools = None  # type: ignore[assignment]


Headers = list[tuple[bytes, bytes]]
# Between requests (on_message_begin makes each request its own list; nothing appends to this).
NO_HEADERS: Final[Headers] = []


class HttpToolsConnection(H1Connection):
    """HTTP/1.1 over the httptools (llhttp) parser: the fast path."""

    __slots__ = ("parser", "url", "headers", "header_size", "header_fields", "in_head")

    def start_parser(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        if hasattr(self.parser, "set_dangerous_leniencies"):  # httptools >= 0.6.2
            # llhttp refuses versions other than 0.9, 1.0, 1.1 and 2.0 as a 400; the version is
            # judged in served_version instead, as on the h11 path.
            self.parser.set_dangerous_leniencies(lenient_version=True)
        self.header_size = 0  # the field section being read: the head, then the trailer section
        self.header_fields = 0
        self.url = b""
        self.headers: Headers = NO_HEADERS
        self.in_head = False

    def data_received(self, data: bytes) -> None:
        if self.closing or self.reads_done:
            return
        self.bytes_in_request += len(data)
        try:
            self.parser.feed_data(data)
            if self.in_head:
                # A head split across reads: the header-read deadline replaces keep-alive's.
                # (A head that arrives whole never touches the timer here.)
                self.arm_header_timer()
        except RequestRejected as exc:
            self.reject(exc.status, str(exc))
        except httptools.HttpParserUpgrade as upgrade:  # one name per exception type (mypyc)
            if self.upgraded_to is not None:
                self.forward_upgraded(data[int(upgrade.args[0]):])
                return
            self.on_parser_upgrade(data)
        except httptools.HttpParserError as error:
            if self.reads_done:
                return  # llhttp refuses bytes after the last request: they are not read
            cause = error.__context__
            if isinstance(cause, RequestRejected):
                # httptools wraps exceptions raised in our callbacks.
                self.reject(cause.status, str(cause))
                return
            reason = str(error)
            unsupported = "Transfer-Encoding`" in reason and self.unsupported_coding()
            self.reject(501 if unsupported else 400, reason)

    def unsupported_coding(self) -> bool:
        """llhttp refuses a Transfer-Encoding other than chunked: that is a 501, not a 400."""
        return any(
            name == b"transfer-encoding" and value.strip().lower() != b"chunked"
            for name, value in self.headers
        )

    def on_parser_upgrade(self, data: bytes) -> None:
        """llhttp stops parsing at an upgrade request it was not asked to take over.

        The request itself was already dispatched as plain HTTP (or queued behind the one
        being answered); nothing after it can be parsed, so the connection closes once its
        response is done.
        """
        if self.pipeline:
            # RFC 9112 §9.3.2: the requests before it are answered first, on a live connection.
            self.pipeline[-1].keep_alive = False
        else:
            self.keep_alive = False
        self.pause_reading()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.in_head = True
        self.url = b""
        self.headers = []
        self.header_size = self.header_fields = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limit_request_line:
            raise RequestRejected(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = lower_name(name)
        self.header_size += field_cost(name, value)
        self.header_fields += 1
        check_section_limits(self.header_fields, self.header_size, self.limit_fields, self.limit_headers_size)
        if not self.in_head:
            return  # a trailer field: not part of the scope, which the app already has (as h11)
        # RFC 9110 §5.5: OWS around a field value is not part of it; llhttp keeps the trailing
        # (looked at first: a bytes method call costs more than the rare strip).
        if value:
            last = value[-1]
            if last == 32 or last == 9:
                value = value.rstrip(b" \t")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        # RFC 9112 §7.1.2: a trailer section has a budget of its own, not what the head left.
        self.header_size = self.header_fields = 0
        parser = self.parser
        method = parser.get_method()
        if target_refused(method, self.url):
            # llhttp takes "*" followed by more as a target: refused here, before the version.
            raise RequestRejected(400, "invalid request target")
        version = served_version(method, parser.get_http_version())
        self.begin_request(method, self.url, version, self.headers)

    # The body callbacks are the shared handlers themselves (no extra call per event).
    on_body: ClassVar[Callable[[H1Connection, bytes], None]] = H1Connection.request_body

    def on_message_complete(self) -> None:
        # The head's pieces are the ended request's: an idle connection does not keep them.
        self.url = b""
        self.headers = NO_HEADERS
        self.request_end()


class PlainReadsHttpToolsConnection(HttpToolsConnection, asyncio.Protocol):
    """HttpToolsConnection taking reads by data_received: uvloop's plaintext transport (uvloop
    treats an asyncio.Protocol as one; see tcp.reads_by_data_received)."""

    __slots__ = ()
