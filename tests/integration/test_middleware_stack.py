"""The edge stack switched on by Config / CLI flags for an app that has no middleware itself."""

from __future__ import annotations

import gzip

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from roadrunner.config import Config, ConfigError
from tests.helpers import run_server

BODY = "edge " * 400


async def page(request: object) -> PlainTextResponse:
    return PlainTextResponse(BODY)


APP = Starlette(routes=[Route("/", page)])


def test_all_edge_middleware_from_config() -> None:
    with run_server(
        APP, cors_allow_origins=["https://app.example"], cors_allow_credentials=True,
        cors_expose_headers="ETag", security_headers=True, etag=True, compress=True,
        rate_limit="100/s", rate_burst=200,
    ) as server, httpx.Client(base_url=server.url) as client:
        with client.stream("GET", "/", headers={
            "Origin": "https://app.example", "Accept-Encoding": "gzip",
        }) as response:
            raw = b"".join(response.iter_raw())
        assert gzip.decompress(raw) == BODY.encode()
        headers = response.headers
        assert headers["access-control-allow-origin"] == "https://app.example"
        assert headers["access-control-allow-credentials"] == "true"
        assert headers["access-control-expose-headers"] == "ETag"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["etag"].startswith('W/"')
        assert headers["vary"] == "Accept-Encoding, Origin"
        again = client.get("/", headers={"If-None-Match": headers["etag"], "Accept-Encoding": "gzip",
                                         "Origin": "https://app.example"})
        assert again.status_code == 304
        assert again.headers["vary"] == "Accept-Encoding, Origin"
        preflight = client.options("/", headers={"Origin": "https://app.example",
                                                 "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 204


def test_defaults_add_nothing() -> None:
    with run_server(APP) as server, httpx.Client(base_url=server.url) as client:
        response = client.get("/", headers={"Origin": "https://app.example", "Accept-Encoding": "gzip"})
        assert "vary" not in response.headers and "etag" not in response.headers
        assert "content-encoding" not in response.headers


@pytest.mark.parametrize("options", [
    {"cors_allow_credentials": True},
    {"cors_allow_origins": ["https://a.example"], "cors_max_age": -5},
    {"etag": True, "etag_max_size": -1},
    {"compress": True, "compress_min_size": -1},
])
def test_invalid_edge_options_are_config_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Config(APP, lifespan="off", **options).load()


def test_cli_flags_reach_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from roadrunner import cli

    seen: dict[str, object] = {}
    monkeypatch.setattr(cli, "run", lambda app, **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(cli.main, [
        "tests.integration.test_middleware_stack:APP",
        "--cors-allow-origin", "https://a.example", "--cors-allow-origin", "https://b.example",
        "--cors-allow-credentials", "--security-headers", "--etag", "--compress",
        "--rate-limit", "100/s", "--rate-burst", "200", "--rate-limit-exempt", "/health",
        "--proxy-headers-mode", "forwarded",
    ])
    assert result.exit_code == 0, result.output
    assert seen["cors_allow_origins"] == ["https://a.example", "https://b.example"]
    assert seen["cors_allow_credentials"] is True
    assert seen["security_headers"] is True and seen["etag"] is True and seen["compress"] is True
    assert seen["rate_limit"] == "100/s" and seen["rate_burst"] == 200
    assert seen["rate_limit_exempt"] == ["/health"]
    assert seen["proxy_headers_mode"] == "forwarded"
    config = Config(APP, lifespan="off", **{k: v for k, v in seen.items() if k in {
        "cors_allow_origins", "cors_allow_credentials", "security_headers", "etag", "compress",
        "rate_limit", "rate_burst", "rate_limit_exempt", "proxy_headers_mode"}})
    config.load()
    names = []
    app = config.loaded_app
    while hasattr(app, "app"):
        names.append(type(app).__name__)
        app = app.app
    assert names == ["ProxyHeadersMiddleware", "CORSMiddleware", "RateGuardMiddleware",
                     "SecurityHeadersMiddleware", "CompressionMiddleware", "ETagMiddleware"]
