"""Starlette under roadrunner: hello, streaming, WebSocket, compared with uvicorn."""

from __future__ import annotations

import pytest

from tests.frameworks.oracle import (
    Served,
    assert_same,
    assert_streams_like_uvicorn,
    assert_ws_echo,
    both,
    pair,
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
    assert_streams_like_uvicorn(rr, uv, "/stream")


def test_websocket_echo(rr: Served, uv: Served) -> None:
    assert_ws_echo(rr, uv, "/ws", binary=False)
