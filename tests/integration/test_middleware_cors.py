"""CORSMiddleware against a real server, with Starlette and FastAPI apps."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from roadrunner.middleware.cors import CORSConfigError, CORSMiddleware
from tests.helpers import run_server

ORIGIN = "https://app.example"


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello", headers={"Vary": "Accept-Language"})


async def own_cors(request: object) -> PlainTextResponse:
    return PlainTextResponse("mine", headers={"Access-Control-Allow-Origin": "https://own.example"})


def starlette_app(**options: object) -> Starlette:
    return Starlette(
        routes=[Route("/", hello, methods=["GET", "POST", "PUT", "OPTIONS"]), Route("/own", own_cors)],
        middleware=[Middleware(CORSMiddleware, **options)],  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def listed() -> Iterator[httpx.Client]:
    app = starlette_app(
        allow_origins=[ORIGIN],
        allow_origin_regex=r"https://[a-z0-9]+\.preview\.example",
        allow_origin_predicate=lambda origin: origin.endswith(".trusted.example"),
        allow_methods=["GET", "PUT"],
        allow_headers=["X-Token", "Content-Type"],
        expose_headers=["X-Request-Id"],
        max_age=120,
    )
    with run_server(app) as server, httpx.Client(base_url=server.url) as client:
        yield client


@pytest.mark.parametrize(
    "origin", [ORIGIN, "https://pr42.preview.example", "https://api.trusted.example"]
)
def test_allowed_origin_gets_cors_headers(listed: httpx.Client, origin: str) -> None:
    response = listed.get("/", headers={"Origin": origin})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-expose-headers"] == "X-Request-Id"
    assert "access-control-allow-credentials" not in response.headers
    # The app's own Vary is kept and Origin added to it.
    assert response.headers["vary"] == "Accept-Language, Origin"


def test_disallowed_origin_gets_no_cors_headers_but_vary(listed: httpx.Client) -> None:
    response = listed.get("/", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert not [k for k in response.headers if k.startswith("access-control-")]
    assert response.headers["vary"] == "Accept-Language, Origin"


def test_regex_must_match_whole_origin(listed: httpx.Client) -> None:
    response = listed.get("/", headers={"Origin": "https://pr42.preview.example.evil"})
    assert "access-control-allow-origin" not in response.headers


def test_request_without_origin_still_varies(listed: httpx.Client) -> None:
    response = listed.get("/")
    assert "access-control-allow-origin" not in response.headers
    assert "Origin" in response.headers["vary"]


def test_preflight_allowed_short_circuits_with_204(listed: httpx.Client) -> None:
    response = listed.options("/", headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "x-token, content-type",
    })
    assert response.status_code == 204
    assert response.content == b""
    assert "content-length" not in response.headers
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-methods"] == "GET, PUT"
    assert response.headers["access-control-allow-headers"] == "content-type, x-token"
    assert response.headers["access-control-max-age"] == "120"
    assert response.headers["vary"] == (
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    )


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    {"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"},
    {"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
     "Access-Control-Request-Headers": "x-secret"},
])
def test_preflight_refused_is_403_without_cors_headers(
    listed: httpx.Client, headers: dict[str, str]
) -> None:
    response = listed.options("/", headers=headers)
    assert response.status_code == 403
    assert not [k for k in response.headers if k.startswith("access-control-")]
    assert "Origin" in response.headers["vary"]


def test_safelisted_method_is_always_allowed_in_preflight(listed: httpx.Client) -> None:
    response = listed.options("/", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert response.status_code == 204


def test_plain_options_reaches_the_app(listed: httpx.Client) -> None:
    # No Access-Control-Request-Method: not a preflight, the app answers.
    response = listed.options("/", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.text == "hello"
    assert response.headers["access-control-allow-origin"] == ORIGIN


def test_app_set_cors_header_wins(listed: httpx.Client) -> None:
    response = listed.get("/own", headers={"Origin": ORIGIN})
    assert response.headers.get_list("access-control-allow-origin") == ["https://own.example"]


def test_wildcard_without_credentials_is_constant_star() -> None:
    app = starlette_app(allow_origins=["*"], allow_methods="*", allow_headers="*")
    with run_server(app) as server, httpx.Client(base_url=server.url) as client:
        response = client.get("/", headers={"Origin": "https://any.example"})
        assert response.headers["access-control-allow-origin"] == "*"
        # The answer does not depend on Origin, so caches need not vary on it.
        assert response.headers["vary"] == "Accept-Language"
        response = client.options("/", headers={
            "Origin": "https://any.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "X-A,X-B",
        })
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["access-control-allow-methods"] == "PATCH"
        assert response.headers["access-control-allow-headers"] == "x-a, x-b"


def test_credentials_with_wildcard_reflects_origin_fastapi() -> None:
    app = FastAPI()

    @app.get("/me")
    def me() -> dict[str, str]:
        return {"user": "ann"}

    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True)
    with run_server(app) as server, httpx.Client(base_url=server.url) as client:
        response = client.get("/me", headers={"Origin": "https://a.example"})
        assert response.json() == {"user": "ann"}
        assert response.headers["access-control-allow-origin"] == "https://a.example"
        assert response.headers["access-control-allow-credentials"] == "true"
        assert response.headers["vary"] == "Origin"
        preflight = client.options("/me", headers={
            "Origin": "https://b.example", "Access-Control-Request-Method": "GET",
        })
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "https://b.example"
        assert preflight.headers["access-control-allow-credentials"] == "true"


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(CORSConfigError):
        CORSMiddleware(hello)
    with pytest.raises(CORSConfigError):
        CORSMiddleware(hello, allow_origins=["*"], max_age=-1)
