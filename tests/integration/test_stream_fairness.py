"""A response streamed from memory: bytes leave as they are produced, other connections keep
being served, and a client's cancel stops the handler (the gRPC server-streaming shape).

The clients here read as fast as they can and give the server an HTTP/2 window of 2^31-1, so
the only thing that can hold the app back is the server's own write path.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest

from tests.helpers import run_server
from tests.integration.process_helpers import roadrunner

MESSAGE = b"m" * 100
HUGE_WINDOW = 2**31 - 1


class Producer:
    """An app that sends up to `limit` small body chunks as fast as it can (GET /ping: pong)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0
        self.finished = threading.Event()  # the streaming handler has ended, however it ended
        self.stop = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/ping":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"4")]})
            await send({"type": "http.response.body", "body": b"pong"})
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while self.sent < self.limit and not self.stop.is_set():
                await send({"type": "http.response.body", "body": MESSAGE, "more_body": True})
                self.sent += 1
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.finished.set()


class FastH2Client:
    """An HTTP/2 client (h2 over a socket) that reads everything at once with a huge window."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the advertised TCP window is small too
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: HUGE_WINDOW})
        self.h2.increment_flow_control_window(HUGE_WINDOW - 65535)
        self.received: dict[int, int] = {}
        self.ended: set[int] = set()
        self.on_data: Any = None  # called with (stream_id, total bytes so far)

    def request(self, path: str) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"),
                                         (":path", path), (":authority", "127.0.0.1")],
                             end_stream=True)
        self.received[stream_id] = 0
        self.sock.sendall(self.h2.data_to_send())
        return stream_id

    def read_until(self, done: Any) -> None:
        while not done():
            data = self.sock.recv(1 << 20)
            if not data:
                return
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.received[event.stream_id] += len(event.data)
                    if self.on_data is not None:
                        self.on_data(event.stream_id, self.received[event.stream_id])
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    self.ended.add(event.stream_id)
            outgoing = self.h2.data_to_send()
            if outgoing:
                self.sock.sendall(outgoing)

    def cancel(self, stream_id: int) -> None:
        self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        self.sock.sendall(self.h2.data_to_send())


@pytest.mark.usefixtures("http2_engine")
def test_h2_app_is_held_back_by_the_socket_not_by_memory() -> None:
    """A client that reads nothing, with a window of 2^31-1: the app stalls once the socket and
    the transport's buffer are full, instead of h2 queueing the whole response in the process.
    Before: the app produced all 20 MB (into h2's buffer) before the first byte was written.
    Judged by the app's own progress, so the client's scheduling cannot move the verdict."""
    app = Producer(limit=200_000)  # 20 MB
    with run_server(app, protocols="h2") as server:
        client = FastH2Client(server.port, rcvbuf=65536)
        client.request("/")
        last, since = -1, time.monotonic()
        deadline = since + 30
        while time.monotonic() < deadline and not app.finished.is_set():
            if app.sent != last:
                last, since = app.sent, time.monotonic()
            elif time.monotonic() - since > 0.5:
                break  # no progress for 0.5 s: held back
            time.sleep(0.05)
        finished, held_at = app.finished.is_set(), app.sent
        app.stop.set()
        client.sock.close()
    assert not finished, "the app produced the whole response with nobody reading it"
    assert held_at < app.limit // 2, held_at


PRODUCER_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/ping":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"pong"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(10_000_000):  # 1 GB in 100-byte chunks, from memory
        await send({"type": "http.response.body", "body": b"m" * 100, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
"""


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize("protocols", ["h1", "h1,h2"])
def test_busy_stream_does_not_starve_other_connections(protocols: str, tmp_path: Path) -> None:
    """A handler streaming from memory to a fast reader (curl, in its own process; the server
    in its own) still lets another client be served: before, /ping waited for the whole GB."""
    (tmp_path / "producer.py").write_text(PRODUCER_APP)
    with roadrunner("producer:app", "--protocols", protocols, cwd=tmp_path) as process:
        url = f"http://127.0.0.1:{process.port}"
        version = "--http2-prior-knowledge" if "h2" in protocols else "--http1.1"
        reader = subprocess.Popen(["curl", "-s", version, "-o", "/dev/null", url + "/"])
        try:
            with httpx.Client(timeout=10) as client:
                time.sleep(0.3)  # the stream is under way
                assert reader.poll() is None
                response = client.get(url + "/ping")
                streaming = reader.poll() is None
        finally:
            reader.kill()
            reader.wait()
    assert response.text == "pong"
    assert streaming  # answered while the GB was still being sent


@pytest.mark.usefixtures("http2_engine")
def test_h2_cancel_stops_the_handler_and_the_connection_serves_on() -> None:
    """RST_STREAM(CANCEL) from a client that keeps reading: the handler ends promptly."""
    app = Producer(limit=10_000_000)
    with run_server(app, protocols="h2") as server:
        client = FastH2Client(server.port)
        stream_id = client.request("/")
        client.read_until(lambda: client.received[stream_id] >= 200_000)
        client.cancel(stream_id)
        # Keep reading what is already on its way while the server notices the cancel.
        client.sock.settimeout(0.2)
        try:
            client.read_until(lambda: app.finished.is_set())
        except TimeoutError:
            pass
        stopped = app.finished.wait(5)
        sent_when_stopped = app.sent
        client.sock.settimeout(10)
        next_id = client.request("/ping")
        client.read_until(lambda: next_id in client.ended)
        client.sock.close()
    assert stopped, f"the handler ran on after the cancel ({app.sent} chunks)"
    assert sent_when_stopped < app.limit
    assert client.received[next_id] == 4


class PausingStreamer:
    """Streams 20 chunks, sleeping 2 ms (two send slices) before each, and records whether each
    send() suspended: a callback scheduled just before the send has run when it returns."""

    def __init__(self) -> None:
        self.suspended: list[bool] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(20):
            await asyncio.sleep(0.002)
            turned: list[bool] = []
            loop.call_soon(turned.append, True)
            await send({"type": "http.response.body", "body": MESSAGE, "more_body": True})
            self.suspended.append(bool(turned))
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.usefixtures("http2_engine")
@pytest.mark.parametrize("protocols", ["h1", "h2"])
def test_send_does_not_yield_for_an_app_that_awaits_between_chunks(protocols: str) -> None:
    """The fairness yield is for a stream that holds the loop, not for one whose app gives the
    loop its turns: under uvicorn send() is no suspension point for such an app, so a cancel
    (Starlette's disconnect listener, spec 2.3) lands in the app's own await and its body
    iterator is closed there. Before, every chunk after the first 1 ms yielded once, and a
    cancel that met that yield left Starlette's generator to the garbage collector (a flaky
    test_starlette_endless_stream_stops_when_client_leaves)."""
    app = PausingStreamer()
    with run_server(app, protocols=protocols) as server:
        with httpx.Client(http1=protocols == "h1", http2=protocols == "h2", timeout=10) as client:
            response = client.get(server.url + "/")
    assert response.content == MESSAGE * 20
    assert app.suspended == [False] * 20
