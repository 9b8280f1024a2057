"""Litestar and Quart under roadrunner: hello, a JSON POST, WebSocket echo, compared with
uvicorn."""

from __future__ import annotations

import pytest

from tests.frameworks.oracle import PROTOCOLS, Launcher, Served, assert_same, assert_ws_echo, both

pytestmark = pytest.mark.timeout(30)
APPS = {
    "litestar": "tests.frameworks.apps.litestar_app:app",
    "quart": "tests.frameworks.apps.quart_app:app",
}


@pytest.fixture(scope="module", params=list(APPS))
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=PROTOCOLS)
def rr(request: pytest.FixtureRequest, launch: Launcher, framework: str) -> Served:
    return launch("roadrunner", APPS[framework], request.param)


@pytest.fixture(scope="module")
def uv(launch: Launcher, framework: str) -> Served:
    return launch("uvicorn", APPS[framework])


def test_hello(rr: Served, uv: Served, framework: str) -> None:
    a, b = both(rr, uv, "GET", "/")
    assert a.status_code == 200 and a.text == f"hello from {framework}"
    assert_same(a, b)


def test_json_post(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "POST", "/json", json={"a": [1, "two"], "b": None})
    assert a.json() == {"received": {"a": [1, "two"], "b": None}}
    assert_same(a, b)


def test_not_found(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "GET", "/missing")
    assert a.status_code == 404
    assert_same(a, b)


def test_websocket_echo(rr: Served, uv: Served) -> None:
    assert_ws_echo(rr, uv, "/ws", binary=False)
