"""QUIC / HTTP/3: datagrams into the QuicListener (protocols/quic.py), no socket involved.

Each input is a list of records, each one of:
- a raw datagram from a stranger's address (header parsing, routing, version negotiation);
- a client Initial packet whose frames are the fuzz bytes, sealed with the Initial keys of
  its Destination Connection ID (RFC 9001 §5.2), so the server decrypts and parses them;
- bytes a real aioquic client, after a complete handshake, writes on one of its streams
  (HTTP/3 frames, QPACK, control and unidirectional streams into Http3Connection).
Whatever they are:
- the listener drops no datagram with an exception and no connection fails internally;
- nothing reaches the loop's exception handler or the error log;
- after them the listener still serves: the handshaken client's next GET is answered, or the
  server closed that connection with a CONNECTION_CLOSE; a second, fresh client is served.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz import driver  # noqa: E402

with driver.instrumented():
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.crypto import CryptoPair
    from aioquic.quic.events import ConnectionTerminated
    from aioquic.quic.packet import QuicPacketType
    from aioquic.quic.packet_builder import QuicPacketBuilder

    from roadrunner.protocols.http3.quic_connection import build_quic_configuration
    from roadrunner.protocols.quic import QuicListener
    from roadrunner.server import ServerState

logging.getLogger("quic").addHandler(logging.NullHandler())  # aioquic's per-packet lines
logging.getLogger("quic").propagate = False
CLIENT = ("127.0.0.1", 50000)
FRESH = ("127.0.0.1", 50001)
STRANGERS = [(f"127.0.0.{i + 2}", 40000 + i) for i in range(4)]
GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost"), (b":path", b"/")]


class DatagramTransport:
    """The UDP transport in memory: what the listener sends, per destination."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.closed = False

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent.append((bytes(data), addr))

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def take(self, addr: Any) -> list[bytes]:
        mine = [data for data, to in self.sent if to == addr]
        self.sent = [(data, to) for data, to in self.sent if to != addr]
        return mine


def tls_files() -> tuple[str, str]:
    import trustme

    cert = trustme.CA(key_type=trustme.KeyType.ECDSA).issue_cert("localhost")
    folder = tempfile.mkdtemp(prefix="fuzz-quic-")
    certfile, keyfile = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    return certfile, keyfile


CERTFILE, KEYFILE = tls_files()
CONFIG = driver.config(protocols="h1,h3", ssl_certfile=CERTFILE, ssl_keyfile=KEYFILE, h3_gso=False)
QUIC_CONFIGURATION = build_quic_configuration(CONFIG)
SOCK = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
SOCK.bind(("127.0.0.1", 0))
SERVER = SOCK.getsockname()


def new_listener() -> tuple[QuicListener, DatagramTransport]:
    async def make() -> QuicListener:
        return QuicListener(CONFIG, ServerState(), {}, SOCK, QUIC_CONFIGURATION)

    listener = driver.loop.run_until_complete(make())
    transport = DatagramTransport()
    listener.connection_made(transport)  # type: ignore[arg-type]
    return listener, transport


class Client:
    """A real aioquic client, its datagrams carried to and from the listener by hand."""

    def __init__(self, listener: QuicListener, transport: DatagramTransport, addr: Any) -> None:
        configuration = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name="localhost")
        configuration.verify_mode = 0  # ssl.CERT_NONE: the harness's throwaway certificate
        self.quic = QuicConnection(configuration=configuration)
        self.h3 = H3Connection(self.quic)
        self.listener, self.transport, self.addr = listener, transport, addr
        self.events: list[Any] = []
        self.quic.connect(SERVER, now=time.monotonic())
        self.pump()

    def pump(self) -> None:
        for _ in range(20):
            moved = False
            for data, _addr in self.quic.datagrams_to_send(now=time.monotonic()):
                self.listener.datagram_received(data, self.addr)
                moved = True
            driver.spin(3)
            for data in self.transport.take(self.addr):
                self.quic.receive_datagram(data, SERVER, now=time.monotonic())
                moved = True
            while (event := self.quic.next_event()) is not None:
                self.events.append(event)
                self.events += self.h3.handle_event(event)
            if not moved:
                return

    @property
    def closed(self) -> bool:
        """The server closed the connection (aioquic reports it after the draining period)."""
        return self.quic._close_event is not None or any(
            isinstance(e, ConnectionTerminated) for e in self.events)

    def get(self) -> bool:
        """One GET; True when its whole response came back."""
        stream_id = self.quic.get_next_available_stream_id()
        self.h3.send_headers(stream_id, GET, end_stream=True)
        self.pump()
        status = any(isinstance(e, HeadersReceived) and e.stream_id == stream_id for e in self.events)
        return status and any(isinstance(e, DataReceived) and e.stream_id == stream_id
                              and e.stream_ended for e in self.events)


def sealed_initial(payload: bytes, dcid: bytes) -> bytes:
    """A client Initial carrying payload as its frames, padded to 1200 bytes (RFC 9000 §14.1)."""
    crypto = CryptoPair()
    crypto.setup_initial(cid=dcid, is_client=True, version=QUIC_CONFIGURATION.supported_versions[0])
    builder = QuicPacketBuilder(host_cid=b"\x01" * 8, peer_cid=dcid, version=QUIC_CONFIGURATION.supported_versions[0],
                                is_client=True, max_datagram_size=1200)
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    if payload:
        buf = builder.start_frame(payload[0], capacity=min(len(payload), 1100))
        buf.push_bytes(payload[1:1100])
    datagrams, _ = builder.flush()
    return datagrams[0] if datagrams else b""


def records(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos + 3 <= len(data):
        kind, length = struct.unpack_from("!BH", data, pos)
        pos += 3
        out.append((kind, data[pos:pos + length]))
        pos += length
    return out


def check(data: bytes) -> None:
    listener, transport = new_listener()
    client: Client | None = None
    strangers = False
    try:
        for kind, payload in records(data):
            strangers = strangers or kind & 3 < 2
            stranger = STRANGERS[kind >> 6]
            if kind & 3 == 0:
                listener.datagram_received(payload, stranger)
            elif kind & 3 == 1:
                dcid = (payload[:8] + b"\x00" * 8)[:8]
                listener.datagram_received(sealed_initial(payload[8:], dcid), stranger)
            else:
                if client is None:
                    client = Client(listener, transport, CLIENT)
                if not client.closed:
                    # kind bits 2-3: which stream (bidi 0/4 or uni 2/6+), bit 4: FIN.
                    stream_id = [0, 4, 2, 14][(kind >> 2) & 3]
                    try:
                        client.quic.send_stream_data(stream_id, payload, end_stream=bool(kind & 16))
                    except (ValueError, AssertionError, RuntimeError):
                        pass  # aioquic refuses to write on a stream it finished
                    client.pump()
            driver.spin(2)
            assert listener.dropped == 0, "the listener dropped a datagram with an exception"
            driver.assert_no_errors()
        if client is not None and not client.closed:
            assert client.get() or client.closed, "the handshaken client's GET got no answer"
        if strangers or client is None:
            assert Client(listener, transport, FRESH).get(), "a fresh client is not served"
        assert listener.dropped == 0, "the listener dropped a datagram with an exception"
        driver.assert_no_errors()
    finally:
        listener.connection_lost(None)
        driver.spin(4)


if __name__ == "__main__":
    driver.main("quic", check)
