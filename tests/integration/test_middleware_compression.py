"""CompressionMiddleware against a real server: negotiation, streaming, skips and Vary."""

from __future__ import annotations

import asyncio
import gzip
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import brotli
import httpx
import pytest
import zstandard
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from roadrunner.middleware.compression import CompressionMiddleware
from roadrunner.middleware.etag import ETagMiddleware
from tests.helpers import run_server

TEXT = ("roadrunner compresses text " * 100).encode()


async def text(request: Request) -> Response:
    return PlainTextResponse(TEXT, headers={"ETag": '"t1"', "Vary": "Cookie"})


async def small(request: Request) -> Response:
    return PlainTextResponse("tiny")


async def image(request: Request) -> Response:
    return Response(TEXT, media_type="image/png")


async def encoded(request: Request) -> Response:
    return Response(gzip.compress(TEXT), media_type="text/plain", headers={"Content-Encoding": "gzip"})


async def no_transform(request: Request) -> Response:
    return PlainTextResponse(TEXT, headers={"Cache-Control": "no-transform"})


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(4):
            yield f"chunk {i} ".encode() * 50

    return StreamingResponse(chunks(), media_type="application/json")


async def small_unsized(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"short"

    return StreamingResponse(chunks(), media_type="text/plain")


def make_app(**options: object) -> Starlette:
    return Starlette(
        routes=[
            Route("/text", text), Route("/small", small), Route("/image", image),
            Route("/encoded", encoded), Route("/no-transform", no_transform),
            Route("/stream", stream), Route("/small-unsized", small_unsized),
        ],
        middleware=[
            Middleware(CompressionMiddleware, **options),  # type: ignore[arg-type]
            Middleware(ETagMiddleware, max_size=1000),  # /stream (1600 bytes) streams past it
        ],
    )


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with run_server(make_app()) as server, httpx.Client(base_url=server.url) as client:
        yield client


def raw_get(client: httpx.Client, path: str, accept: str) -> tuple[httpx.Response, bytes]:
    with client.stream("GET", path, headers={"Accept-Encoding": accept}) as response:
        return response, b"".join(response.iter_raw())


DECODERS = {
    "gzip": gzip.decompress,
    "br": brotli.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
}


@pytest.mark.parametrize(("accept", "expected"), [
    ("gzip", "gzip"),
    ("br", "br"),
    ("zstd", "zstd"),
    ("gzip, br, zstd", "zstd"),  # equal q: server preference
    ("gzip;q=1.0, br;q=0.5, zstd;q=0.2", "gzip"),
    ("br;q=0.9, *;q=0.1", "br"),
    ("*", "zstd"),
    ("GZIP;Q=0.5", "gzip"),
])
def test_negotiation_and_round_trip(client: httpx.Client, accept: str, expected: str) -> None:
    response, raw = raw_get(client, "/text", accept)
    assert response.headers["content-encoding"] == expected
    assert DECODERS[expected](raw) == TEXT
    assert int(response.headers["content-length"]) == len(raw) < len(TEXT)
    assert response.headers["vary"] == "Cookie, Accept-Encoding"
    assert response.headers["etag"] == 'W/"t1"'  # weakened: the bytes differ per coding


@pytest.mark.parametrize("accept", ["identity", "gzip;q=0, br;q=0, zstd;q=0", "*;q=0", "deflate", "gzip;q=abc"])
def test_nothing_acceptable_sends_identity_with_vary(client: httpx.Client, accept: str) -> None:
    response, raw = raw_get(client, "/text", accept)
    assert "content-encoding" not in response.headers
    assert raw == TEXT
    assert response.headers["vary"] == "Cookie, Accept-Encoding"
    assert response.headers["etag"] == '"t1"'


@pytest.mark.parametrize("path", ["/small", "/image", "/encoded", "/no-transform", "/small-unsized"])
def test_skipped_responses_are_untouched(client: httpx.Client, path: str) -> None:
    response, raw = raw_get(client, path, "gzip")
    if path == "/encoded":
        assert response.headers["content-encoding"] == "gzip"
        assert gzip.decompress(raw) == TEXT
    else:
        assert "content-encoding" not in response.headers
    assert "accept-encoding" not in response.headers.get("vary", "").lower()


def test_streaming_response_is_compressed_chunk_by_chunk(client: httpx.Client) -> None:
    response, raw = raw_get(client, "/stream", "gzip")
    assert response.headers["content-encoding"] == "gzip"
    assert "content-length" not in response.headers
    assert response.headers["transfer-encoding"] == "chunked"
    expected = b"".join(f"chunk {i} ".encode() * 50 for i in range(4))
    assert gzip.decompress(raw) == expected


def test_each_streamed_chunk_is_decodable_on_arrival() -> None:
    """A sync flush after every chunk: the client decodes chunk 0 before chunk 1 exists."""
    gate = threading.Event()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"0" * 600, "more_body": True})
        await asyncio.to_thread(gate.wait, 5)
        await send({"type": "http.response.body", "body": b"1" * 600, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with run_server(CompressionMiddleware(app)) as server, httpx.Client(base_url=server.url) as client:
        with client.stream("GET", "/", headers={"Accept-Encoding": "gzip"}) as response:
            decoder = zlib.decompressobj(31)
            decoded = b""
            raw = response.iter_raw()
            while len(decoded) < 600:
                decoded += decoder.decompress(next(raw))
            assert decoded == b"0" * 600
            gate.set()
            rest = b"".join(decoder.decompress(chunk) for chunk in raw)
            assert rest == b"1" * 600 and decoder.eof


def test_304_gets_vary_and_weak_etag(client: httpx.Client) -> None:
    response = client.get("/text", headers={"If-None-Match": '"t1"', "Accept-Encoding": "gzip"})
    assert response.status_code == 304
    assert response.headers["vary"] == "Cookie, Accept-Encoding"
    assert response.headers["etag"] == 'W/"t1"'


def test_head_is_not_compressed_but_varies(client: httpx.Client) -> None:
    response = client.head("/text", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert "Accept-Encoding" in response.headers["vary"]


def test_minimum_size_and_encodings_are_options() -> None:
    app = make_app(minimum_size=10_000, encodings=["gzip"])
    with run_server(app) as server, httpx.Client(base_url=server.url) as client:
        response, raw = raw_get(client, "/text", "br, gzip")  # 2700 bytes < 10000
        assert "content-encoding" not in response.headers and raw == TEXT
    app = make_app(minimum_size=0, encodings=["gzip"])
    with run_server(app) as server, httpx.Client(base_url=server.url) as client:
        response, raw = raw_get(client, "/small", "br, gzip")
        assert response.headers["content-encoding"] == "gzip"
        assert gzip.decompress(raw) == b"tiny"


def test_bad_options_refused() -> None:
    with pytest.raises(ValueError):
        CompressionMiddleware(make_app(), minimum_size=-1)
    with pytest.raises(ValueError):
        CompressionMiddleware(make_app(), encodings=["lzma"])
