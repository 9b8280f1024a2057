"""The HTTP/3 UDP listener: socket binding, the datagram loop, connection-ID routing, Retry,
and the batched (UDP GSO) send path. Each QUIC connection is an `Http3Connection`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import TRANSPORT_CLOSE_FRAME_CAPACITY
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from roadrunner.config import Config, ConfigError
from roadrunner.protocols.http3.connection import Http3Connection
from roadrunner.protocols.http3.quic_connection import (
    CreditQuicConnection,
    build_quic_configuration,
)

if TYPE_CHECKING:
    from roadrunner.server import Server
    from roadrunner.server_state import ServerState

logger = logging.getLogger("roadrunner.error")

NetworkAddress = Any
# Linux UDP generic segmentation offload (linux/udp.h); Python exposes it from 3.12 only.
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
SOL_UDP = getattr(socket, "SOL_UDP", 17)
GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS in the kernel
GSO_MAX_BYTES = 65000  # one UDP payload (< 65507) per sendmsg
# RFC 9000 §8.1.4: a client returns a Retry token at once, so it need not live long (aioquic's
# own handler uses the same lifetime).
RETRY_TOKEN_LIFETIME = 30.0
RETRY_NONCE_LENGTH = 12


def bind_udp_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """Bind the HTTP/3 UDP socket; with `reuse_port`, many workers each bind the same port.

    Multi-worker mode: every worker calls this with reuse_port=True after fork, and the kernel
    spreads flows over the sockets by 4-tuple hash (see docs/http3.md on what that means for
    connection migration).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ConfigError("HTTP/3 with several workers needs SO_REUSEPORT.")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Cannot bind UDP {host}:{port} for HTTP/3: {exc.strerror}.") from exc
    sock.setblocking(False)
    return sock


def gso_supported(sock: socket.socket) -> bool:
    """True when the kernel accepts UDP_SEGMENT on this socket (Linux >= 4.18)."""
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def encode_close_initial(
    version: int, source_cid: bytes, destination_cid: bytes, error_code: int
) -> bytes:
    """A server Initial packet carrying only CONNECTION_CLOSE (RFC 9000 §10.2.3).

    The Initial keys come from the client's Destination Connection ID (RFC 9001 §5.2).
    """
    crypto = CryptoPair()
    crypto.setup_initial(cid=source_cid, is_client=False, version=version)
    builder = QuicPacketBuilder(
        host_cid=source_cid,
        is_client=False,
        max_datagram_size=SMALLEST_MAX_DATAGRAM_SIZE,
        peer_cid=destination_cid,
        version=version,
    )
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    buf = builder.start_frame(QuicFrameType.TRANSPORT_CLOSE, capacity=TRANSPORT_CLOSE_FRAME_CAPACITY)
    buf.push_uint_var(error_code)
    buf.push_uint_var(QuicFrameType.PADDING)
    buf.push_uint_var(0)
    datagrams, _ = builder.flush()
    return datagrams[0]


class RetryTokens:
    """Issues and checks Retry tokens (RFC 9000 §8.1.2) sealed with a per-process AES-GCM key.

    Ours rather than aioquic's `QuicRetryTokenHandler`, whose API and checks differ by release:
    1.3 (the last for Python 3.10) seals with RSA-OAEP (a costly decryption per token a flood
    sends), never expires tokens and does not bind them to the Retry's connection ID.
    """

    def __init__(self) -> None:
        self.aead = AESGCM(AESGCM.generate_key(bit_length=128))

    def create(
        self, address: NetworkAddress, original_dcid: bytes, retry_scid: bytes, now: float
    ) -> bytes:
        buf = Buffer(capacity=64)
        buf.push_bytes(ipaddress.ip_address(address[0]).packed)
        buf.push_uint16(int(address[1]))
        for cid in (original_dcid, retry_scid):
            buf.push_uint8(len(cid))
            buf.push_bytes(cid)
        buf.push_uint64(int(now * 1000))
        nonce = os.urandom(RETRY_NONCE_LENGTH)
        return nonce + self.aead.encrypt(nonce, buf.data, None)

    def validate(self, address: NetworkAddress, destination_cid: bytes, token: bytes, now: float) -> bytes:
        """The client's original Destination Connection ID; ValueError for a bad token."""
        try:
            plain = self.aead.decrypt(token[:RETRY_NONCE_LENGTH], token[RETRY_NONCE_LENGTH:], None)
        except (InvalidTag, ValueError) as exc:
            raise ValueError("invalid token") from exc
        packed = ipaddress.ip_address(address[0]).packed
        buf = Buffer(data=plain)
        try:
            token_address = (buf.pull_bytes(len(packed)), buf.pull_uint16())
            original_dcid = buf.pull_bytes(buf.pull_uint8())
            retry_scid = buf.pull_bytes(buf.pull_uint8())
            issued = buf.pull_uint64() / 1000
        except BufferReadError as exc:
            raise ValueError("invalid token") from exc
        if token_address != (packed, int(address[1])):
            raise ValueError("address mismatch")
        # RFC 9000 §17.2.5.2: the client sends to the Retry packet's Source Connection ID.
        if destination_cid != retry_scid:
            raise ValueError("connection ID mismatch")
        if not 0 <= now - issued <= RETRY_TOKEN_LIFETIME:
            raise ValueError("expired token")
        return original_dcid


