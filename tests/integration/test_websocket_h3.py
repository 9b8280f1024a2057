"""WebSocket over HTTP/3 (RFC 9220 Extended CONNECT) against a real server: the aioquic test
client carries wsproto frames in the HTTP/3 DATA frames of one request stream."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aioquic.asyncio.client import connect as quic_connect
from aioquic.h3.connection import ErrorCode, Setting
from aioquic.quic.events import QuicEvent
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, TextMessage
from wsproto.extensions import PerMessageDeflate

from tests.helpers import run_server
from tests.integration.test_http3_helpers import (
    H3Client,
    Response,
    client_configuration,
    h3_server_kwargs,
)
from tests.integration.test_websocket import echo_app as ws_echo_app

TIMEOUT = 5.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """WebSocket echo, and a plain HTTP answer for the requests sharing the connection."""
    if scope["type"] == "websocket":
        await ws_echo_app(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


class WSH3Client(H3Client):
    """The helpers' H3Client, with a wake-up for every QUIC event it handles."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        super().quic_event_received(event)
        self.progress.set()

    def transmit(self) -> None:
        # Paced and timer-driven sends change what the client has sent without an event.
        super().transmit()
        self.progress.set()

    async def until(self, predicate: Callable[[], Any]) -> None:
        # asyncio.wait_for, not asyncio.timeout: the suite runs on Python 3.10 too.
        await asyncio.wait_for(self._until(predicate), TIMEOUT)

    async def _until(self, predicate: Callable[[], Any]) -> None:
        while not predicate():
            self.progress.clear()
            await self.progress.wait()


class H3WebSocket:
    """One Extended CONNECT stream speaking WebSocket through wsproto."""

    def __init__(self, client: WSH3Client, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.response: Response = client.responses[stream_id]
        self.offset = 0
        self.ws: Connection | None = None
        self.events: list[Event] = []

    @classmethod
    async def open(
        cls, client: WSH3Client, path: str = "/chat?x=1", *, protocol: bytes = b"websocket",
        headers: list[tuple[bytes, bytes]] | None = None, deflate: bool = False, end: bool = False,
    ) -> H3WebSocket:
        fields = [(b":protocol", protocol)]
        if headers is None:
            headers = [(b"sec-websocket-version", b"13")]
        fields.extend(headers)
        if deflate:
            fields.append((b"sec-websocket-extensions", b"permessage-deflate"))
        stream_id = client.start_request("CONNECT", path, headers=fields, end=end)
        socket = cls(client, stream_id)
        response = socket.response
        await client.until(lambda: response.status or response.done.is_set())
        if response.status == 200:
            extensions = []
            offered = response.header(b"sec-websocket-extensions")
            if offered:
                extension = PerMessageDeflate()
                extension.finalize(offered.decode())
                extensions.append(extension)
            socket.ws = Connection(ConnectionType.CLIENT, extensions=extensions)
        return socket

    @property
    def status(self) -> int:
        return self.response.status

    def send(self, event: Event) -> None:
        assert self.ws is not None
        self.client.send_body(self.stream_id, self.ws.send(event), end=False)

    def pump(self) -> bool:
        """Feed newly received DATA to wsproto; True when there is an event to return."""
        assert self.ws is not None
        body = self.response.body
        if len(body) > self.offset:
            self.ws.receive_data(bytes(body[self.offset:]))
            self.offset = len(body)
            self.events.extend(self.ws.events())
        return bool(self.events) or self.response.done.is_set()

    async def next_event(self) -> Event:
        await self.client.until(self.pump)
        assert self.events, "the stream ended without another WebSocket event"
        return self.events.pop(0)

    async def receive_message(self) -> str | bytes:
        """One whole message (wsproto may deliver it in parts)."""
        parts: list[Any] = []
        while True:
            event = await self.next_event()
            assert isinstance(event, Message)
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)

    async def wait_ended(self) -> Response:
        await self.client.until(self.response.done.is_set)
        return self.response


def h3_server(tls_files: dict[str, str], server_app: Any = app, **kwargs: Any) -> Any:
    return run_server(server_app, **h3_server_kwargs(tls_files, **kwargs))


@contextlib.asynccontextmanager
async def connect(port: int, tls_files: dict[str, str]) -> AsyncIterator[WSH3Client]:
    async with quic_connect(
        "127.0.0.1", port, configuration=client_configuration(tls_files["cafile"]),
        create_protocol=WSH3Client, wait_connected=True,
    ) as client:
        yield client  # type: ignore[misc]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


