"""WebSocket over HTTP/2 (RFC 8441 Extended CONNECT) against a real server, with the h2-library
client of ws_h2_client.py that carries wsproto frames in the DATA frames of one stream."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import h2.events as h2e
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from tests.helpers import run_server
from tests.integration.test_websocket import echo_app
from tests.integration.ws_h2_client import H2WebSocketClient

# Every test here runs once per HTTP/2 engine (nghttp2, h2): see the http2_engine fixture.
pytestmark = pytest.mark.usefixtures("http2_engine")


@pytest.fixture
def h2_server(tls_files: dict[str, str]) -> Any:
    def start(app: Any = echo_app, **kwargs: Any) -> Any:
        return run_server(app, ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
                          protocols="h1,h2", **kwargs)
    return start


def test_echo_over_extended_connect(h2_server: Any, client_ssl_context: ssl.SSLContext) -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await echo_app(scope, receive, send)

    with h2_server(app) as server:
        client = H2WebSocketClient(server.port, client_ssl_context, deflate=True)
        assert client.status == 200
        assert "permessage-deflate" in client.response_headers["sec-websocket-extensions"]
        client.send(TextMessage(data="hello h2"))
        assert client.next_event() == TextMessage(data="hello h2")
        payload = bytes(range(256)) * 400  # bigger than one DATA frame and the initial window
        client.send(BytesMessage(data=payload))
        received = b""
        while len(received) < len(payload):
            event = client.next_event()
            assert isinstance(event, BytesMessage)
            received += event.data
        assert received == payload
        client.send(CloseConnection(code=1000, reason="bye"))
        event = client.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1000
        client.wait_ended()
        assert client.reset in (None, 0)  # RFC 9113 §8.1: RST_STREAM(NO_ERROR) may follow
        client.close()
    scope = scopes[0]
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "wss"
    assert scope["path"] == "/chat"
    assert scope["query_string"] == b"x=1"
    assert ("host", "127.0.0.1") in [(k.decode(), v.decode()) for k, v in scope["headers"]]


def test_client_close_then_end_stream_keeps_the_connection(
        h2_server: Any, client_ssl_context: ssl.SSLContext) -> None:
    """Chromium's close: the client's close frame, the server's reply ending the stream, then
    the client's END_STREAM. The close frame's window was handed back once when the answered
    stream was retired (RFC 9113 §6.9): the bridge consuming it afterwards must not hand it back
    again (a negative acknowledgement killed the connection on both engines)."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await echo_app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"still here"})

    with h2_server(app) as server:
        client = H2WebSocketClient(server.port, client_ssl_context)
        assert client.status == 200
        client.send(TextMessage(data="ping"))
        assert client.next_event() == TextMessage(data="ping")
        client.send(CloseConnection(code=1000, reason="done"))
        event = client.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1000
        client.wait_ended()
        client.h2.end_stream(client.stream_id)
        client.flush()
        # The same connection still serves a request.
        stream_id = client.h2.get_next_available_stream_id()
        client.h2.send_headers(stream_id, [(":method", "GET"), (":scheme", "https"),
                                           (":path", "/"), (":authority", "127.0.0.1")],
                               end_stream=True)
        client.flush()
        status = None
        while status is None:
            data = client.sock.recv(65536)
            assert data, "the server closed the connection"
            for h2_event in client.h2.receive_data(data):
                assert not isinstance(h2_event, h2e.ConnectionTerminated), h2_event
                if isinstance(h2_event, h2e.ResponseReceived) and h2_event.stream_id == stream_id:
                    status = dict(h2_event.headers)[":status"]
            client.flush()
        assert status == "200"
        client.close()


def test_h2c_prior_knowledge_websocket() -> None:
    with run_server(echo_app, protocols="h1,h2") as server:
        client = H2WebSocketClient(server.port)
        assert client.status == 200
        client.send(Ping(payload=b"p"))
        assert client.next_event().payload == b"p"  # type: ignore[attr-defined]
        client.close()


