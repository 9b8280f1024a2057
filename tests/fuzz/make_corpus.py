"""Writes the seed corpus (tests/fuzz/corpus/<harness>/): small, valid, hand-made inputs.

Run `python tests/fuzz/make_corpus.py` after changing a harness's input format; the files are
checked in so `make fuzz` and CI start from them.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CORPUS = Path(__file__).parent / "corpus"


def write(name: str, seeds: list[bytes]) -> None:
    folder = CORPUS / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for data in seeds:
        (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


# -- WebSocket ---------------------------------------------------------------------------------


def ws_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False,
             key: bytes = b"\x00\x00\x00\x00") -> bytes:
    """A masked client frame (RFC 6455 §5.2); the zero key leaves the payload readable."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0xFE)) + struct.pack("!H", size)
    else:
        head = bytes((first, 0xFF)) + struct.pack("!Q", size)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def deflated(payload: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def websocket_seeds() -> list[bytes]:
    text, binary, close = 0x1, 0x2, 0x8
    key = b"\x12\x34\x56\x78"
    return [
        b"\x00" + ws_frame(text, b"hello") + ws_frame(binary, b"\x00\xff" * 3),
        b"\x08" + ws_frame(text, "h\u00e9llo".encode(), key=key) + ws_frame(close, b"\x03\xe8bye"),
        b"\x02" + ws_frame(binary, b"x" * 200) + ws_frame(binary, b"y" * 1001),
        b"\x10" + ws_frame(text, b"frag", fin=False) + ws_frame(0x9, b"ping")
        + ws_frame(0x0, b"ment") + ws_frame(text, b"after"),
        b"\x01" + ws_frame(text, deflated(b"compressed " * 20), rsv1=True) + ws_frame(text, b"plain"),
        b"\x18" + ws_frame(text, b"\xce\xbb") + ws_frame(text, b"\xff bad utf-8"),
        b"\x04" + ws_frame(binary, b"z" * 70000) + ws_frame(0xA, b"pong"),
        # A continuation with no message in progress, after a fast-path and after a wsproto
        # message (a disagreement make fuzz found: 1002 served, 1009 through wsproto alone).
        b"\x00" + ws_frame(text, b"abcde") + bytes((0x00, 0xFF)) + struct.pack("!Q", 1 << 55)
        + bytes(4) + b"z" * 125,
        b"\x00" + ws_frame(text, b"f" * 50, fin=False) + ws_frame(0x0, b"g" * 50)
        + ws_frame(0x0, b"z" * 100),
    ]


# -- PROXY protocol --------------------------------------------------------------------------


def proxy_seeds() -> list[bytes]:
    from roadrunner.proxy_protocol import build_v1, build_v2

    v4 = (("198.51.100.7", 51000), ("203.0.113.1", 443))
    v6 = (("2001:db8::7", 51000), ("2001:db8::1", 8443))
    unix = b"\r\n\r\n\x00\r\nQUIT\n\x21\x31\x00\xd8" + b"/tmp/a".ljust(108, b"\x00") + b"/tmp/b".ljust(108, b"\x00")
    auto, v1, v2 = 0x02 | 0xFC, 0x00 | 0x20, 0x01 | 0x10
    return [
        bytes((auto,)) + build_v1(*v4),
        bytes((v1,)) + build_v1(*v6),
        bytes((auto,)) + build_v1(None, None),
        bytes((v2,)) + build_v2(*v4),
        bytes((auto,)) + build_v2(*v6, tlvs=[(0x02, b"example.com"), (0x04, b"")]),
        bytes((auto,)) + build_v2(None, None),
        bytes((v2,)) + build_v2(*v4, local=True),
        bytes((auto,)) + unix,
    ]


# -- HTTP/2 ----------------------------------------------------------------------------------


def h2_frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """One frame in the harness's input format: type, flags, stream id, 16-bit length."""
    return struct.pack("!BBIH", kind, flags, stream_id, len(payload)) + payload


def http2_seeds() -> list[bytes]:
    from hpack import Encoder

    data, headers, rst, settings, ping, goaway, window, continuation = 0, 1, 3, 4, 6, 7, 8, 9
    end_stream, end_headers, padded, priority = 0x1, 0x4, 0x8, 0x20
    def encode(fields: list[tuple[bytes, bytes]]) -> bytes:
        return Encoder().encode(fields)  # a fresh encoder only adds to the peer's table

    def block(path: bytes, method: bytes = b"GET", extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
        fields = [(b":method", method), (b":scheme", b"http"), (b":path", path),
                  (b":authority", b"example.com"), *(extra or [])]
        return encode(fields)

    hello = h2_frame(settings, 0, 0, struct.pack("!HI", 3, 100) + struct.pack("!HI", 4, 65535))
    get = h2_frame(headers, end_stream | end_headers, 1, block(b"/"))
    post = (h2_frame(headers, end_headers, 3, block(b"/echo", b"POST", [(b"content-length", b"5")]))
            + h2_frame(data, 0, 3, b"hel") + h2_frame(data, end_stream, 3, b"lo"))
    split = block(b"/echo", b"PUT", [(b"x-long", b"v" * 40)])
    continued = (h2_frame(headers, 0, 5, split[:10]) + h2_frame(continuation, end_headers, 5, split[10:])
                 + h2_frame(data, end_stream | padded, 5, b"\x03body\x00\x00\x00"))
    prioritized = h2_frame(headers, end_stream | end_headers | priority, 7,
                           struct.pack("!IB", 1, 15) + block(b"/p"))
    return [
        b"\x00" + hello + get,
        b"\x01" + hello + h2_frame(settings, 1, 0, b"") + post + h2_frame(window, 0, 0, struct.pack("!I", 1000)),
        b"\x02" + hello + continued + h2_frame(ping, 0, 0, b"12345678"),
        b"\x03" + hello + prioritized + h2_frame(rst, 0, 7, struct.pack("!I", 8)),
        b"\x00" + hello + post + h2_frame(goaway, 0, 0, struct.pack("!II", 3, 0)),
        b"\x04" + hello + h2_frame(headers, end_headers, 1, block(b"/echo", b"POST"))
        + h2_frame(data, 0, 1, b"x" * 100) + h2_frame(headers, end_stream | end_headers, 1,
                                                          encode([(b"x-trailer", b"1")])),
    ]


# -- QUIC / HTTP/3 ---------------------------------------------------------------------------


def quic_record(kind: int, payload: bytes) -> bytes:
    return struct.pack("!BH", kind, len(payload)) + payload


def quic_seeds() -> list[bytes]:
    import time

    from aioquic.h3.connection import FrameType, encode_frame
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from pylsqpack import Encoder

    raw, initial, stream0, stream4, uni = 0x00, 0x01, 0x02, 0x06, 0x0E
    fin = 0x10
    client = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["h3"]))
    client.connect(("127.0.0.1", 443), now=time.monotonic())
    client_initial = client.datagrams_to_send(now=time.monotonic())[0][0]  # a real ClientHello

    def headers(stream_id: int, fields: list[tuple[bytes, bytes]]) -> bytes:
        _, block = Encoder().encode(stream_id, fields)  # no dynamic table: literals only
        return encode_frame(FrameType.HEADERS, block)

    get = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost"), (b":path", b"/")]
    post = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"localhost"),
            (b":path", b"/echo"), (b"content-length", b"5")]
    dcid = bytes(range(8))
    return [
        quic_record(stream0 | fin, headers(0, get)),
        quic_record(stream4, headers(4, post) + encode_frame(FrameType.DATA, b"hel"))
        + quic_record(stream4 | fin, encode_frame(FrameType.DATA, b"lo")),
        quic_record(uni, b"\x21" + b"\x00" * 3) + quic_record(stream0 | fin, headers(0, get)),
        quic_record(raw, client_initial),
        quic_record(initial, dcid + b"\x01"),  # PING
        quic_record(initial, dcid + b"\x06\x00\x10" + b"\x01\x00\x00\x0c\x03\x03" + b"\x00" * 10),  # CRYPTO
        quic_record(raw, b"\xc0\x0a\x0a\x0a\x0a\x08" + dcid + b"\x00" + b"\x00" * 1200),  # unknown version
        quic_record(raw, b"\x40" + dcid + b"\x00" * 30),  # short header, unknown CID
    ]


# -- HTTP/1.1 --------------------------------------------------------------------------------


def http1_seeds() -> list[bytes]:
    get = b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: seed\r\n\r\n"
    post = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    chunked = (b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n")
    return [
        b"\x00" + get,
        b"\x00" + post,
        b"\x02" + chunked,
        b"\x00" + get + post + chunked,  # pipelined
        b"\x03" + b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x01" + b"OPTIONS * HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
        b"\x00" + b"GET http://example.com/abs HTTP/1.1\r\nHost: example.com\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
    ]


def main() -> None:
    write("websocket", websocket_seeds())
    write("proxy", proxy_seeds())
    write("http2", http2_seeds())
    write("quic", quic_seeds())
    write("http1", http1_seeds())


if __name__ == "__main__":
    main()
