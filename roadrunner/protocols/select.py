"""Chooses the connection protocol for an accepted connection from Config.protocols.

TLS: the ALPN result picks h2 or HTTP/1.1 (RFC 7301). Plaintext with both enabled: the first
bytes decide, since an h2c prior-knowledge client opens with the connection preface (RFC 9113
§3.3). Only connections that need a choice pay for one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from roadrunner.config import Config
from roadrunner.protocols.http1 import H1Connection, connection_class
from roadrunner.protocols.http2.connection import Http2Connection, PlainReadsHttp2Connection
from roadrunner.protocols.tcp import reads_by_data_received

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

Connection = H1Connection | Http2Connection


class ProtocolSelector(asyncio.Protocol):
    """Stands in until the protocol is known, then hands the transport to the real one."""

    def __init__(
        self,
        h1: Callable[..., Connection],
        h2: Callable[..., Connection],
        config: Config,
        server_state: Any,
        app_state: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.h1 = h1
        self.h2 = h2
        self.config = config
        self.state = server_state
        self.app_state = app_state
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "h2":
            self.switch(self.h2)
        elif alpn == "http/1.1":
            self.switch(self.h1)
        else:
            # No ALPN (or plaintext): wait for the first bytes, within the header-read timeout.
            self.state.connections.add(self)
            self.timer = self.loop.call_later(self.config.timeout_request_header, self.close_unserved)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        size = len(self.buffer)
        if size < len(HTTP2_PREFACE) and HTTP2_PREFACE.startswith(self.buffer):
            return
        self.switch(self.h2 if self.buffer.startswith(HTTP2_PREFACE) else self.h1)

    def switch(self, factory: Callable[..., Connection]) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.state.connections.discard(self)
        transport = self.transport
        assert transport is not None
        protocol = factory(self.config, self.state, self.app_state, self.loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.buffer:
            data, self.buffer = self.buffer, b""
            protocol.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def shutdown(self) -> None:
        """Server shutdown: the client may have sent its first bytes already (a connection
        adopted from the accept queue, or the RFC 9112 §9.3.1 race), so it gets
        `timeout_shutdown_idle` to be sniffed and answered by a draining protocol."""
        grace = self.config.timeout_shutdown_idle
        if grace <= 0 or self.transport is None:
            self.close_unserved()
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(grace, self.close_unserved)

    def close_unserved(self) -> None:
        """The first-bytes timeout (or the shutdown grace) ran out: nothing was served, close."""
        self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def protocol_factory(
    config: Config,
    server_state: Any,
    app_state: dict[str, Any],
    loop: asyncio.AbstractEventLoop,
) -> Callable[[], asyncio.BaseProtocol]:
    """A factory of connection protocols for one TCP listener."""
    plain_reads = reads_by_data_received(config.is_ssl, loop)
    h1 = connection_class(config, plain_reads)
    h2 = PlainReadsHttp2Connection if plain_reads else Http2Connection
    h1_enabled = "h1" in config.protocols or "h2" not in config.protocols

    if "h2" not in config.protocols:
        def make() -> asyncio.BaseProtocol:
            return h1(config, server_state, app_state, loop)
    elif not h1_enabled:
        def make() -> asyncio.BaseProtocol:
            return h2(config, server_state, app_state, loop)
    else:
        def make() -> asyncio.BaseProtocol:
            return ProtocolSelector(h1, h2, config, server_state, app_state, loop)

    return make
