"""SecurityHeadersMiddleware against a real server (plain http and TLS)."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from roadrunner.middleware.security_headers import SecurityHeadersMiddleware
from tests.helpers import run_server


async def page(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def framed(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok", headers={"X-Frame-Options": "SAMEORIGIN"})


def make_app(**options: object) -> Starlette:
    return Starlette(
        routes=[Route("/", page), Route("/framed", framed)],
        middleware=[Middleware(SecurityHeadersMiddleware, **options)],  # type: ignore[arg-type]
    )


def test_defaults_over_http_without_hsts() -> None:
    with run_server(make_app()) as server, httpx.Client(base_url=server.url) as client:
        response = client.get("/")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "strict-transport-security" not in response.headers
        assert "content-security-policy" not in response.headers
        assert "permissions-policy" not in response.headers
        # A header the app set wins, and is not duplicated.
        assert client.get("/framed").headers.get_list("x-frame-options") == ["SAMEORIGIN"]


def test_hsts_only_over_https(tls_files: dict[str, str], client_ssl_context: object) -> None:
    with run_server(
        make_app(), ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"]
    ) as server, httpx.Client(base_url=server.url, verify=client_ssl_context) as client:  # type: ignore[arg-type]
        response = client.get("/")
        assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


def test_overrides_opt_ins_and_removal() -> None:
    app = make_app(
        frame_options="SAMEORIGIN",
        referrer_policy=None,
        content_security_policy="default-src 'self'",
        permissions_policy="geolocation=()",
        cross_origin_opener_policy="same-origin",
    )
    with run_server(app) as server, httpx.Client(base_url=server.url) as client:
        response = client.get("/")
        assert response.headers["x-frame-options"] == "SAMEORIGIN"
        assert "referrer-policy" not in response.headers
        assert response.headers["content-security-policy"] == "default-src 'self'"
        assert response.headers["permissions-policy"] == "geolocation=()"
        assert response.headers["cross-origin-opener-policy"] == "same-origin"


def test_everything_disabled_passes_through() -> None:
    app = make_app(content_type_options=None, frame_options=None, referrer_policy=None, hsts=None)
    with run_server(app) as server, httpx.Client(base_url=server.url) as client:
        response = client.get("/")
        assert response.text == "ok"
        assert "x-content-type-options" not in response.headers
