"""HTTP/3: requests over real QUIC from the aioquic client to a real roadrunner server."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import pytest

from roadrunner.config import Config, ConfigError
from tests.helpers import run_server
from tests.integration.test_http3_helpers import h3_connect, h3_server_kwargs


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo the request body; report the scope in headers."""
    assert scope["type"] == "http"
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"x-http-version", scope["http_version"].encode()),
            (b"x-method", scope["method"].encode()),
            (b"x-path", scope["path"].encode()),
            (b"x-query", scope["query_string"]),
            (b"x-host", dict(scope["headers"]).get(b"host", b"")),
            (b"x-scheme", scope["scheme"].encode()),
            (b"connection", b"keep-alive"),  # connection-specific: must not reach HTTP/3
        ],
    })
    await send({"type": "http.response.body", "body": bytes(body)})


def test_get_reports_http_version_3(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            response = await client.request("GET", "/hello%20world?x=1")
            assert response.status == 200
            assert response.header(b"x-http-version") == b"3"
            assert response.header(b"x-path") == b"/hello world"
            assert response.header(b"x-query") == b"x=1"
            assert response.header(b"x-host") == b"localhost"
            assert response.header(b"x-scheme") == b"https"
            assert response.header(b"server") == b"roadrunner"
            assert response.header(b"connection") is None
            assert response.header(b"alt-svc") is None

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_post_echo_large_body_byte_identical(tls_files: dict[str, str]) -> None:
    payload = bytes(range(256)) * 400  # 100 kB

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            response = await client.request("POST", "/echo", body=payload)
            assert response.status == 200
            assert bytes(response.body) == payload
            # many requests on one connection
            results = await asyncio.gather(
                *(client.request("POST", f"/{i}", body=b"x" * i) for i in range(50))
            )
            assert [len(r.body) for r in results] == list(range(50))

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_trailers_and_early_hints(tls_files: dict[str, str]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"trailer", b"x-checksum")]})
        await send({"type": "http.response.body", "body": b"part1", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            response = await client.request("GET", "/")
            assert response.informational[0][0] == 103
            assert (b"link", b"</style.css>; rel=preload") in response.informational[0][1]
            assert response.status == 200
            assert bytes(response.body) == b"part1part2"
            assert response.trailers == [(b"x-checksum", b"abc")]

    with run_server(app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_app_errors_give_500_or_reset(tls_files: dict[str, str]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        raise RuntimeError("boom")

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            early = await client.request("GET", "/early")
            assert early.status == 500
            late = await client.request("GET", "/late")
            assert late.reset_code == 0x102  # H3_INTERNAL_ERROR: the response cannot be finished
            again = await client.request("GET", "/early")
            assert again.status == 500

    with run_server(app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_alt_svc_advertised_on_tcp_responses(
    tls_files: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    def fetch(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client_ssl_context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
                return data

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        head = fetch(server.port).split(b"\r\n\r\n")[0].lower()
        assert b'alt-svc: h3=":%d"; ma=86400' % server.port in head
    with run_server(echo_app, **h3_server_kwargs(tls_files, alt_svc=False)) as server:
        assert b"alt-svc" not in fetch(server.port).lower()


def test_h3_needs_a_certificate() -> None:
    with pytest.raises(ConfigError, match="h3"):
        Config("app:app", protocols="h1,h3")
    with pytest.raises(ConfigError, match="h3-max-connections"):
        Config("app:app", h3_max_connections=0)
