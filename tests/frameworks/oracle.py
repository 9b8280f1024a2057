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

from tests.integration.process_helpers import Process

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


def assert_ws_echo(served: Served, path: str, binary: bool = True) -> None:
    """A WebSocket on h1 echoes a text (and a binary) message, then closes cleanly."""
    url = f"ws://127.0.0.1:{served.port}{path}"
    with connect(url, open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT) as ws:
        ws.send("hello")
        assert ws.recv(timeout=CLIENT_TIMEOUT) == "hello"
        if binary:
            ws.send(b"\x00\x01bytes")
            assert ws.recv(timeout=CLIENT_TIMEOUT) == b"\x00\x01bytes"
