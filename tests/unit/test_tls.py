"""roadrunner.tls: the TLS layer's read, write and pending go straight to the C object."""

from __future__ import annotations

import ssl

import pytest
import trustme

from roadrunner.tls import DirectSSLObject, direct_ssl_objects


def pump(source: ssl.MemoryBIO, target: ssl.MemoryBIO) -> None:
    data = source.read()
    if data:
        target.write(data)


class Pair:
    """A client and a server SSLObject over memory BIOs, handshake done."""

    def __init__(self, server_context: ssl.SSLContext, ca: trustme.CA) -> None:
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        self.client_out, self.server_in, self.server_out, self.client_in = (
            ssl.MemoryBIO() for _ in range(4))
        self.client = client_context.wrap_bio(self.client_in, self.client_out, server_hostname="localhost")
        self.server = server_context.wrap_bio(self.server_in, self.server_out, server_side=True)
        for _ in range(10):
            for obj in (self.client, self.server):
                try:
                    obj.do_handshake()
                except ssl.SSLWantReadError:
                    pass
            self.to_server()
            self.to_client()

    def to_server(self) -> None:
        pump(self.client_out, self.server_in)

    def to_client(self) -> None:
        pump(self.server_out, self.client_in)


@pytest.fixture
def server_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_ca.issue_cert("localhost").configure_cert(context)
    return context


def test_reads_and_writes_go_to_the_c_object(server_context: ssl.SSLContext, tls_ca: trustme.CA) -> None:
    assert direct_ssl_objects(server_context) is server_context
    pair = Pair(server_context, tls_ca)
    client, server = pair.client, pair.server
    assert isinstance(server, DirectSSLObject)
    native = server._sslobj  # type: ignore[attr-defined]
    for name in ("read", "write", "pending"):
        assert getattr(server, name).__self__ is native, name  # no Python frame in between
    # Both ways, as the loops' TLS layers call them: read(len), read(len, buffer), write, pending.
    client.write(b"GET / HTTP/1.1\r\n\r\n")
    pair.to_server()
    buffer = bytearray(100)
    assert server.pending() == 0
    count = server.read(100, buffer)
    assert bytes(buffer[:count]) == b"GET / HTTP/1.1\r\n\r\n"
    assert server.write(b"HTTP/1.1 200 OK\r\n\r\nhello") == 24
    pair.to_client()
    assert client.read(100) == b"HTTP/1.1 200 OK\r\n\r\nhello"
    client.write(b"more")
    pair.to_server()
    assert server.read(100) == b"more"
    assert server.selected_alpn_protocol() is None  # everything else is SSLObject's own


def test_a_context_with_its_own_object_class_keeps_it(server_context: ssl.SSLContext) -> None:
    class Custom(ssl.SSLObject):
        pass

    server_context.sslobject_class = Custom
    assert direct_ssl_objects(server_context).sslobject_class is Custom