def test_app_close_and_denial_over_h2(h2_server: Any, client_ssl_context: ssl.SSLContext) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/deny":
            await send({"type": "websocket.http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "websocket.http.response.body", "body": b"no", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"pe"})
        elif scope["path"] == "/reject":
            await send({"type": "websocket.close"})
        else:
            await send({"type": "websocket.accept", "subprotocol": "chat"})
            await send({"type": "websocket.close", "code": 4002, "reason": "done"})

    with h2_server(app) as server:
        client = H2WebSocketClient(server.port, client_ssl_context, path="/deny")
        assert client.status == 401
        client.wait_ended()
        assert client.body == b"nope"
        client.close()

        client = H2WebSocketClient(server.port, client_ssl_context, path="/reject")
        assert client.status == 403
        client.close()

        client = H2WebSocketClient(server.port, client_ssl_context, path="/",
                                   headers=[("sec-websocket-protocol", "chat, other")])
        assert client.status == 200
        assert client.response_headers["sec-websocket-protocol"] == "chat"
        event = client.next_event()
        assert isinstance(event, CloseConnection) and (event.code, event.reason) == (4002, "done")
        client.send(event.response())
        client.wait_ended()
        client.close()


@pytest.mark.parametrize(
    ("headers", "end_stream", "status"),
    [
        ([("sec-websocket-version", "8")], False, 400),  # a second, unsupported version
        ([], True, 400),  # END_STREAM on the CONNECT: no stream left for the WebSocket
    ],
    ids=["version", "ended"],
)
def test_bad_extended_connect(h2_server: Any, client_ssl_context: ssl.SSLContext,
                              headers: list[tuple[str, str]], end_stream: bool, status: int) -> None:
    with h2_server() as server:
        client = H2WebSocketClient(server.port, client_ssl_context, headers=headers,
                                   end_stream=end_stream)
        assert client.status == status
        if headers:
            # A repeated or unsupported version: name the one we speak (RFC 6455 §4.4).
            assert client.response_headers["sec-websocket-version"] == "13"
        client.close()


def test_unknown_protocol_is_501(h2_server: Any, client_ssl_context: ssl.SSLContext) -> None:
    with h2_server() as server:
        client = H2WebSocketClient.__new__(H2WebSocketClient)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        client_ssl_context.set_alpn_protocols(["h2"])
        client.sock = client_ssl_context.wrap_socket(sock, server_hostname="127.0.0.1")
        client.h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        client.h2.initiate_connection()
        client.connect_enabled = False
        client.status = 0
        client.flush()
        while not client.connect_enabled:
            client.pump()
        client.h2.send_headers(1, [(":method", "CONNECT"), (":protocol", "webtransport"),
                                   (":scheme", "https"), (":path", "/"),
                                   (":authority", "127.0.0.1")])
        client.flush()
        while not client.status:
            client.pump()
        assert client.status == 501
        client.close()


def test_protocol_error_and_shutdown_over_h2(h2_server: Any, client_ssl_context: ssl.SSLContext) -> None:
    with h2_server(ws_close_timeout=0.2) as server:
        bad = H2WebSocketClient(server.port, client_ssl_context)
        # An unmasked frame (RFC 6455 §5.1) on the stream: close 1002, then the stream ends.
        bad.h2.send_data(bad.stream_id, b"\x81\x02hi")
        bad.flush()
        event = bad.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1002
        bad.wait_ended()
        bad.close()

        client = H2WebSocketClient(server.port, client_ssl_context)
        client.send(TextMessage(data="x"))
        assert client.next_event() == TextMessage(data="x")
        server.server.should_exit = True
        event = client.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1012
        # GOAWAY followed: h2 lets this client send nothing more, so the server's close
        # handshake times out and the connection ends.
        while client.sock.recv(65536):
            pass
        client.close()


def test_ws_none_disables_extended_connect(tls_files: dict[str, str],
                                           client_ssl_context: ssl.SSLContext) -> None:
    with run_server(echo_app, ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
                    protocols="h1,h2", ws="none") as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        client_ssl_context.set_alpn_protocols(["h2"])
        sock = client_ssl_context.wrap_socket(sock, server_hostname="127.0.0.1")
        conn = H2Connection(H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        settings: dict[int, int] = {}
        while not settings:
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2e.RemoteSettingsChanged):
                    settings = {k: v.new_value for k, v in event.changed_settings.items()}
        assert settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 0
        sock.close()
