"""The framework tier's helpers: start an app under the real roadrunner or uvicorn CLI and
compare what roadrunner answers with what uvicorn answers (uvicorn is the oracle)."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from tests.integration.process_helpers import Process
from tests.integration.ws_h2_client import H2WebSocketClient

ROOT = Path(__file__).resolve().parents[2]
CLIENT_TIMEOUT = 8.0  # every request gives up: a server that spins fails the test, not hangs it
PROTOCOLS = ("h1", "h2")
# FRAMEWORK_TIER_SELF_CHECK=1 runs uvicorn in roadrunner's place on h1: the tier must pass
# then, which checks its own expectations against the oracle (docs/testing.md).
SELF_CHECK = bool(os.environ.get("FRAMEWORK_TIER_SELF_CHECK"))


@dataclass
class Served:
    """One app under one server; `protocol` is what clients of this server speak."""

    server: str
    protocol: str
    process: Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def label(self) -> str:
        return f"{self.server}/{self.protocol}"

    @property
    def http_version(self) -> str:
        return "HTTP/2" if self.protocol == "h2" else "HTTP/1.1"

    def client(self, **kwargs: Any) -> httpx.Client:
        """h1, or h2c with prior knowledge (RFC 9113 §3.3) on an h2 server."""
        h2 = self.protocol == "h2"
        kwargs.setdefault("timeout", CLIENT_TIMEOUT)
        return httpx.Client(base_url=self.url, http1=not h2, http2=h2, **kwargs)


def wait_listening(process: Process, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.proc.poll() is not None:
                raise AssertionError(f"not listening on {port}:\n{process.output}") from None
            time.sleep(0.05)


def start(server: str, app: str, protocol: str, *args: str, env: dict[str, str] | None = None,
          port: int = 0) -> Served:
    """`python -m {roadrunner,uvicorn} APP --port PORT ...` in the project root. With port 0
    the port is read from the "running on" line; with a given port (a log config can silence
    that line) the server is ready when it accepts a connection."""
    if SELF_CHECK and protocol == "h1":
        server = "uvicorn"
    argv = [sys.executable, "-m", server, app, "--host", "127.0.0.1", "--port", str(port), *args]
    if protocol == "h2":
        assert server == "roadrunner", "uvicorn has no HTTP/2"
        argv += ["--protocols", "h1,h2"]
    process = Process(argv, ROOT, env)
    try:
        if port:
            wait_listening(process, port)
        else:
            port = process.port
    except BaseException:
        process.kill_tree()
        raise
    return Served(server, protocol, process, port)


class Launcher:
    """Starts each (server, app, protocol, args) once; `close` stops them all."""

    def __init__(self) -> None:
        self.running: dict[tuple[Any, ...], Served] = {}

    def __call__(self, server: str, app: str, protocol: str = "h1", *args: str,
                 env: dict[str, str] | None = None, port: int = 0) -> Served:
        key = (server, app, protocol, args)
        if key not in self.running:
            self.running[key] = start(server, app, protocol, *args, env=env, port=port)
        return self.running[key]

    def close(self) -> None:
        for served in self.running.values():
            served.process.kill_tree()
        self.running.clear()


def pair(app: str, *args: str, protocols: tuple[str, ...] = PROTOCOLS,
         env_fixture: str | None = None) -> tuple[Callable[..., Served], Callable[..., Served]]:
    """Module fixtures `rr` (roadrunner, once per protocol) and `uv` (uvicorn, h1)."""

    def env(request: pytest.FixtureRequest) -> dict[str, str] | None:
        return request.getfixturevalue(env_fixture) if env_fixture else None

    @pytest.fixture(scope="module", params=protocols)
    def rr(request: pytest.FixtureRequest, launch: Launcher) -> Served:
        return launch("roadrunner", app, request.param, *args, env=env(request))

    @pytest.fixture(scope="module")
    def uv(request: pytest.FixtureRequest, launch: Launcher) -> Served:
        return launch("uvicorn", app, "h1", *args, env=env(request))

    return rr, uv


def cookie_names(response: httpx.Response) -> list[str]:
    names: list[str] = []
    for header in response.headers.get_list("set-cookie"):
        names += SimpleCookie(header).keys()
    return sorted(names)


def framing(response: httpx.Response, h2: bool) -> dict[str, Any]:
    """Content-Length and Transfer-Encoding as they matter: on h2 there is no chunked coding
    (RFC 9113 §8.2.2), so a chunked h1 answer must come without Content-Length there."""
    found = {"content-length": response.headers.get("content-length")}
    if not h2:
        found["transfer-encoding"] = response.headers.get("transfer-encoding")
    return found


def assert_same(rr: httpx.Response, uv: httpx.Response, *, body: bool = True,
                normalise: Callable[[str], str] = lambda text: text) -> None:
    """The roadrunner answer matches uvicorn's in what a client can tell apart."""
    h2 = rr.http_version == "HTTP/2"
    label = f"{rr.request.method} {rr.request.url.path} ({rr.http_version})"
    assert rr.status_code == uv.status_code, label
    assert rr.headers.get("content-type") == uv.headers.get("content-type"), label
    assert rr.headers.get("location") == uv.headers.get("location"), label
    assert cookie_names(rr) == cookie_names(uv), label
    assert framing(rr, h2) == framing(uv, h2=h2), label
    if body:
        assert normalise(rr.text) == normalise(uv.text), label


