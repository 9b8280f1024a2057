"""PROXY protocol parser: every header shape, and every way a header can be wrong."""

from __future__ import annotations

import asyncio
import struct

import pytest

from roadrunner.protocols.proxy_wrapper import ProxiedTransport, TLSHandoff
from roadrunner.proxy_protocol import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    build_v1,
    build_v2,
    bytes_needed,
    detect_version,
    parse,
    parse_v1,
    parse_v2,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2_raw(ver_cmd: int, fam: int, block: bytes, length: int | None = None) -> bytes:
    size = len(block) if length is None else length
    return V2_SIGNATURE + struct.pack("!BBH", ver_cmd, fam, size) + block


def read_like_a_socket(data: bytes, mode: str = "auto") -> tuple[int, int]:
    """Feed data the way the reader does: never more than bytes_needed at a time.

    Returns (bytes consumed, number of reads); the consumed count must be the header length.
    """
    buffer = b""
    reads = 0
    while True:
        needed = bytes_needed(buffer, mode)
        if needed == 0:
            return len(buffer), reads
        take = data[len(buffer): len(buffer) + needed]
        assert take, "reader asked for more bytes than the header has"
        buffer += take
        reads += 1


# -- v1 ------------------------------------------------------------------------------------------


def test_v1_tcp4() -> None:
    header = parse(b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n" + REQUEST)
    assert header is not None
    assert (header.version, header.command, header.family) == (1, "PROXY", "TCP4")
    assert header.source == ("192.168.0.1", 56324)
    assert header.destination == ("10.0.0.2", 443)
    assert header.length == len(b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n")


def test_v1_tcp6() -> None:
    line = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n"
    header = parse(line)
    assert header is not None
    assert header.family == "TCP6"
    assert header.source == ("2001:db8::1", 65535, 0, 0)
    assert header.destination == ("::1", 0, 0, 0)


@pytest.mark.parametrize("line", [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n"])
def test_v1_unknown_keeps_real_addresses(line: bytes) -> None:
    header = parse(line + REQUEST)
    assert header is not None
    assert header.family == "UNKNOWN"
    assert header.source is None and header.destination is None
    assert header.length == len(line)


def test_v1_longest_valid_header_is_107_bytes() -> None:
    full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    header = parse(line)
    assert header is not None and header.source == (full, 65535, 0, 0)
    # PP §2.1: the 107-byte worst case is UNKNOWN followed by the longest TCP6 fields.
    longest = f"PROXY UNKNOWN {full} {full} 65535 65535\r\n".encode()
    assert len(longest) == V1_MAX_LENGTH
    assert parse(longest) is not None
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        parse(longest[:-2] + b"0\r\n")


def test_v1_too_long_without_crlf() -> None:
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        bytes_needed(b"PROXY UNKNOWN " + b"x" * 100)
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        parse_v1(b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n")


@pytest.mark.parametrize(
    "line, message",
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "exactly 6"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "exactly 6"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol family"),
        (b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", "invalid address"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "does not match TCP4"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "does not match TCP6"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "invalid address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "out of range"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "invalid port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "invalid port"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "exactly 6"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xff\r\n", "US-ASCII"),
    ],
)
def test_v1_malformed(line: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse(line)


def test_v1_too_many_fields_detected_before_crlf() -> None:
    with pytest.raises(ProxyProtocolError, match="too many fields"):
        bytes_needed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3")


def test_v1_parse_requires_prefix_and_crlf() -> None:
    with pytest.raises(ProxyProtocolError, match="CRLF"):
        parse_v1(b"PROXY UNKNOWN\n")


def test_v1_truncated_is_incomplete_not_valid() -> None:
    line = b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n"
    for cut in range(len(line)):
        assert parse(line[:cut]) is None
        assert bytes_needed(line[:cut]) >= 1


def test_v1_reader_never_reads_past_the_header() -> None:
    for line in (
        b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n",
        b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1\r\n",
        b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n",
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN whatever\r\n",
        build_v1(("10.1.2.3", 4444), ("10.3.2.1", 80)),
    ):
        consumed, reads = read_like_a_socket(line + b"\x16\x03\x01")
        assert consumed == len(line)
        assert reads < len(line)  # bounded reads, not byte by byte


# -- v2 ------------------------------------------------------------------------------------------


def test_v2_proxy_ipv4() -> None:
    data = build_v2(("192.0.2.10", 40000), ("198.51.100.1", 8443))
    header = parse(data + REQUEST)
    assert header is not None
    assert (header.version, header.command, header.family) == (2, "PROXY", "TCP4")
    assert header.source == ("192.0.2.10", 40000)
    assert header.destination == ("198.51.100.1", 8443)
    assert header.length == len(data) == 16 + 12


def test_v2_proxy_ipv6() -> None:
    header = parse(build_v2(("2001:db8::7", 1), ("2001:db8::8", 2)))
    assert header is not None
    assert header.family == "TCP6"
    assert header.source == ("2001:db8::7", 1, 0, 0)
    assert header.destination == ("2001:db8::8", 2, 0, 0)
    assert header.length == 16 + 36


def test_v2_proxy_unix() -> None:
    block = b"/run/client.sock".ljust(108, b"\x00") + b"/run/server.sock".ljust(108, b"\x00")
    header = parse(v2_raw(0x21, 0x31, block))
    assert header is not None
    assert header.family == "UNIX"
    assert header.source == "/run/client.sock"
    assert header.destination == "/run/server.sock"


def test_v2_tlvs_are_skipped_and_kept() -> None:
    tlvs = [(0x01, b"h2"), (0x04, b""), (0xE0, b"x" * 300)]
    data = build_v2(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=tlvs)
    header = parse(data + REQUEST)
    assert header is not None
    assert header.tlvs == tlvs
    assert header.source == ("192.0.2.1", 1)
    assert header.length == len(data)


@pytest.mark.parametrize(
    "tail, message",
    [(b"\x01\x00", "truncated TLV"), (b"\x01\x00\x05abc", "overruns")],
)
def test_v2_bad_tlvs(tail: bytes, message: str) -> None:
    block = bytes(12) + tail
    with pytest.raises(ProxyProtocolError, match=message):
        parse(v2_raw(0x21, 0x11, block))


def test_v2_local_keeps_real_addresses_and_ignores_block() -> None:
    header = parse(build_v2(None, None, local=True))
    assert header is not None
    assert (header.command, header.family) == ("LOCAL", "UNSPEC")
    assert header.source is None and header.destination is None
    # LOCAL with an address block (and junk after it): the block is discarded unread.
    header = parse(v2_raw(0x20, 0x11, bytes(12) + b"\x01"))
    assert header is not None and header.command == "LOCAL" and header.source is None


def test_v2_unspec_family_keeps_real_addresses() -> None:
    header = parse(v2_raw(0x21, 0x00, b"\x00\x01\x02"))
    assert header is not None
    assert header.family == "UNSPEC" and header.source is None


def test_v2_unspec_transport_keeps_real_addresses() -> None:
    header = parse(v2_raw(0x21, 0x10, bytes(12)))
    assert header is not None
    assert header.family == "TCP4" and header.source is None


def test_v2_datagram_transport_still_carries_addresses() -> None:
    block = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!HH", 53, 5353)
    header = parse(v2_raw(0x21, 0x12, block))
    assert header is not None and header.source == ("10.0.0.1", 53)


@pytest.mark.parametrize(
    "data, message",
    [
        (v2_raw(0x11, 0x11, bytes(12)), "unsupported version 1"),
        (v2_raw(0x22, 0x11, bytes(12)), "unsupported command 2"),
        (v2_raw(0x21, 0x41, bytes(12)), "unsupported address family 0x41"),
        (v2_raw(0x21, 0x13, bytes(12)), "unsupported address family 0x13"),
        (v2_raw(0x21, 0x11, bytes(8)), "too short for TCP4"),
        (v2_raw(0x21, 0x21, bytes(12)), "too short for TCP6"),
        (v2_raw(0x21, 0x31, bytes(100)), "too short for UNIX"),
    ],
)
def test_v2_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse(data)


def test_v2_truncated_is_incomplete() -> None:
    data = build_v2(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(0x02, b"example.com")])
    for cut in range(len(data)):
        assert parse(data[:cut]) is None
    with pytest.raises(ProxyProtocolError, match="truncated"):
        parse_v2(data[:-1])
    with pytest.raises(ProxyProtocolError, match="truncated"):
        parse_v2(data[:14])


def test_v2_reader_never_reads_past_the_header() -> None:
    for data in (
        build_v2(("192.0.2.1", 1), ("192.0.2.2", 2)),
        build_v2(("2001:db8::1", 1), ("2001:db8::2", 2), tlvs=[(0x20, b"\x01" * 40)]),
        build_v2(None, None, local=True),
    ):
        consumed, _ = read_like_a_socket(data + b"\x16\x03\x01\x02\x00")
        assert consumed == len(data)


def test_v2_maximum_length_header() -> None:
    block = bytes(12) + struct.pack("!BH", 0xEE, 65535 - 15) + bytes(65535 - 15)
    data = v2_raw(0x21, 0x11, block)
    assert len(data) == 16 + 65535
    header = parse(data)
    assert header is not None and header.tlvs[0][0] == 0xEE


# -- signatures and modes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x00", b"proxy TCP4", b"\r\n\r\n\x00\r\nQUIX"]
)
def test_wrong_signature(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError, match="signature"):
        bytes_needed(data)


def test_signature_prefix_waits_for_more() -> None:
    assert detect_version(b"") is None
    assert detect_version(b"PRO") is None
    assert detect_version(b"\r\n\r\n\x00") is None
    assert bytes_needed(b"PRO") == 12
    assert bytes_needed(b"", "v2") == 16


def test_modes_restrict_the_version() -> None:
    v1 = build_v1(("10.0.0.1", 1), ("10.0.0.2", 2))
    v2 = build_v2(("10.0.0.1", 1), ("10.0.0.2", 2))
    assert parse(v1, "v1") is not None
    assert parse(v2, "v2") is not None
    with pytest.raises(ProxyProtocolError, match="v1 signature"):
        parse(v2, "v1")
    with pytest.raises(ProxyProtocolError, match="v2 signature"):
        parse(v1, "v2")
    with pytest.raises(ProxyProtocolError, match="v2 signature"):
        parse_v2(v1)
    with pytest.raises(ValueError, match="mode"):
        parse(v1, "v3")


def test_builders() -> None:
    assert build_v1(None, None) == b"PROXY UNKNOWN\r\n"
    assert build_v1(("::1", 1), ("::2", 2)) == b"PROXY TCP6 ::1 ::2 1 2\r\n"
    assert build_v2(None, None) == V2_SIGNATURE + b"\x21\x00\x00\x00"


# -- the transport handed to connection protocols ------------------------------------------------


class Recorder(asyncio.Protocol):
    """Records what a transport delivers, as a connection protocol would see it."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[bytes] = asyncio.Queue()
        self.lost: list[Exception | None] = []

    def data_received(self, data: bytes) -> None:
        self.events.put_nowait(data)

    def eof_received(self) -> bool | None:
        self.events.put_nowait(b"<eof>")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


async def connected_pair() -> tuple[asyncio.AbstractServer, asyncio.Transport, Recorder]:
    """A real TCP connection on 127.0.0.1: (server, client transport, server-side recorder)."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[Recorder] = loop.create_future()

    def make() -> Recorder:
        recorder = Recorder()
        accepted.set_result(recorder)
        return recorder

    server = await loop.create_server(make, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    return server, transport, await accepted


async def read_until_eof(recorder: Recorder) -> bytes:
    data = b""
    while (chunk := await asyncio.wait_for(recorder.events.get(), 5)) != b"<eof>":
        data += chunk
    return data


def test_proxied_transport_answers_addresses_and_delegates_the_rest() -> None:
    async def main() -> None:
        server, transport, peer = await connected_pair()
        header = ProxyHeader(1, "PROXY", "TCP4", ("192.0.2.1", 5), ("192.0.2.2", 6))
        proxied = ProxiedTransport(transport, header)
        assert proxied.get_extra_info("peername") == ("192.0.2.1", 5)
        assert proxied.get_extra_info("sockname") == ("192.0.2.2", 6)
        assert proxied.get_extra_info("proxy_header") is header
        assert proxied.get_extra_info("socket") is transport.get_extra_info("socket")
        other = asyncio.Protocol()
        proxied.set_protocol(other)
        assert proxied.get_protocol() is other is transport.get_protocol()
        proxied.pause_reading()
        assert not proxied.is_reading()
        proxied.resume_reading()
        assert proxied.is_reading()
        proxied.set_write_buffer_limits(high=1000, low=100)
        assert proxied.get_write_buffer_limits() == (100, 1000)
        assert proxied.get_write_buffer_size() == 0
        proxied.write(b"a")
        proxied.writelines([b"b", b"c"])
        assert proxied.can_write_eof()
        assert not proxied.is_closing()
        proxied.write_eof()
        assert await read_until_eof(peer) == b"abc"
        proxied.abort()
        assert proxied.is_closing()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_proxied_transport_without_addresses_reports_the_socket() -> None:
    async def main() -> None:
        server, transport, _ = await connected_pair()
        proxied = ProxiedTransport(transport, ProxyHeader(2, "LOCAL", "UNSPEC"))
        assert proxied.get_extra_info("peername") == transport.get_extra_info("peername")
        assert proxied.get_extra_info("sockname") == transport.get_extra_info("sockname")
        proxied.close()
        assert transport.is_closing()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_tls_handoff_replays_data_eof_and_loss_in_order() -> None:
    async def main() -> None:
        server, transport, _ = await connected_pair()
        handoff = TLSHandoff()
        handoff.data_received(b"GET / ")
        handoff.data_received(b"HTTP/1.1\r\n")
        assert handoff.eof_received() is True
        recorder = Recorder()
        handoff.replay(recorder, transport)
        assert recorder.events.get_nowait() == b"GET / "
        assert recorder.events.get_nowait() == b"HTTP/1.1\r\n"
        assert recorder.events.get_nowait() == b"<eof>"
        assert transport.is_closing()  # the protocol did not keep the half-closed connection
        lost = TLSHandoff()
        error = ConnectionResetError()
        lost.connection_lost(error)
        later = Recorder()
        lost.replay(later, transport)
        assert later.lost == [error]
        server.close()
        await server.wait_closed()

    asyncio.run(main())
