"""DatagramSender: UDP GSO batching checked on real loopback sockets, one syscall at a time."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from roadrunner.protocols.quic import GSO_MAX_SEGMENTS, DatagramSender, gso_supported


class RecordingTransport:
    """Stands in for the asyncio datagram transport: the per-datagram fallback path."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)
        self.sock.sendto(data, addr)

    def get_write_buffer_size(self) -> int:
        return 0


def receive_all(sock: socket.socket, count: int) -> list[bytes]:
    sock.settimeout(2.0)
    return [sock.recv(65536) for _ in range(count)]


@pytest.fixture
def sockets() -> Any:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    receiver.bind(("127.0.0.1", 0))
    yield sender, receiver
    sender.close()
    receiver.close()


def test_gso_sends_a_run_of_equal_datagrams_in_one_call(sockets: Any) -> None:
    sock, receiver = sockets
    if not gso_supported(sock):
        pytest.skip("the kernel has no UDP GSO")
    addr = receiver.getsockname()
    transport = RecordingTransport(sock)
    sender = DatagramSender(sock, transport, gso=True)  # type: ignore[arg-type]
    datagrams = [(bytes([i]) * 1200, addr) for i in range(30)] + [(b"t" * 300, addr)]
    sender.send(datagrams)
    # 30 full segments and one shorter tail: one sendmsg; the kernel splits it back.
    assert sender.syscalls == 1
    assert transport.sent == []
    assert receive_all(receiver, 31) == [data for data, _ in datagrams]


def test_gso_splits_at_size_growth_and_segment_limit(sockets: Any) -> None:
    sock, receiver = sockets
    if not gso_supported(sock):
        pytest.skip("the kernel has no UDP GSO")
    addr = receiver.getsockname()
    sender = DatagramSender(sock, RecordingTransport(sock), gso=True)  # type: ignore[arg-type]
    full = [(b"a" * 1000, addr)] * (GSO_MAX_SEGMENTS + 1)
    grown = [(b"b" * 500, addr), (b"c" * 900, addr)]
    sender.send(full + grown)
    # [64 x 1000] hits the segment limit; [1000, 500] ends at the shorter tail; [900] is larger
    # than the run's segment size, so it starts a call of its own.
    assert sender.syscalls == 3
    received = receive_all(receiver, len(full) + 2)
    assert [len(data) for data in received] == [1000] * len(full) + [500, 900]


def test_gso_splits_where_the_peer_changes(sockets: Any) -> None:
    sock, receiver = sockets
    if not gso_supported(sock):
        pytest.skip("the kernel has no UDP GSO")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))
        first, second = receiver.getsockname(), other.getsockname()
        sender = DatagramSender(sock, RecordingTransport(sock), gso=True)  # type: ignore[arg-type]
        sender.send([(b"a" * 800, first)] * 3 + [(b"b" * 800, second)] * 2)
        assert sender.syscalls == 2
        assert receive_all(receiver, 3) == [b"a" * 800] * 3
        assert receive_all(other, 2) == [b"b" * 800] * 2


def test_without_gso_every_datagram_is_one_send(sockets: Any) -> None:
    sock, receiver = sockets
    addr = receiver.getsockname()
    transport = RecordingTransport(sock)
    sender = DatagramSender(sock, transport, gso=False)  # type: ignore[arg-type]
    sender.send([(b"x" * 1200, addr)] * 5)
    assert sender.syscalls == 5
    assert len(transport.sent) == 5
    assert len(receive_all(receiver, 5)) == 5


def test_closed_sender_drops_everything(sockets: Any) -> None:
    sock, receiver = sockets
    sender = DatagramSender(sock, RecordingTransport(sock), gso=True)  # type: ignore[arg-type]
    sender.closed = True
    sender.send([(b"x", receiver.getsockname())])
    assert sender.syscalls == 0 and sender.datagrams == 0