async def assert_serves(client: WSH3Client, count: int = 3) -> None:
    """The QUIC connection still answers ordinary requests."""
    responses = await asyncio.gather(*(client.request("GET", f"/after{i}") for i in range(count)))
    assert [(r.status, bytes(r.body)) for r in responses] == [
        (200, f"/after{i}".encode()) for i in range(count)
    ]


def test_echo_text_bytes_and_deflate_over_h3(tls_files: dict[str, str]) -> None:
    scopes: list[dict[str, Any]] = []

    async def recording_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await app(scope, receive, send)

    async def main(port: int) -> None:
        async with connect(port, tls_files) as client:
            assert client.h3._received_settings[Setting.ENABLE_CONNECT_PROTOCOL] == 1
            ws = await H3WebSocket.open(client, deflate=True)
            assert ws.status == 200
            assert b"permessage-deflate" in ws.response.header(b"sec-websocket-extensions")
            assert ws.response.header(b"server") == b"roadrunner"
            ws.send(TextMessage(data="hello h3"))
            assert await ws.receive_message() == "hello h3"
            # Bigger than the stream's flow-control window: credit must come back both ways.
            payload = bytes(range(256)) * 6000
            ws.send(BytesMessage(data=payload))
            assert await ws.receive_message() == payload
            ws.send(Ping(payload=b"p"))
            assert (await ws.next_event()).payload == b"p"  # type: ignore[attr-defined]
            ws.send(CloseConnection(code=1000, reason="bye"))
            event = await ws.next_event()
            assert isinstance(event, CloseConnection) and (event.code, event.reason) == (1000, "bye")
            response = await ws.wait_ended()
            assert response.reset_code is None  # the server ended its half with FIN
            await assert_serves(client)

    with h3_server(tls_files, recording_app, h3_max_stream_data=256 * 1024) as server:
        run(main(server.port))
    scope = scopes[0]
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "3"
    assert scope["scheme"] == "wss"
    assert (scope["path"], scope["query_string"]) == ("/chat", b"x=1")
    assert (b"host", b"localhost") in scope["headers"]
    assert scope["extensions"] == {"websocket.http.response": {}}


def test_subprotocol_and_close_codes_both_ways(tls_files: dict[str, str]) -> None:
    disconnects: list[dict[str, Any]] = []

    async def close_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await app(scope, receive, send)
            return
        await receive()
        subprotocol = "chat" if "chat" in scope["subprotocols"] else None
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        if scope["path"] == "/server-closes":
            await send({"type": "websocket.close", "code": 4002, "reason": "done"})
            return
        disconnects.append(await receive())

    async def main(port: int) -> None:
        async with connect(port, tls_files) as client:
            ws = await H3WebSocket.open(
                client, "/server-closes",
                headers=[(b"sec-websocket-version", b"13"), (b"sec-websocket-protocol", b"chat, other")],
            )
            assert ws.status == 200
            assert ws.response.header(b"sec-websocket-protocol") == b"chat"
            event = await ws.next_event()
            assert isinstance(event, CloseConnection) and (event.code, event.reason) == (4002, "done")
            ws.send(event.response())
            await ws.wait_ended()

            ws = await H3WebSocket.open(client, "/client-closes")
            assert ws.response.header(b"sec-websocket-protocol") is None  # none was offered
            ws.send(CloseConnection(code=4001, reason="client bye"))
            event = await ws.next_event()
            assert isinstance(event, CloseConnection) and event.code == 4001
            await ws.wait_ended()
            await assert_serves(client)

    with h3_server(tls_files, close_app) as server:
        run(main(server.port))
    assert disconnects == [{"type": "websocket.disconnect", "code": 4001, "reason": "client bye"}]