class DatagramSender:
    """Sends batches of datagrams: UDP GSO (one sendmsg per run of equal-size datagrams to one
    peer) where the kernel supports it, else one sendto per datagram via the transport."""

    def __init__(self, sock: socket.socket, transport: asyncio.DatagramTransport, gso: bool) -> None:
        self.sock = sock
        self.transport = transport
        self.gso = gso and gso_supported(sock)
        self.closed = False
        self.syscalls = 0  # send calls made, for measurements (docs/http3.md)
        self.datagrams = 0

    def send(self, datagrams: list[tuple[bytes, NetworkAddress]]) -> None:
        if self.closed:
            return
        self.datagrams += len(datagrams)
        if not self.gso or self.buffered():
            self.send_each(datagrams)
            return
        index = 0
        count = len(datagrams)
        while index < count:
            data, addr = datagrams[index]
            size = len(data)
            end = index + 1
            total = size
            while end < count and end - index < GSO_MAX_SEGMENTS:
                next_data, next_addr = datagrams[end]
                length = len(next_data)
                if next_addr != addr or length > size or total + length > GSO_MAX_BYTES:
                    break
                total += length
                end += 1
                if length < size:
                    break  # only the last segment of a GSO batch may be shorter
            try:
                self.syscalls += 1
                if end - index == 1:
                    self.sock.sendto(data, addr)
                else:
                    payload = b"".join(item[0] for item in datagrams[index:end])
                    self.sock.sendmsg(
                        [payload], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, addr
                    )
            except BlockingIOError:
                self.send_each(datagrams[index:])  # the transport buffers until writable
                return
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                    # The device or route cannot segment: fall back for good, resend per datagram.
                    logger.info("UDP GSO unavailable (%s); sending one datagram per call.", exc)
                    self.gso = False
                    self.send_each(datagrams[index:])
                    return
                logger.debug("UDP send to %s failed: %s", addr, exc)
            index = end

    def buffered(self) -> int:
        """Bytes the transport still holds from an earlier would-block: keep order behind them."""
        size = getattr(self.transport, "get_write_buffer_size", None)
        return int(size()) if size is not None else 0

    def send_each(self, datagrams: list[tuple[bytes, NetworkAddress]]) -> None:
        for data, addr in datagrams:
            self.syscalls += 1
            self.transport.sendto(data, addr)


