"""Unit tests of the edge middleware's pure parts: bucket store, parsers, Vary merging, and the
ASGI paths no HTTP client can reach yet (WebSocket scopes, pathsend)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roadrunner.middleware.compression import CompressionMiddleware, parse_accept_encoding
from roadrunner.middleware.cors import CORSMiddleware
from roadrunner.middleware.etag import ETagMiddleware, none_match
from roadrunner.middleware.headers import add_vary
from roadrunner.middleware.proxy_headers import TrustedHosts, node_host, parse_forwarded
from roadrunner.middleware.rate_guard import BucketStore, RateGuardMiddleware, parse_rate
from roadrunner.middleware.security_headers import SecurityHeadersMiddleware


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_at_rate() -> None:
    clock = Clock()
    store = BucketStore(rate=2.0, burst=2, clock=clock)
    assert store.take("a") == 0.0 and store.take("a") == 0.0
    assert store.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert store.take("a") == 0.0
    assert store.take("a") > 0


def test_idle_buckets_are_swept() -> None:
    clock = Clock()
    store = BucketStore(rate=10.0, burst=10, clock=clock)  # full again after 1 s idle
    for i in range(1000):
        store.take(f"peer{i}")
    assert len(store) == 1000
    clock.now += 0.5
    store.take("fresh")
    assert len(store) == 1001  # nobody idle long enough yet
    clock.now += 0.6
    store.take("late")
    assert set(store.buckets) == {"fresh", "late"}


def test_hard_cap_evicts_least_recently_seen() -> None:
    store = BucketStore(rate=1.0, burst=5, max_peers=3, clock=Clock())
    for key in ("a", "b", "c"):
        store.take(key)
    store.take("a")  # a is now most recent
    store.take("d")
    assert list(store.buckets) == ["c", "a", "d"]
    for i in range(10_000):
        store.take(str(i))
    assert len(store) == 3


@pytest.mark.parametrize(("text", "per_second"), [
    ("100/s", 100.0), ("6000/m", 100.0), ("36/h", 0.01), ("1.5 / sec", 1.5), ("2/minute", 2 / 60),
])
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["", "100", "100/d", "-1/s", "0/s", "x/s"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_forwarded_parsing() -> None:
    assert parse_forwarded('for="_gazonk"') == [{"for": "_gazonk"}]
    assert parse_forwarded('For="[2001:db8:cafe::17]:4711"') == [{"for": "[2001:db8:cafe::17]:4711"}]
    assert parse_forwarded("for=192.0.2.60;proto=http;by=203.0.113.43") == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}]
    assert parse_forwarded("for=192.0.2.43, for=198.51.100.17") == [
        {"for": "192.0.2.43"}, {"for": "198.51.100.17"}]
    assert parse_forwarded('for="a\\"b";host=x') == [{"for": 'a"b', "host": "x"}]
    assert parse_forwarded("garbage, for=1.2.3.4") == [{"for": "1.2.3.4"}]
    assert parse_forwarded("") == []
    assert node_host("[2001:db8::1]:80") == "2001:db8::1"
    assert node_host("192.0.2.1:8080") == "192.0.2.1"
    assert node_host("unknown") == "unknown"


def test_trusted_hosts() -> None:
    trusted = TrustedHosts(["10.0.0.0/8", "::1", "unix:/run/sock"])
    assert "10.2.3.4" in trusted and "::1" in trusted and "unix:/run/sock" in trusted
    assert "11.0.0.1" not in trusted and "name" not in trusted and None not in trusted
    assert "anything" in TrustedHosts(["*"])


def test_add_vary() -> None:
    assert add_vary([], b"Origin") == [(b"vary", b"Origin")]
    assert add_vary([(b"Vary", b"origin")], b"Origin") == [(b"vary", b"origin")]
    assert add_vary([(b"vary", b"*")], b"Origin") == [(b"vary", b"*")]
    assert add_vary([(b"vary", b"A"), (b"x", b"1"), (b"vary", b"B")], b"C") == [
        (b"vary", b"A, B, C"), (b"x", b"1")]
    assert add_vary([(b"vary", b"")], b"C", b"D") == [(b"vary", b"C, D")]


def test_accept_encoding_and_if_none_match_parsing() -> None:
    assert parse_accept_encoding(b"gzip;q=0.5, br ;q=2, zstd;level=1") == {
        b"gzip": 0.5, b"br": 1.0, b"zstd": 1.0}
    assert none_match(b'"a", W/"b"', b'"b"')
    assert not none_match(b'"a,b"', b'"a"')


# -- ASGI paths without an HTTP client today ---------------------------------------------------

def run(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


async def ws_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "websocket.accept"})


def ws_scope(**extra: Any) -> dict[str, Any]:
    return {"type": "websocket", "path": "/ws", "headers": [(b"origin", b"https://x")],
            "client": ("192.0.2.9", 1), "scheme": "ws", **extra}


def test_websocket_passes_through_header_middleware() -> None:
    for middleware in (CORSMiddleware(ws_app, allow_origins=["https://a"]),
                       SecurityHeadersMiddleware(ws_app), ETagMiddleware(ws_app),
                       CompressionMiddleware(ws_app)):
        assert run(middleware, ws_scope()) == [{"type": "websocket.accept"}]


def test_rate_guard_rejects_websocket_handshakes() -> None:
    guard = RateGuardMiddleware(ws_app, rate="1/h", burst=1)
    assert run(guard, ws_scope()) == [{"type": "websocket.accept"}]
    assert run(guard, ws_scope()) == [{"type": "websocket.close", "code": 1008}]
    denied = run(guard, ws_scope(extensions={"websocket.http.response": {}}))
    assert denied[0]["type"] == "websocket.http.response.start" and denied[0]["status"] == 429
    # No client address (unix socket without proxy headers): not limited.
    assert run(guard, ws_scope(client=None)) == [{"type": "websocket.accept"}]
    assert run(guard, {"type": "lifespan"}) == [{"type": "websocket.accept"}]


async def pathsend_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.pathsend", "path": "/etc/hostname"})


def test_pathsend_passes_through_buffering_middleware() -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"accept-encoding", b"gzip")]}
    for middleware in (ETagMiddleware(pathsend_app), CompressionMiddleware(pathsend_app)):
        sent = run(middleware, scope)
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]
        assert sent[0]["headers"] == [(b"content-type", b"text/plain")]


def test_etag_skips_head_response_without_its_body() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"1234")]})
        await send({"type": "http.response.body", "body": b""})

    sent = run(ETagMiddleware(app), {"type": "http", "method": "HEAD", "headers": []})
    assert sent[0]["headers"] == [(b"content-length", b"1234")]
