"""An RFC 8441 WebSocket-over-HTTP/2 client for tests: an h2-library connection (TLS with ALPN
h2, or h2c prior knowledge) that opens one Extended CONNECT stream and carries wsproto frames
in its DATA frames."""

from __future__ import annotations

import socket
import ssl

import h2.events as h2e
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import Event
from wsproto.extensions import PerMessageDeflate


class H2WebSocketClient:
    """Opens one Extended CONNECT stream and speaks WebSocket over it."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None, path: str = "/chat?x=1",
                 headers: list[tuple[str, str]] | None = None, end_stream: bool = False,
                 deflate: bool = False, timeout: float = 5.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if context is not None:
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.flush()
        self.pending: list[h2e.Event] = []
        self.connect_enabled = False
        while not self.connect_enabled:
            self.pump()
        self.stream_id = self.h2.get_next_available_stream_id()
        request = [
            (":method", "CONNECT"), (":protocol", "websocket"),
            (":scheme", "https" if context else "http"), (":path", path),
            (":authority", "127.0.0.1"), ("sec-websocket-version", "13"),
        ]
        if deflate:
            request.append(("sec-websocket-extensions", "permessage-deflate"))
        request.extend(headers or [])
        self.h2.send_headers(self.stream_id, request, end_stream=end_stream)
        self.flush()
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self.body = b""
        self.ended = False
        self.reset: int | None = None
        while not self.status:
            self.pump()
        extensions = []
        if "sec-websocket-extensions" in self.response_headers:
            extension = PerMessageDeflate()
            extension.finalize(self.response_headers["sec-websocket-extensions"])
            extensions.append(extension)
        self.ws = Connection(ConnectionType.CLIENT, extensions=extensions)
        self.events: list[Event] = []
        if self.status == 200 and self.body:
            # WebSocket bytes that came in the same read as the response head.
            self.ws.receive_data(self.body)
            self.events.extend(self.ws.events())
            self.body = b""

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        for event in self.h2.receive_data(data):
            if isinstance(event, h2e.RemoteSettingsChanged):
                setting = event.changed_settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL)
                if setting is not None and setting.new_value == 1:
                    self.connect_enabled = True
            elif isinstance(event, h2e.ResponseReceived):
                headers = dict(event.headers)  # type: ignore[arg-type]
                self.status = int(headers.pop(":status"))
                self.response_headers = headers
            elif isinstance(event, h2e.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if hasattr(self, "ws") and self.status == 200 and event.data:
                    self.ws.receive_data(event.data)
                    self.events.extend(self.ws.events())
                else:
                    self.body += event.data
            elif isinstance(event, h2e.StreamEnded):
                self.ended = True
            elif isinstance(event, h2e.StreamReset):
                self.reset = event.error_code
                self.ended = True
        self.flush()

    def send(self, event: Event) -> None:
        self.h2.send_data(self.stream_id, self.ws.send(event))
        self.flush()

    def next_event(self) -> Event:
        while not self.events:
            self.pump()
        return self.events.pop(0)

    def wait_ended(self) -> None:
        while not self.ended:
            self.pump()

    def close(self) -> None:
        self.sock.close()
