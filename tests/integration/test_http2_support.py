"""A raw HTTP/2 client over a real socket, built from h2's own framing layers (hyperframe, hpack).

Error-path and conformance tests need frames that a well-behaved client library refuses to
send, so this client writes whatever frame it is given and reads the server's frames as-is.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
Headers = list[tuple[bytes, bytes]]


def request_headers(path: bytes = b"/", method: bytes = b"GET", **extra: bytes) -> Headers:
    headers = [(b":method", method), (b":scheme", b"http"), (b":path", path),
               (b":authority", b"127.0.0.1")]
    headers += [(name.replace("_", "-").encode(), value) for name, value in extra.items()]
    return headers


class RawH2:
    """Speaks HTTP/2 frame by frame; sends exactly what the test says."""

    def __init__(
        self,
        port: int,
        settings: dict[int, int] | None = None,
        preface: bool = True,
        tls: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.buffer = b""
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.frames: list[Frame] = []
        self.stashed: dict[int, list[Frame]] = {}  # other streams' frames seen by stream_outcome
        self.closed = False
        if preface:
            frame = SettingsFrame(0)
            frame.settings = settings or {}
            self.sock.sendall(PREFACE + frame.serialize())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------------

    def send(self, *frames: Frame) -> None:
        self.send_raw(b"".join(frame.serialize() for frame in frames))

    def send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def headers_frame(self, stream_id: int, headers: Headers, end_stream: bool = True,
                      end_headers: bool = True) -> HeadersFrame:
        frame = HeadersFrame(stream_id)
        frame.data = self.encoder.encode(headers)
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame

    def request(self, stream_id: int, headers: Headers | None = None, body: bytes | None = None,
                end_stream: bool = True) -> None:
        frames: list[Frame] = [
            self.headers_frame(stream_id, headers or request_headers(),
                               end_stream=end_stream and body is None)
        ]
        if body is not None:
            data = DataFrame(stream_id, body)
            if end_stream:
                data.flags.add("END_STREAM")
            frames.append(data)
        self.send(*frames)

    def data(self, stream_id: int, body: bytes, end_stream: bool = False) -> DataFrame:
        frame = DataFrame(stream_id, body)
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame

    # -- receiving -------------------------------------------------------------------------------

    def read_frame(self) -> Frame | None:
        """The next frame from the server, None when the connection closed (or timed out)."""
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                    self.buffer = self.buffer[9 + length :]
                    if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                        ack = SettingsFrame(0)
                        ack.flags.add("ACK")
                        self.send(ack)
                    if isinstance(frame, HeadersFrame | ContinuationFrame):
                        frame.decoded = self.decoder.decode(frame.data, raw=True)  # type: ignore[attr-defined]
                    self.frames.append(frame)
                    return frame
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError, ssl.SSLError, OSError):
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buffer += chunk

    def wait_for(self, kind: type[Frame], stream_id: int | None = None,
                 flag: str | None = None) -> Frame | None:
        """Read until a frame of this kind (on this stream, with this flag) arrives."""
        while True:
            frame = self.read_frame()
            if frame is None:
                return None
            if isinstance(frame, kind) and (stream_id is None or frame.stream_id == stream_id) and (
                flag is None or flag in frame.flags
            ):
                return frame

    def goaway(self) -> GoAwayFrame | None:
        """Read until GOAWAY; None if the server closed without one."""
        frame = self.wait_for(GoAwayFrame)
        return frame if isinstance(frame, GoAwayFrame) else None

    def stream_outcome(self, stream_id: int) -> dict[str, Any]:
        """Read one stream to its end: status, headers, body, trailers, or its reset code."""
        out: dict[str, Any] = {"headers": [], "body": b"", "trailers": [], "reset": None,
                               "informational": [], "goaway": None}
        backlog = self.stashed.pop(stream_id, [])
        while True:
            frame = backlog.pop(0) if backlog else self.read_frame()
            if frame is None:
                return out
            if frame.stream_id not in (0, stream_id):
                self.stashed.setdefault(frame.stream_id, []).append(frame)
                continue
            if isinstance(frame, GoAwayFrame):
                out["goaway"] = frame.error_code
                if frame.last_stream_id < stream_id or frame.error_code:
                    return out
                continue
            if isinstance(frame, WindowUpdateFrame) or frame.stream_id != stream_id:
                continue
            if isinstance(frame, RstStreamFrame):
                out["reset"] = frame.error_code
                return out
            if isinstance(frame, HeadersFrame):
                headers = dict(frame.decoded)  # type: ignore[attr-defined]
                if b":status" in headers and int(headers[b":status"]) < 200:
                    out["informational"].append(frame.decoded)  # type: ignore[attr-defined]
                elif "status" in out:
                    out["trailers"] = frame.decoded  # type: ignore[attr-defined]
                else:
                    out["status"] = int(headers[b":status"])
                    out["headers"] = frame.decoded  # type: ignore[attr-defined]
            elif isinstance(frame, DataFrame):
                out["body"] += frame.data
                if frame.data:
                    # Keep the server's view of our windows open.
                    self.send(WindowUpdateFrame(0, len(frame.data)),
                              WindowUpdateFrame(stream_id, len(frame.data)))
            if "END_STREAM" in frame.flags:
                return out

    def ping(self, payload: bytes = b"12345678") -> None:
        self.send(PingFrame(0, payload))

    def is_alive(self) -> bool:
        """PING the server and wait for the ACK: the connection still works."""
        self.ping(b"alive!!!")
        while True:
            frame = self.read_frame()
            if frame is None:
                return False
            if isinstance(frame, PingFrame) and "ACK" in frame.flags and frame.opaque_data == b"alive!!!":
                return True
            if isinstance(frame, GoAwayFrame):
                return False