def test_denials_and_bad_requests(tls_files: dict[str, str]) -> None:
    async def deny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await app(scope, receive, send)
            return
        await receive()
        if scope["path"] == "/deny":
            await send({"type": "websocket.http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "websocket.http.response.body", "body": b"no", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"pe"})
        else:
            await send({"type": "websocket.close"})

    async def main(port: int) -> None:
        async with connect(port, tls_files) as client:
            ws = await H3WebSocket.open(client, "/deny")
            response = await ws.wait_ended()
            assert (response.status, bytes(response.body)) == (401, b"nope")

            ws = await H3WebSocket.open(client, "/reject")
            assert (await ws.wait_ended()).status == 403  # close before accept (ASGI)

            ws = await H3WebSocket.open(client, headers=[(b"sec-websocket-version", b"8")])
            response = await ws.wait_ended()
            assert response.status == 400
            assert response.header(b"sec-websocket-version") == b"13"  # RFC 6455 §4.4

            ws = await H3WebSocket.open(client, end=True)  # FIN on the CONNECT: no tunnel left
            assert (await ws.wait_ended()).status == 400

            ws = await H3WebSocket.open(client, protocol=b"webtransport")
            assert (await ws.wait_ended()).status == 501
            await assert_serves(client)

    with h3_server(tls_files, deny_app) as server:
        run(main(server.port))


def test_message_too_big_closes_1009(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with connect(port, tls_files) as client:
            ws = await H3WebSocket.open(client)
            ws.send(TextMessage(data="x" * 1024))  # exactly the limit passes
            assert await ws.receive_message() == "x" * 1024
            ws.send(BytesMessage(data=b"y" * 1025))
            event = await ws.next_event()
            assert isinstance(event, CloseConnection) and event.code == 1009
            await ws.wait_ended()
            await assert_serves(client)

    with h3_server(tls_files, ws_max_size=1024) as server:
        run(main(server.port))


def test_requests_share_the_connection_with_an_open_websocket(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with connect(port, tls_files) as client:
            ws = await H3WebSocket.open(client)
            requests = asyncio.gather(*(client.request("GET", f"/r{i}") for i in range(10)))
            for i in range(10):
                ws.send(TextMessage(data=f"m{i}"))
            assert [await ws.receive_message() for _ in range(10)] == [f"m{i}" for i in range(10)]
            responses = await requests
            assert [bytes(r.body) for r in responses] == [f"/r{i}".encode() for i in range(10)]
            ws.send(TextMessage(data="still open"))
            assert await ws.receive_message() == "still open"

    with h3_server(tls_files) as server:
        run(main(server.port))


def test_sessions_end_cleanly_and_abruptly_and_the_server_keeps_serving(
    tls_files: dict[str, str],
) -> None:
    """The hypercorn bug: after WebSocket sessions end, the connection and listener still serve.

    With 4 concurrent streams allowed, 14 sessions on one connection only fit when every
    finished session (clean close, client reset, client FIN) gives its stream back.
    """
    disconnect_codes: list[int] = []

    async def counting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await app(scope, receive, send)
            return
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": message["text"]})
        disconnect_codes.append(message["code"])

    async def main(port: int) -> None:
        async with connect(port, tls_files) as client:
            for i in range(6):
                ws = await H3WebSocket.open(client)
                ws.send(TextMessage(data=f"clean {i}"))
                assert await ws.receive_message() == f"clean {i}"
                ws.send(CloseConnection(code=1000))
                await ws.next_event()
                await ws.wait_ended()
            await assert_serves(client)
            for i in range(6):
                ws = await H3WebSocket.open(client)
                ws.send(TextMessage(data=f"reset {i}"))
                assert await ws.receive_message() == f"reset {i}"
                # A TCP RST of the WebSocket (RFC 9220 §3): reset the stream.
                client._quic.reset_stream(ws.stream_id, ErrorCode.H3_REQUEST_CANCELLED)
                client.transmit()
                response = await ws.wait_ended()
                # The server ends its half the same way, retiring the stream.
                assert response.reset_code == ErrorCode.H3_REQUEST_CANCELLED
            await assert_serves(client)
            for _ in range(2):
                ws = await H3WebSocket.open(client)
                # The stream's FIN without a close handshake (RFC 9220 §3: the TCP FIN).
                client.send_body(ws.stream_id, b"", end=True)
                response = await ws.wait_ended()
                assert response.reset_code is None  # the server answers with its own FIN
            ws = await H3WebSocket.open(client)
            ws.send(TextMessage(data="after"))
            assert await ws.receive_message() == "after"
        # The listener serves a new connection too.
        async with connect(port, tls_files) as other:
            await assert_serves(other)
            ws = await H3WebSocket.open(other)
            ws.send(TextMessage(data="new connection"))
            assert await ws.receive_message() == "new connection"

    with h3_server(tls_files, counting_app, h3_max_concurrent_streams=4) as server:
        run(main(server.port))
    # Six clean closes; six resets, two FINs and the two sessions cut when their connections closed.
    assert sorted(disconnect_codes) == [1000] * 6 + [1006] * 10


def test_reading_backpressure_withholds_quic_credit(tls_files: dict[str, str]) -> None:
    """With the app not reading, the client cannot send past the stream's window."""
    window = 64 * 1024
    total = 16 * window
    release = threading.Event()

    async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await app(scope, receive, send)
            return
        await receive()
        await send({"type": "websocket.accept"})
        while not release.is_set():
            await asyncio.sleep(0.01)
        received = 0
        while received < total:
            message = await receive()
            received += len(message["bytes"])
        await send({"type": "websocket.send", "text": str(received)})

    async def main(port: int) -> None:
        async with connect(port, tls_files) as client:
            ws = await H3WebSocket.open(client)
            for _ in range(total // 4096):
                ws.send(BytesMessage(data=b"z" * 4096))
            stream = client._quic._streams[ws.stream_id]
            # Each round: the client sends up to the server's credit, then a request round trip
            # gives the server time to grant more. Credit that follows received bytes instead
            # of consumed ones would grow every round.
            for _ in range(5):
                await client.until(lambda: stream.sender.highest_offset >= min(
                    stream.max_stream_data_remote, stream.sender._buffer_stop))  # blocked, or all sent
                await assert_serves(client, 1)
            assert stream.max_stream_data_remote < 2 * window
            release.set()
            assert await ws.receive_message() == str(total)

    with h3_server(tls_files, slow_app, ws_max_queue=1, h3_max_stream_data=window) as server:
        run(main(server.port))


def test_server_shutdown_closes_1012(tls_files: dict[str, str]) -> None:
    async def main(server: Any) -> None:
        async with connect(server.port, tls_files) as client:
            ws = await H3WebSocket.open(client)
            ws.send(TextMessage(data="x"))
            assert await ws.receive_message() == "x"
            server.server.should_exit = True
            event = await ws.next_event()
            assert isinstance(event, CloseConnection) and event.code == 1012
            ws.send(event.response())
            await ws.wait_ended()
            await client.until(client.closed_event.is_set)  # GOAWAY, then the connection closes

    with h3_server(tls_files) as server:
        run(main(server))


def test_ws_none_disables_extended_connect(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with connect(port, tls_files) as client:
            await client.until(lambda: client.h3._received_settings is not None)
            assert Setting.ENABLE_CONNECT_PROTOCOL not in client.h3._received_settings
            ws = await H3WebSocket.open(client)
            response = await ws.wait_ended()
            # RFC 9220 §3: :protocol was not enabled, so the request is malformed.
            assert response.reset_code == ErrorCode.H3_MESSAGE_ERROR
            await assert_serves(client)

    with h3_server(tls_files, ws="none") as server:
        run(main(server.port))


@pytest.mark.parametrize("ws", ["auto", "none"])
def test_plain_connect_is_501(tls_files: dict[str, str], ws: str) -> None:
    async def main(port: int) -> None:
        async with connect(port, tls_files) as client:
            stream_id = client._quic.get_next_available_stream_id()
            client.responses[stream_id] = Response()
            # RFC 9114 §4.4: a classic CONNECT has only :method and :authority.
            client.h3.send_headers(stream_id, [(b":method", b"CONNECT"), (b":authority", b"localhost:443")])
            client.transmit()
            response = client.responses[stream_id]
            await client.until(response.done.is_set)
            assert response.status == 501

    with h3_server(tls_files, ws=ws) as server:
        run(main(server.port))


def test_unanswered_close_resets_the_stream(tls_files: dict[str, str]) -> None:
    async def closing_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await app(scope, receive, send)
            return
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000})

    async def main(port: int) -> None:
        async with connect(port, tls_files) as client:
            ws = await H3WebSocket.open(client)
            event = await ws.next_event()
            assert isinstance(event, CloseConnection) and event.code == 4000
            # No Close in reply: after --ws-close-timeout the server resets (RFC 9220 §3).
            response = await ws.wait_ended()
            assert response.reset_code == ErrorCode.H3_REQUEST_CANCELLED
            await assert_serves(client)

    with h3_server(tls_files, closing_app, ws_close_timeout=0.2) as server:
        run(main(server.port))
