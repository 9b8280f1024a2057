"""wsproto extensions of WebSocketStream: the message size limit and a bounded permessage-deflate.

`MessageSizeLimit` counts each message's payload after decompression and
`BoundedPerMessageDeflate` (RFC 7692) never inflates past that limit, so `--ws-max-size` holds
for compressed messages too; a message past it closes the connection with 1009.
"""

from __future__ import annotations

import zlib

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits


class MessageSizeLimit(Extension):
    """Counts each message's payload after decompression; past the limit: close 1009.

    Installed as an always-enabled, never-negotiated extension behind permessage-deflate so it
    sees every inbound data frame as wsproto delivers it, before a message is assembled.
    A data frame that belongs to no message (a continuation outside one, a new message inside
    another) is not counted: wsproto fails it with 1002. Its state is the same whether or not
    it saw the complete messages before (the fast path hands those past it).
    """

    name = "roadrunner-message-size"

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0
        self.counting = False
        self.in_message = False  # a first frame without FIN arrived, its final one has not

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False  # server side only; never offered nor negotiated

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        # Control frames may interleave with a fragmented message (RFC 6455 §5.4).
        if opcode.iscontrol():
            self.counting = False
            return RsvBits(False, False, False)
        # §5.4: a message is one frame with FIN, or a first frame and continuations up to FIN.
        # A frame out of that order is a protocol error (1002), not part of any message's size.
        # (wsproto calls this again for the same header while the header is incomplete.)
        self.counting = (opcode is Opcode.CONTINUATION) is self.in_message
        if self.counting and not self.in_message:
            self.size = 0
        return RsvBits(False, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if self.counting:
            self.size += len(data)
            if self.size > self.max_size:
                return CloseReason.MESSAGE_TOO_BIG
        return data

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if self.counting:
            self.in_message = not fin
        return None


class BoundedPerMessageDeflate(PerMessageDeflate):
    """permessage-deflate (RFC 7692) that never inflates past the message size limit.

    wsproto inflates a frame chunk without bound, so a small deflate bomb would allocate
    gigabytes before any size check; here each chunk inflates into the remaining budget.
    It also keeps a fragmented message's compression state across interleaved control frames.
    """

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size
        self.inflated = 0

    def accept(self, offer: str) -> bool | None | str:
        """Negotiate one offer (RFC 7692 §7.1); decline what zlib cannot honour."""
        client_bits: int | None = None
        server_bits: int | None = None
        params = [part.strip() for part in offer.split(";")[1:] if part.strip()]
        seen: set[str] = set()
        client_no_context = server_no_context = False
        for param in params:
            name, _, value = (p.strip().strip('"') for p in param.partition("="))
            if name in seen:
                return None  # RFC 7692 §7: a repeated parameter makes the offer invalid
            seen.add(name)
            if name == "client_no_context_takeover" and not value:
                client_no_context = True
            elif name == "server_no_context_takeover" and not value:
                server_no_context = True
            elif name == "client_max_window_bits":
                if value and not (value.isdigit() and 8 <= int(value) <= 15):
                    return None
                client_bits = int(value) if value else 15
            elif name == "server_max_window_bits":
                if not (value.isdigit() and 8 <= int(value) <= 15):
                    return None
                server_bits = int(value)
            else:
                return None  # RFC 7692 §7.1: unknown parameter, decline this offer
        if server_bits == 8:
            return None  # zlib cannot deflate with a 256-byte window; decline (§7.1.2.1)
        self.client_no_context_takeover = client_no_context
        self.server_no_context_takeover = server_no_context
        response = []
        if client_no_context:
            response.append("client_no_context_takeover")
        if server_no_context:
            response.append("server_no_context_takeover")
        if server_bits is not None:
            self.server_max_window_bits = server_bits
            response.append(f"server_max_window_bits={server_bits}")
        if client_bits is not None and client_bits < 15:
            # Inflating with a larger window than the peer deflates with is always safe.
            response.append(f"client_max_window_bits={client_bits}")
        self._enabled = True
        return "; ".join(response)

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if opcode.iscontrol():
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR  # RFC 7692 §6: RSV1 only on data frames
            self._inbound_is_compressible = False
            return RsvBits(True, False, False)
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def inflate(self, data: bytes) -> bytes | CloseReason:
        assert self._decompressor is not None
        budget = self.max_size - self.inflated + 1
        try:
            out = self._decompressor.decompress(data, budget)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self.inflated += len(out)
        if self.inflated > self.max_size or self._decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self.inflate(bytes(data))

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not fin or not self._inbound_is_compressible:
            return None
        compressed, self._inbound_compressed = self._inbound_compressed, None
        if not compressed:
            self.inflated = 0
            return None
        # RFC 7692 §7.2.2: append the empty stored block the sender removed.
        tail = self.inflate(b"\x00\x00\xff\xff")
        self.inflated = 0
        if self.client_no_context_takeover:
            self._decompressor = None
        return tail
