"""A fast path beside wsproto for the common WebSocket frame, both ways.

wsproto is the engine: handshake extensions, permessage-deflate, fragmentation, control
frames, the close handshake and every protocol error. The fast path covers exactly:

- inbound: a complete, final (FIN), masked text or binary frame with RSV1-3 clear, whose
  length is minimally encoded and at most the message size limit, whose text is valid UTF-8,
  arriving while wsproto is idle (no buffered bytes, no frame or fragmented message in
  progress, connection OPEN);
- outbound: an unfragmented, uncompressed text or binary frame on a connection without
  permessage-deflate, while wsproto's state is OPEN.

Everything else, from the first frame that does not qualify on, goes to wsproto unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from wsproto import ConnectionState
from wsproto.connection import Connection

# RFC 6455 §5.2: first byte FIN | opcode (RSV clear); second byte MASK | payload length.
FIN_TEXT = 0x81
FIN_BINARY = 0x82
MASK_BIT = 0x80

_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]


def _unmask_translate(payload: bytes, key: bytes) -> bytes:
    """XOR payload with the 4-byte masking key, repeated (RFC 6455 §5.3)."""
    out = bytearray(payload)
    out[::4] = payload[::4].translate(_XOR_TABLES[key[0]])
    out[1::4] = payload[1::4].translate(_XOR_TABLES[key[1]])
    out[2::4] = payload[2::4].translate(_XOR_TABLES[key[2]])
    out[3::4] = payload[3::4].translate(_XOR_TABLES[key[3]])
    return bytes(out)


unmask: Callable[[bytes, bytes], bytes]
try:  # the websockets package's C helper, when installed (the same XOR, about 30x cheaper)
    from websockets.speedups import apply_mask as unmask
except ImportError:  # pragma: no cover - websockets is a test dependency
    unmask = _unmask_translate


def wsproto_idle(conn: Connection) -> bool:
    """True when wsproto holds no partial frame, no fragmented message and is OPEN.

    Reads wsproto 1.2's internals (FrameProtocol, FrameDecoder, MessageDecoder); the unit
    tests pin these names so an upgrade that moves them fails loudly.
    """
    if conn.state is not ConnectionState.OPEN:
        return False
    proto = conn._proto
    decoder = proto._frame_decoder
    return (
        decoder.header is None
        and not decoder.buffer.buffer
        and proto._message_decoder.opcode is None
    )


def parse_frames(
    data: bytes, max_size: int, deliver: Callable[[dict[str, object]], None]
) -> int:
    """Deliver the fast-path frames at the head of data; return how many bytes they used.

    Stops at the first frame that is incomplete or does not qualify (see the module doc);
    the caller hands data[returned:] to wsproto.
    """
    pos = 0
    end = len(data)
    while end - pos >= 6:  # 2-byte header + 4-byte masking key at the least
        first = data[pos]
        second = data[pos + 1]
        # §5.2: FIN set, RSV1-3 clear (no extension data), opcode 0x1 or 0x2;
        # §5.1: a client frame must be masked (otherwise wsproto fails it with 1002).
        if (first != FIN_TEXT and first != FIN_BINARY) or second < MASK_BIT:
            break
        length = second & 0x7F
        head = pos + 2
        if length == 126:
            if end - head < 6:
                break
            length = (data[head] << 8) | data[head + 1]
            head += 2
            if length < 126:
                break  # §5.2: "the minimal number of bytes MUST be used"; wsproto rejects it
        elif length == 127:
            if end - head < 12:
                break
            length = int.from_bytes(data[head:head + 8], "big")
            head += 8
            if length < 65536 or length >> 63:
                break  # §5.2: minimal encoding, and the most significant bit MUST be 0
        if length > max_size:
            break  # wsproto counts it (MessageSizeLimit) and closes 1009
        stop = head + 4 + length
        if stop > end:
            break  # incomplete: wsproto buffers it and streams it through the extensions
        payload = unmask(data[head + 4:stop], data[head:head + 4]) if length else b""
        if first == FIN_TEXT:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                break  # §8.1: invalid UTF-8; wsproto fails the connection with 1007
            deliver({"type": "websocket.receive", "text": text})
        else:
            deliver({"type": "websocket.receive", "bytes": payload})
        pos = stop
    return pos


def encode_frame(payload: bytes, binary: bool) -> bytes:
    """One unmasked, final server frame (RFC 6455 §5.2; §5.1: a server never masks)."""
    first = FIN_BINARY if binary else FIN_TEXT
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", first, 126, length) + payload
    return struct.pack("!BBQ", first, 127, length) + payload
