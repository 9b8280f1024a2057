"""ETagMiddleware against a real server: derived and app ETags, 304s, streaming, the size cap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.responses import Response

from roadrunner.middleware.etag import ETagMiddleware
from tests.helpers import raw_request, run_server

BODY = "x" * 1000


def make_app() -> FastAPI:
    app = FastAPI()

    @app.api_route("/page", methods=["GET", "HEAD"])
    def page() -> PlainTextResponse:
        return PlainTextResponse(BODY, headers={"Cache-Control": "max-age=60", "Vary": "Cookie"})

    @app.get("/tagged")
    def tagged() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"a" * 2000

        return StreamingResponse(chunks(), headers={"ETag": 'W/"v7"'}, media_type="text/plain")

    @app.get("/stream")
    def stream(chunks: int = 3, size: int = 100) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for i in range(chunks):
                yield bytes([65 + i]) * size

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/sse")
    def sse() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: 1\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/missing")
    def missing() -> Response:
        return Response("nope", status_code=404)

    @app.post("/page")
    def post() -> PlainTextResponse:
        return PlainTextResponse(BODY)

    app.add_middleware(ETagMiddleware, max_size=4096)
    return app


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with run_server(make_app()) as server, httpx.Client(base_url=server.url) as client:
        yield client


def test_derived_etag_is_stable_and_strong(client: httpx.Client) -> None:
    first = client.get("/page")
    second = client.get("/page")
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert etag == second.headers["etag"]
    assert first.text == BODY


@pytest.mark.parametrize("template", ["{}", 'W/{}', '"zzz", {}', '"a,b" , W/{}'])
def test_matching_if_none_match_is_304_with_validators(client: httpx.Client, template: str) -> None:
    etag = client.get("/page").headers["etag"]
    response = client.get("/page", headers={"If-None-Match": template.format(etag)})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "max-age=60"
    assert response.headers["vary"] == "Cookie"
    assert "content-type" not in response.headers


def test_star_matches_and_head_is_answered(client: httpx.Client) -> None:
    assert client.get("/page", headers={"If-None-Match": "*"}).status_code == 304
    head = client.head("/page")
    assert head.headers["etag"] == client.get("/page").headers["etag"]
    assert client.head("/page", headers={"If-None-Match": head.headers["etag"]}).status_code == 304


def test_non_matching_tag_gets_full_response(client: httpx.Client) -> None:
    response = client.get("/page", headers={"If-None-Match": '"other"'})
    assert response.status_code == 200
    assert response.text == BODY


def test_app_etag_kept_and_compared_without_buffering(client: httpx.Client) -> None:
    response = client.get("/tagged")
    assert response.headers["etag"] == 'W/"v7"'
    assert len(response.content) == 6000  # above the cap: the app's tag still works
    assert client.get("/tagged", headers={"If-None-Match": '"v7"'}).status_code == 304


def test_small_streaming_body_gets_etag(client: httpx.Client) -> None:
    response = client.get("/stream", params={"chunks": 3, "size": 100})
    assert response.content == b"A" * 100 + b"B" * 100 + b"C" * 100
    etag = response.headers["etag"]
    again = client.get("/stream", params={"chunks": 3, "size": 100}, headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_streaming_body_above_cap_passes_untouched(client: httpx.Client) -> None:
    response = client.get("/stream", params={"chunks": 5, "size": 1000})
    assert response.status_code == 200
    assert "etag" not in response.headers
    assert response.content == b"".join(bytes([65 + i]) * 1000 for i in range(5))
    assert response.headers.get("transfer-encoding") == "chunked"


def test_other_statuses_methods_and_event_streams_untouched(client: httpx.Client) -> None:
    assert "etag" not in client.get("/missing").headers
    assert "etag" not in client.post("/page").headers
    assert "etag" not in client.get("/sse").headers


def test_304_on_the_wire_has_no_body(client: httpx.Client) -> None:
    etag = client.get("/page").headers["etag"]
    port = int(str(client.base_url).rsplit(":", 1)[1])
    raw = raw_request(port, (
        f"GET /page HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    ).encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 304")
    assert body == b""
    assert b"transfer-encoding" not in head.lower()


def test_negative_cap_refused() -> None:
    with pytest.raises(ValueError):
        ETagMiddleware(make_app(), max_size=-1)