class QuicListener(asyncio.DatagramProtocol):
    """The datagram loop of one UDP socket: routes each packet to its connection by CID.

    Nothing a client sends may end this loop: every failure is confined to one datagram or one
    connection and logged as one line.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        sock: socket.socket,
        quic_configuration: QuicConfiguration,
    ) -> None:
        self.config = config
        self.state = server_state
        self.app_state = app_state
        self.sock = sock
        self.quic_configuration = quic_configuration
        self.loop = asyncio.get_running_loop()
        self.routes: dict[bytes, Http3Connection] = {}
        self.cids: dict[Http3Connection, set[bytes]] = {}
        self.live: set[Http3Connection] = set()  # not yet closed by us or the peer
        self.retry = RetryTokens() if config.h3_retry else None
        self.closing = False
        self.transport: asyncio.DatagramTransport | None = None
        self.sender: DatagramSender | None = None
        self.dropped = 0  # datagrams that raised while being handled
        host, port = sock.getsockname()[:2]
        self.address = (str(host), int(port))

    # -- asyncio.DatagramProtocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
        self.sender = DatagramSender(self.sock, self.transport, self.config.h3_gso)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sender is not None:
            self.sender.closed = True
        for connection in list(self.cids):
            connection.connection_terminated()

    def error_received(self, exc: Exception) -> None:
        logger.debug("HTTP/3 UDP socket error: %s", exc)

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:  # type: ignore[override]
        try:
            self.route(data, addr)
        except Exception as exc:
            self.dropped += 1
            logger.warning("HTTP/3: dropped a datagram from %s: %r", addr, exc)

    # -- routing ------------------------------------------------------------------------------------

    def route(self, data: bytes, addr: NetworkAddress) -> None:
        configuration = self.quic_configuration
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=configuration.connection_id_length)
        except ValueError:
            return
        connection = self.routes.get(header.destination_cid)
        if connection is None:
            # RFC 9000 §14.1: a server must not act on an Initial in a datagram under 1200 bytes
            # (it would amplify); other unknown packets are dropped.
            if len(data) < SMALLEST_MAX_DATAGRAM_SIZE or header.version is None:
                return
            if header.packet_type == QuicPacketType.VERSION_NEGOTIATION:
                return  # never answer a VN with a VN (reflection loop)
            if header.version not in configuration.supported_versions:
                # RFC 9000 §6.1: tell the client which versions we speak.
                self.send([(
                    encode_quic_version_negotiation(
                        source_cid=header.destination_cid,
                        destination_cid=header.source_cid,
                        supported_versions=configuration.supported_versions,
                    ),
                    addr,
                )])
                return
            if header.packet_type != QuicPacketType.INITIAL:
                return
            connection = self.accept(header, addr)
            if connection is None:
                return
            fresh = True
        else:
            fresh = False
        try:
            connection.datagram_received(data, addr)
        except Exception as exc:
            connection.internal_error(exc)
        if fresh and connection.quic._peer_cid.sequence_number is None:
            # Not one packet of this "Initial" decrypted (garbage or spoofed): keep no state.
            connection.connection_terminated()

    def accept(self, header: Any, addr: NetworkAddress) -> Http3Connection | None:
        """A new client Initial: refuse, ask for address validation (Retry), or connect."""
        if self.closing or len(self.live) >= self.config.h3_max_connections:
            # RFC 9000 §20.1: CONNECTION_REFUSED, the server refuses to accept a new connection.
            if not self.closing:
                logger.warning("HTTP/3 connection limit (%d) reached.", self.config.h3_max_connections)
            self.send([(
                encode_close_initial(
                    header.version, header.destination_cid, header.source_cid,
                    QuicErrorCode.CONNECTION_REFUSED,
                ),
                addr,
            )])
            return None
        original_dcid: bytes = header.destination_cid
        retry_scid: bytes | None = None
        if self.retry is not None:
            now = self.loop.time()
            if not header.token:
                # RFC 9000 §8.1.2: prove the address is the client's before spending handshake
                # work on it (defeats spoofed-source floods).
                source_cid = os.urandom(8)
                token = self.retry.create(addr, header.destination_cid, source_cid, now)
                self.send([(
                    encode_quic_retry(
                        version=header.version,
                        source_cid=source_cid,
                        destination_cid=header.source_cid,
                        original_destination_cid=header.destination_cid,
                        retry_token=token,
                    ),
                    addr,
                )])
                return None
            try:
                original_dcid = self.retry.validate(addr, header.destination_cid, header.token, now)
            except ValueError:
                # RFC 9000 §8.1.3: an invalid Retry token closes with INVALID_TOKEN.
                self.send([(
                    encode_close_initial(
                        header.version, header.destination_cid, header.source_cid,
                        QuicErrorCode.INVALID_TOKEN,
                    ),
                    addr,
                )])
                return None
            retry_scid = header.destination_cid
        quic = CreditQuicConnection(
            configuration=self.quic_configuration,
            original_destination_connection_id=original_dcid,
            retry_source_connection_id=retry_scid,
            max_streams_bidi=self.config.h3_max_concurrent_streams,
        )
        connection = Http3Connection(
            quic, self.config, self.state, self.app_state, self.loop,
            send=self.send,
            on_cid_issued=self.add_route,
            on_cid_retired=self.remove_route,
            on_closed=self.connection_closed,
            on_terminated=self.connection_terminated,
            server_address=self.address,
        )
        self.live.add(connection)
        self.cids[connection] = set()
        self.add_route(header.destination_cid, connection)
        self.add_route(quic.host_cid, connection)
        return connection

    def add_route(self, cid: bytes, connection: Http3Connection) -> None:
        self.routes[cid] = connection
        self.cids.setdefault(connection, set()).add(cid)

    def remove_route(self, cid: bytes) -> None:
        connection = self.routes.pop(cid, None)
        if connection is not None and connection in self.cids:
            self.cids[connection].discard(cid)

    def send(self, datagrams: list[tuple[bytes, NetworkAddress]]) -> None:
        if self.sender is not None:
            self.sender.send(datagrams)

    # -- connection lifetime ---------------------------------------------------------------------

    def connection_closed(self, connection: Http3Connection) -> None:
        self.live.discard(connection)
        self.maybe_finish_closing()

    def connection_terminated(self, connection: Http3Connection) -> None:
        self.live.discard(connection)
        for cid in self.cids.pop(connection, set()):
            if self.routes.get(cid) is connection:
                del self.routes[cid]
        self.maybe_finish_closing()

    def close(self) -> None:
        """Graceful shutdown: refuse new connections, GOAWAY the live ones, close when idle."""
        self.closing = True
        for connection in list(self.live):
            connection.shutdown()
        self.maybe_finish_closing()

    def maybe_finish_closing(self) -> None:
        if self.closing and not self.live and self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    @property
    def connection_count(self) -> int:
        return len(self.live)


async def start_quic_listener(server: Server, listeners: Sequence[socket.socket]) -> QuicListener:
    """Bind UDP on the TCP listener's port and start serving HTTP/3 (server.py's hook)."""
    config = server.config
    host, port = config.host, config.port
    if listeners and listeners[0].family in (socket.AF_INET, socket.AF_INET6):
        host, port = listeners[0].getsockname()[:2]
    quic_configuration = build_quic_configuration(config)
    sock = bind_udp_socket(host, port, reuse_port=config.workers > 1)
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: QuicListener(config, server.server_state, server.lifespan.state, sock, quic_configuration),
        sock=sock,
    )
    server.h3_port = port
    return protocol