def both(rr: Served, uv: Served, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
    """The same request to both servers, each on a fresh client."""
    answers = []
    for served in (rr, uv):
        with served.client() as client:
            answers.append(client.request(method, path, **kwargs))
        assert answers[-1].http_version == served.http_version, served.label
    return answers[0], answers[1]


def timed_chunks(served: Served, path: str) -> tuple[httpx.Response, list[tuple[float, bytes]]]:
    """Stream `path`; each raw chunk with the time it arrived (seconds after the head)."""
    with served.client() as client, client.stream("GET", path) as response:
        began = time.monotonic()
        chunks = [(time.monotonic() - began, chunk) for chunk in response.iter_raw()]
    assert response.http_version == served.http_version, served.label
    return response, chunks


def assert_streamed(chunks: list[tuple[float, bytes]], expected: bytes, pieces: int,
                    spacing: float) -> None:
    """The body is complete and came in `pieces` or more chunks spread over time (the app
    sleeps `spacing` between its chunks): the server did not buffer the whole response."""
    assert b"".join(chunk for _, chunk in chunks) == expected
    assert len(chunks) >= pieces, chunks
    assert chunks[-1][0] - chunks[0][0] >= spacing * (pieces - 1) * 0.8, chunks


def assert_streams_like_uvicorn(rr: Served, uv: Served, path: str) -> None:
    """The apps' /stream answer: four chunks 0.2 s apart, streamed (not buffered) by both
    servers, with the same status and headers."""
    expected = b"".join(f"chunk {i}\n".encode() for i in range(4))
    a, chunks = timed_chunks(rr, path)
    b, uv_chunks = timed_chunks(uv, path)
    assert_streamed(uv_chunks, expected, pieces=4, spacing=0.2)
    assert_streamed(chunks, expected, pieces=4, spacing=0.2)
    assert_same(a, b, body=False)


def ws_echo(served: Served, path: str, binary: bool = True) -> list[Any]:
    """Send a text (and a binary) message, then close with 1000: what the client saw, the
    negotiated extensions, each echo, the server's close code and reason. h1 speaks RFC 6455
    with the websockets client, h2 the Extended CONNECT of RFC 8441 (h2c prior knowledge);
    both offer permessage-deflate."""
    sent = ws_messages(binary)
    if served.protocol == "h2":
        return h2_ws_echo(served, path, sent)
    url = f"ws://127.0.0.1:{served.port}{path}"
    with connect(url, open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT) as ws:
        assert ws.response is not None
        seen: list[Any] = [extension_names(ws.response.headers.get("sec-websocket-extensions"))]
        for message in sent:
            ws.send(message)
            seen.append(ws.recv(timeout=CLIENT_TIMEOUT))
        ws.close()
    return [*seen, ("close", ws.close_code, ws.close_reason)]


def h2_ws_echo(served: Served, path: str, sent: list[str | bytes]) -> list[Any]:
    client = H2WebSocketClient(served.port, path=path, deflate=True, timeout=CLIENT_TIMEOUT)
    try:
        assert client.status == 200, f"{served.label}: {client.status} {client.body!r}"
        seen: list[Any] = [extension_names(client.response_headers.get("sec-websocket-extensions"))]
        for message in sent:
            client.send(TextMessage(message) if isinstance(message, str) else BytesMessage(message))
            seen.append(h2_ws_message(client))
        client.send(CloseConnection(code=1000))
        event = client.next_event()
        assert isinstance(event, CloseConnection), f"{served.label}: {event!r}"
        client.wait_ended()
        assert client.reset in (None, 0), served.label  # RFC 9113 §8.1: RST_STREAM(NO_ERROR)
    finally:
        client.close()
    return [*seen, ("close", int(event.code), event.reason)]


def h2_ws_message(client: H2WebSocketClient) -> str | bytes:
    """One whole message, its fragments joined (RFC 6455 §5.4)."""
    parts: list[Any] = []
    while True:
        event = client.next_event()
        assert isinstance(event, (TextMessage, BytesMessage)), event
        parts.append(event.data)
        if event.message_finished:
            return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)


def extension_names(header: str | None) -> list[str]:
    """The accepted extensions without their parameters (RFC 7692 §7.1): uvicorn (websockets)
    answers the websockets client's offer with `server_max_window_bits=12;
    client_max_window_bits=12`, roadrunner with a bare `permessage-deflate` (15-bit windows);
    both are valid answers."""
    return [item.split(";")[0].strip() for item in header.split(",")] if header else []


def ws_messages(binary: bool) -> list[str | bytes]:
    return ["hello", b"\x00\x01bytes"] if binary else ["hello"]


def assert_ws_echo(rr: Served, uv: Served, path: str, binary: bool = True) -> None:
    """The WebSocket echoes each message and answers the close with 1000 under uvicorn (h1);
    roadrunner's client, on h1 or h2, sees the same."""
    expected = ws_echo(uv, path, binary)
    assert expected[0] == ["permessage-deflate"], expected
    assert expected[1:-1] == ws_messages(binary) and expected[-1][:2] == ("close", 1000), expected
    assert ws_echo(rr, path, binary) == expected, rr.label
