"""The connectrpc Echo service served by `roadrunner tests.frameworks.grpc_app.service:app`.

echo_pb2*.py and echo_connect.py are generated from echo.proto by generate.sh (checked in so the
tests need neither protoc nor the plugin). `/ping` answers "pong" outside gRPC, for bench/grpc.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from .echo_connect import EchoASGIApplication
from .echo_pb2 import Msg, StreamRequest

MAX_MESSAGE = 16 * 1024 * 1024  # above connectrpc's 4 MB default: the tests send 4 MiB messages


def _record(path: str, **fields: Any) -> None:
    """Write `fields` plus the wall-clock time to `path` (the test reads it from outside)."""
    if path:
        with open(path, "w") as f:
            json.dump({"time": time.time(), **fields}, f)


class EchoService:
    async def unary(self, request: Msg, ctx: RequestContext[Msg, Msg]) -> Msg:
        headers = ctx.request_headers
        if "x-in" in headers:
            ctx.response_headers["x-out"] = headers["x-in"]
            ctx.response_trailers["x-trailer"] = "t-" + headers["x-in"]
        if "grpc-encoding" in headers:
            ctx.response_headers["x-seen-encoding"] = headers["grpc-encoding"]
        return Msg(n=request.n + 1, payload=request.payload, text=request.text)

    async def server_stream(
        self, request: StreamRequest, ctx: RequestContext[StreamRequest, Msg]
    ) -> AsyncIterator[Msg]:
        payload = b"x" * request.size
        try:
            for n in range(request.count):
                yield Msg(n=n, payload=payload)
                if request.interval_ms:
                    await asyncio.sleep(request.interval_ms / 1000)
        finally:
            _record(request.marker, event="finally")

    async def client_stream(
        self, request: AsyncIterator[Msg], ctx: RequestContext[Msg, Msg]
    ) -> Msg:
        count, total = 0, 0
        async for message in request:
            count += 1
            total += message.n
        return Msg(n=count, text=str(total))

    async def bidi(self, request: AsyncIterator[Msg], ctx: RequestContext[Msg, Msg]) -> AsyncIterator[Msg]:
        async for message in request:
            yield Msg(n=message.n * 2, payload=message.payload)

    async def fail(self, request: Msg, ctx: RequestContext[Msg, Msg]) -> Msg:
        raise ConnectError(Code.NOT_FOUND, f"no such thing: {request.text}")

    async def sleep(self, request: StreamRequest, ctx: RequestContext[StreamRequest, Msg]) -> Msg:
        _record(
            request.marker, event="start", grpc_timeout=ctx.request_headers.get("grpc-timeout"),
            timeout_ms=ctx.timeout_ms,
        )
        await asyncio.sleep(request.interval_ms / 1000)
        return Msg(n=request.interval_ms)


connect_app = EchoASGIApplication(EchoService(), read_max_bytes=MAX_MESSAGE)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/ping":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"pong"})
        return
    await connect_app(scope, receive, send)
