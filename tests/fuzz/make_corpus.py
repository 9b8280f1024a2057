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


def main() -> None:
    write("websocket", websocket_seeds())
    write("proxy", proxy_seeds())


if __name__ == "__main__":
    main()
