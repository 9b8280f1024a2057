"""Starlette under roadrunner: hello, streaming, WebSocket, compared with uvicorn."""

from __future__ import annotations

import pytest

from tests.frameworks.oracle import (
    Served,
    assert_same,
    assert_streamed,
    assert_ws_echo,
    both,
    pair,
    timed_chunks,
)

pytestmark = pytest.mark.timeout(30)

rr, uv = pair("tests.frameworks.apps.starlette_app:app")


def test_hello(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "GET", "/")
    assert a.text == "hello from starlette"
    assert_same(a, b)


def test_not_found(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "GET", "/missing")
    assert a.status_code == 404
    assert_same(a, b)


def test_streaming(rr: Served, uv: Served) -> None:
    expected = b"".join(f"chunk {i}\n".encode() for i in range(4))
    a, chunks = timed_chunks(rr, "/stream")
    b, uv_chunks = timed_chunks(uv, "/stream")
    assert_streamed(uv_chunks, expected, pieces=4, spacing=0.2)
    assert_streamed(chunks, expected, pieces=4, spacing=0.2)
    assert_same(a, b, body=False)


def test_websocket_echo(rr: Served, uv: Served) -> None:
    assert_ws_echo(rr, uv, "/ws", binary=False)
