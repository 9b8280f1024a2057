"""A small HTTP/3 test client on aioquic: real QUIC over a real UDP socket to the test server."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3Connection, H3Stream, HeadersState
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset

GOAWAY = 0x7


class ClientH3Connection(H3Connection):
    """aioquic's client H3Connection, taking an interim (1xx) response for what it is.

    aioquic 1.3 (Python 3.10) treats the first HEADERS as the final response and the next one as
    trailers; 1.7 knows that interim responses precede the final one (RFC 9114 §4.1).
    """

    def _handle_request_or_push_frame(
        self, frame_type: int, frame_data: bytes | None, stream: H3Stream, stream_ended: bool
    ) -> list[H3Event]:
        events = super()._handle_request_or_push_frame(frame_type, frame_data, stream, stream_ended)
        for event in events:
            if isinstance(event, HeadersReceived) and dict(event.headers).get(b":status", b"")[:1] == b"1":
                stream.headers_recv_state = HeadersState.INITIAL
        return events


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[tuple[int, list[tuple[bytes, bytes]]]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    reset_code: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)


class H3Client(QuicConnectionProtocol):
    """Collects HTTP/3 responses per stream, stream resets, and the server's GOAWAY."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = ClientH3Connection(self._quic)
        self.responses: dict[int, Response] = {}
        self.terminated: ConnectionTerminated | None = None
        self.closed_event = asyncio.Event()
        self.goaway_id: int | None = None
        self.goaway_event = asyncio.Event()
        self.uni_buffers: dict[int, bytearray] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            self.closed_event.set()
            for response in self.responses.values():
                response.done.set()
        elif isinstance(event, StreamReset) and event.stream_id in self.responses:
            response = self.responses[event.stream_id]
            response.reset_code = event.error_code
            response.done.set()
        elif isinstance(event, StreamDataReceived) and event.stream_id % 4 == 3:
            self.scan_control(event.stream_id, event.data)
        for h3_event in self.h3.handle_event(event):
            response = self.responses.get(getattr(h3_event, "stream_id", -1))
            if response is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                status = int(dict(h3_event.headers).get(b":status", b"0"))
                if 100 <= status < 200:
                    response.informational.append((status, h3_event.headers))
                elif response.status == 0:
                    response.status = status
                    response.headers = h3_event.headers
                else:
                    response.trailers = h3_event.headers
            elif isinstance(h3_event, DataReceived):
                response.body += h3_event.data
            if getattr(h3_event, "stream_ended", False):
                response.done.set()

    def scan_control(self, stream_id: int, data: bytes) -> None:
        """Find GOAWAY on the server's control stream (aioquic's H3Connection drops it)."""
        buffer = self.uni_buffers.setdefault(stream_id, bytearray())
        buffer += data
        buf = Buffer(data=bytes(buffer))
        try:
            if buf.pull_uint_var() != 0:  # not the control stream
                return
            while not buf.eof():
                frame_type = buf.pull_uint_var()
                length = buf.pull_uint_var()
                payload = buf.pull_bytes(length)
                if frame_type == GOAWAY:
                    self.goaway_id = Buffer(data=payload).pull_uint_var()
                    self.goaway_event.set()
        except BufferReadError:
            return

    def start_request(
        self,
        method: str = "GET",
        path: str = "/",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
        end: bool = True,
        authority: bytes = b"localhost",
    ) -> int:
        stream_id = self._quic.get_next_available_stream_id()
        self.responses[stream_id] = Response()
        self.h3.send_headers(
            stream_id,
            [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", authority),
                (b":path", path.encode()),
                *(headers or []),
            ],
            end_stream=body is None and end,
        )
        if body is not None:
            self.h3.send_data(stream_id, body, end_stream=end)
        self.transmit()
        return stream_id

    async def request(self, method: str = "GET", path: str = "/", **kwargs: Any) -> Response:
        stream_id = self.start_request(method, path, **kwargs)
        response = self.responses[stream_id]
        await asyncio.wait_for(response.done.wait(), 10)
        return response

    def send_body(self, stream_id: int, data: bytes, end: bool) -> None:
        self.h3.send_data(stream_id, data, end_stream=end)
        self.transmit()


def client_configuration(cafile: str, **kwargs: Any) -> QuicConfiguration:
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=["h3"], server_name="localhost", **kwargs
    )
    configuration.load_verify_locations(cafile)
    configuration.verify_mode = ssl.CERT_REQUIRED
    return configuration


@contextlib.asynccontextmanager
async def h3_connect(port: int, cafile: str, **kwargs: Any) -> AsyncIterator[H3Client]:
    async with connect(
        "127.0.0.1",
        port,
        configuration=client_configuration(cafile, **kwargs),
        create_protocol=H3Client,
        wait_connected=True,
    ) as client:
        yield client  # type: ignore[misc]


def h3_server_kwargs(tls_files: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    """run_server() options for an h1,h2,h3 server with the test certificate."""
    return {
        "ssl_certfile": tls_files["certfile"],
        "ssl_keyfile": tls_files["keyfile"],
        "protocols": "h1,h2,h3",
        "log_level": "warning",
        **kwargs,
    }
