"""ProxyHeadersMiddleware against a real server: X-Forwarded-*, Forwarded, trust boundaries."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.helpers import run_server


async def echo(request: Request) -> JSONResponse:
    client = request.client
    return JSONResponse({
        "client": client.host if client else None,
        "scheme": request.url.scheme,
        "host": request.headers.get("host"),
        "url": str(request.url),
    })


APP = Starlette(routes=[Route("/", echo)])


def serve(**options: object) -> Iterator[httpx.Client]:
    with run_server(APP, **options) as server, httpx.Client(base_url=server.url) as client:
        yield client


@pytest.fixture(scope="module")
def trusted() -> Iterator[httpx.Client]:
    # 127.0.0.1 (the test client) and 10.0.0.0/8 (inner proxies) are trusted; every forwarding
    # header is opted in to (the default trusts X-Forwarded-For and -Proto only, as uvicorn).
    yield from serve(forwarded_allow_ips="127.0.0.1,10.0.0.0/8", proxy_headers_mode="auto")


def test_x_forwarded_for_walks_right_to_left(trusted: httpx.Client) -> None:
    body = trusted.get("/", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.1.2.3"}).json()
    assert body["client"] == "198.51.100.7"  # 6.6.6.6 was said by an untrusted hop


def test_x_forwarded_for_all_trusted_takes_leftmost(trusted: httpx.Client) -> None:
    assert trusted.get("/", headers={"X-Forwarded-For": "10.9.9.9, 10.1.1.1"}).json()["client"] == "10.9.9.9"


def test_x_forwarded_proto_host_and_port(trusted: httpx.Client) -> None:
    body = trusted.get("/", headers={
        "X-Forwarded-For": "198.51.100.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "shop.example",
        "X-Forwarded-Port": "8443",
    }).json()
    assert body == {"client": "198.51.100.7", "scheme": "https", "host": "shop.example:8443",
                    "url": "https://shop.example:8443/"}


def test_default_port_is_omitted_and_port_alone_rewrites_host(trusted: httpx.Client) -> None:
    body = trusted.get("/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "a.example:99",
                                     "X-Forwarded-Port": "443"}).json()
    assert body["url"] == "https://a.example/"
    body = trusted.get("/", headers={"Host": "b.example:8000", "X-Forwarded-Port": "9000"}).json()
    assert body["host"] == "b.example:9000"


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-Host": "evil.example/path"},
    {"X-Forwarded-Host": "a b"},
    {"X-Forwarded-Port": "99999"},
    {"X-Forwarded-Proto": "gopher"},
])
def test_malformed_values_are_ignored(trusted: httpx.Client, headers: dict[str, str]) -> None:
    body = trusted.get("/", headers=headers).json()
    assert body["host"].startswith("127.0.0.1:")
    assert body["scheme"] == "http"


def test_forwarded_header_rfc7239(trusted: httpx.Client) -> None:
    body = trusted.get("/", headers={
        "Forwarded": 'for=6.6.6.6;proto=http, for="[2001:db8::17]:4711";proto=https;host="api.example", '
                     "for=10.0.0.5;proto=http",
    }).json()
    assert body["client"] == "2001:db8::17"
    assert body["scheme"] == "https"
    assert body["host"] == "api.example"


def test_x_forwarded_wins_in_auto_mode(trusted: httpx.Client) -> None:
    body = trusted.get("/", headers={"Forwarded": "for=6.6.6.6", "X-Forwarded-For": "198.51.100.9"}).json()
    assert body["client"] == "198.51.100.9"


def test_untrusted_peer_headers_are_ignored() -> None:
    for client in serve(forwarded_allow_ips="192.0.2.1"):
        body = client.get("/", headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https",
                                        "Forwarded": "for=6.6.6.6", "X-Forwarded-Host": "evil"}).json()
        assert body["client"] == "127.0.0.1"
        assert body["scheme"] == "http"
        assert body["host"].startswith("127.0.0.1:")


def test_forwarded_only_mode_ignores_x_forwarded() -> None:
    for client in serve(forwarded_allow_ips="*", proxy_headers_mode="forwarded"):
        body = client.get("/", headers={"X-Forwarded-For": "6.6.6.6",
                                        "Forwarded": "for=198.51.100.3, for=10.0.0.1"}).json()
        # '*' trusts every hop, so the leftmost (original) client is taken.
        assert body["client"] == "198.51.100.3"


def test_x_forwarded_only_mode_ignores_forwarded() -> None:
    for client in serve(proxy_headers_mode="x-forwarded"):
        body = client.get("/", headers={"Forwarded": "for=198.51.100.3;proto=https"}).json()
        assert body["client"] == "127.0.0.1"
        assert body["scheme"] == "http"


def test_default_trusts_only_x_forwarded_for_and_proto() -> None:
    """uvicorn's set: a proxy that sets X-Forwarded-For/-Proto passes the client's own
    X-Forwarded-Host/-Port and Forwarded through, so those must not rewrite the scope."""
    for client in serve(forwarded_allow_ips="*"):
        body = client.get("/", headers={
            "X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example", "X-Forwarded-Port": "8443",
        }).json()
        assert body["client"] == "198.51.100.7"
        assert body["scheme"] == "https"
        assert body["host"] == f"127.0.0.1:{client.base_url.port}"
        body = client.get("/", headers={"Forwarded": 'for=6.6.6.6;proto=https;host="evil.example"'}).json()
        assert (body["client"], body["scheme"]) == ("127.0.0.1", "http")
        assert body["host"] == f"127.0.0.1:{client.base_url.port}"


def test_x_forwarded_mode_opts_in_to_host_and_port() -> None:
    for client in serve(proxy_headers_mode="x-forwarded"):
        body = client.get("/", headers={"X-Forwarded-Host": "shop.example", "X-Forwarded-Port": "8443"}).json()
        assert body["host"] == "shop.example:8443"


def test_unknown_mode_refused() -> None:
    from roadrunner.middleware.proxy_headers import ProxyHeadersMiddleware

    with pytest.raises(ValueError):
        ProxyHeadersMiddleware(APP, mode="both")
