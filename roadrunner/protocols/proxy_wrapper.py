"""Reads the PROXY protocol header below TLS, then hands the connection to the real protocol.

With `--proxy-protocol`, the listener is plain TCP and every accepted connection starts with
`ProxyProtocolReader`. It reads exactly the header bytes (never one byte of what follows, which
may be a TLS ClientHello), then either starts TLS with `loop.start_tls` or switches the
transport straight to the connection protocol. That protocol receives a `ProxiedTransport`
whose `get_extra_info("peername" / "sockname")` answers from the header, so h1, h2 and
WebSocket build `client` / `server` from the real addresses with no code of their own.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from roadrunner.config import is_trusted
from roadrunner.protocols.tcp import ConnectionProtocol, describe_peer
from roadrunner.proxy_protocol import ProxyHeader, ProxyProtocolError, bytes_needed, parse

if TYPE_CHECKING:
    from roadrunner.config import Config
    from roadrunner.server_state import ServerState

logger = logging.getLogger("roadrunner.error")


class ProxiedTransport(asyncio.Transport):
    """A transport that reports the addresses from a PROXY header and delegates the rest."""

    def __init__(self, transport: asyncio.Transport, header: ProxyHeader) -> None:
        super().__init__()
        self.transport = transport
        self.header = header

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername" and self.header.source is not None:
            return self.header.source
        if name == "sockname" and self.header.destination is not None:
            return self.header.destination
        if name == "proxy_header":
            return self.header
        return self.transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.transport.get_protocol()

    def is_reading(self) -> bool:
        return self.transport.is_reading()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.transport.get_write_buffer_limits()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()


class TLSHandoff(asyncio.Protocol):
    """Holds what TLS delivers between the end of the handshake and the protocol's start.

    asyncio's TLS layer may pass decrypted bytes (a request sent with the client's Finished)
    before `start_tls` returns; the connection protocol must see `connection_made` first.
    """

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False
        self.lost = False
        self.lost_exc: Exception | None = None

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return True  # keep the transport open until the real protocol decides

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_exc = exc

    def replay(self, protocol: ConnectionProtocol, transport: asyncio.Transport) -> None:
        """Give protocol everything held here, in order."""
        for chunk in self.data:
            protocol.data_received(chunk)
        if self.eof and not self.lost and not protocol.eof_received():
            transport.close()
        if self.lost:
            protocol.connection_lost(self.lost_exc)


class ProxyProtocolReader(asyncio.BufferedProtocol):
    """The first protocol of a connection on a PROXY listener: header, then TLS, then HTTP."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        factory: Callable[[], asyncio.BaseProtocol],
        ssl_context: ssl.SSLContext | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.config = config
        self.state = server_state
        self.factory = factory
        self.ssl_context = ssl_context
        self.loop = loop
        self.mode = config.proxy_protocol
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.chunk = bytearray(256)
        self.needed = bytes_needed(b"", self.mode)
        self.timer: asyncio.TimerHandle | None = None
        self.tls_task: asyncio.Task[None] | None = None
        self.peer = "unknown peer"
        self.done = False

    # -- asyncio.BufferedProtocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        address = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        host = address[0] if address else None
        self.peer = describe_peer(address)
        if not is_trusted(host, self.config.proxy_protocol_allow_ips):
            # Only the load balancer may vouch for addresses: an untrusted peer is closed
            # before a single byte is read, never parsed as HTTP.
            logger.warning("PROXY protocol: connection from untrusted %s refused", self.peer)
            transport.close()
            self.done = True
            return
        self.state.connections.add(self)
        self.timer = self.loop.call_later(self.config.timeout_request_header, self.on_timeout)

    def get_buffer(self, sizehint: int) -> memoryview:
        # Ask for no more than the header can still need: the next byte after it belongs to
        # TLS or HTTP and must stay in the socket.
        return memoryview(self.chunk)[: self.needed]

    def buffer_updated(self, nbytes: int) -> None:
        self.buffer += self.chunk[:nbytes]
        data = bytes(self.buffer)
        try:
            needed = bytes_needed(data, self.mode)
            if needed:
                self.needed = min(needed, len(self.chunk))
                return
            header = parse(data, self.mode)
        except ProxyProtocolError as exc:
            self.fail(str(exc))
            return
        assert header is not None
        self.header_complete(header)

    def eof_received(self) -> bool | None:
        if not self.done:
            self.fail("connection closed inside the PROXY header" if self.buffer else "")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish()

    # -- server control -------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful shutdown: a connection still inside its header or handshake just closes."""
        self.fail("")

    # -- internals ------------------------------------------------------------------------------------

    def on_timeout(self) -> None:
        self.timer = None
        phase = "TLS handshake" if self.tls_task is not None else "PROXY header"
        self.fail(f"{phase} not complete within {self.config.timeout_request_header:g} s")

    def fail(self, reason: str) -> None:
        """Close the connection; one log line says why."""
        if reason:
            logger.warning("PROXY protocol: %s from %s, closing", reason, self.peer)
        self.finish()
        if self.tls_task is not None and not self.tls_task.done():
            self.tls_task.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def finish(self) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.state.connections.discard(self)

    def header_complete(self, header: ProxyHeader) -> None:
        assert self.transport is not None
        transport = self.transport
        if self.ssl_context is None:
            self.finish()
            protocol = self.factory()
            # Switching protocol type (buffered -> plain) takes effect when reading restarts.
            transport.pause_reading()
            transport.set_protocol(protocol)
            protocol.connection_made(ProxiedTransport(transport, header))
            if not transport.is_closing():
                transport.resume_reading()
            return
        # Not one byte of the ClientHello may be read here: stop until start_tls takes over.
        transport.pause_reading()
        self.tls_task = self.loop.create_task(self.start_tls(transport, header, self.ssl_context))

    async def start_tls(
        self, transport: asyncio.Transport, header: ProxyHeader, context: ssl.SSLContext
    ) -> None:
        """TLS now starts on the bytes right after the PROXY header."""
        handoff = TLSHandoff()
        try:
            tls_transport = await self.loop.start_tls(
                transport, handoff, context, server_side=True
            )
        except asyncio.CancelledError:
            return
        except (OSError, asyncio.TimeoutError) as exc:  # ssl.SSLError is an OSError
            self.fail(f"TLS handshake failed ({exc.__class__.__name__}: {exc})")
            return
        # A timeout or shutdown during the handshake cancels this task, so we get here only
        # with the connection still ours.
        assert tls_transport is not None
        self.finish()
        protocol = self.factory()
        proxied = ProxiedTransport(tls_transport, header)
        tls_transport.set_protocol(protocol)
        protocol.connection_made(proxied)
        handoff.replay(cast(ConnectionProtocol, protocol), proxied)


def proxy_protocol_factory(
    config: Config,
    server_state: ServerState,
    factory: Callable[[], asyncio.BaseProtocol],
    ssl_context: ssl.SSLContext | None,
    loop: asyncio.AbstractEventLoop,
) -> Callable[[], asyncio.BaseProtocol]:
    """Wrap a listener's protocol factory so each connection reads a PROXY header first."""

    def make() -> asyncio.BaseProtocol:
        return ProxyProtocolReader(config, server_state, factory, ssl_context, loop)

    return make
