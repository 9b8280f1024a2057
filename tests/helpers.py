"""Test helpers: a real roadrunner Server on 127.0.0.1 in a thread, raw sockets, TLS certs."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from roadrunner.config import Config
from roadrunner.loops import asyncio_run, get_loop_factory
from roadrunner.protocols.http2.engine import nghttp2_missing
from roadrunner.server import Server

NGHTTP2_MISSING = nghttp2_missing()
# The HTTP/2 engines a test runs on (the http2_engine fixture; module-scoped servers use it
# as their params): nghttp2 is skipped, with the reason, where the extension is not built.
HTTP2_ENGINES = [
    pytest.param(
        "nghttp2",
        marks=pytest.mark.skipif(
            bool(NGHTTP2_MISSING), reason=f"the nghttp2 engine is not built: {NGHTTP2_MISSING}"
        ),
    ),
    "h2",
]
# Config defaults every run_server() call takes unless it passes its own: the http2_engine
# fixture (tests/conftest.py) sets "http2_engine" here so HTTP/2 tests run on each engine.
SERVER_DEFAULTS: dict[str, Any] = {}


@dataclass
class RunningServer:
    server: Server
    config: Config
    port: int

    @property
    def url(self) -> str:
        scheme = "https" if self.config.is_ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


@contextlib.contextmanager
def run_server(app: Any, **kwargs: Any) -> Iterator[RunningServer]:
    """Start a real Server on 127.0.0.1 with a free port, in a background thread."""
    kwargs.setdefault("host", "127.0.0.1")
    kwargs.setdefault("port", 0)
    kwargs.setdefault("lifespan", "off")
    # Leave logging alone so tests can attach handlers (see capture_logs).
    kwargs.setdefault("log_config", None)
    for name, value in SERVER_DEFAULTS.items():
        kwargs.setdefault(name, value)
    config = Config(app, **kwargs)
    server = Server(config)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            # As Server.run: the loop --loop names (a policy set by an earlier test would make
            # loop="asyncio" run on uvloop).
            asyncio_run(server.serve(), get_loop_factory(config.loop))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if errors or not thread.is_alive():
            raise RuntimeError(f"server failed to start: {errors!r}")
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start in 10 s")
        time.sleep(0.01)
    try:
        yield RunningServer(server, config, server.bound_port)
    finally:
        server.should_exit = True
        thread.join(15)
        if errors and not isinstance(errors[0], SystemExit):
            raise errors[0]


def raw_request(port: int, data: bytes, timeout: float = 5.0, shut_write: bool = False) -> bytes:
    """Send raw bytes; read until the server closes (or timeout). Returns what was read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def recv_until(sock: socket.socket, done: Callable[[bytes], bool], what: str, data: bytes = b"") -> bytes:
    """Read from `sock` onto `data` until `done(data)`; fail if the server closes before `what`."""
    while not done(data):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {what}"
        data += chunk
    return data


def status_of(response: bytes) -> int:
    """The status code of the first response in raw HTTP/1.1 bytes."""
    return int(response.split(b" ", 2)[1])


class LogRecords(logging.Handler):
    """Collects records of one logger (roadrunner's loggers do not propagate to root)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(record.getMessage() for record in self.records)


@contextlib.contextmanager
def capture_logs(name: str) -> Iterator[LogRecords]:
    logger = logging.getLogger(name)
    handler = LogRecords()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


async def read_body(receive: Any) -> bytes:
    """Receive a whole request body in an ASGI app under test."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


async def websocket_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI WebSocket app that accepts and sends every message back."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        payload = {k: v for k, v in message.items() if k in ("text", "bytes")}
        await send({"type": "websocket.send", **payload})
