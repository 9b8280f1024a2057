"""The benchmark application: one plain ASGI app serving every scenario by path.

The same callable is given to every server, so differences in the numbers are the servers'.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO_BODY = b"Hello, world!"  # 13 bytes
JSON_DOCUMENT: dict[str, Any] = {"message": "Hello, world!", "id": 42, "ok": True}
LARGE_BODY_SIZE = 1024 * 1024
LARGE_BODY = b"x" * LARGE_BODY_SIZE

TEXT = (b"content-type", b"text/plain; charset=utf-8")
JSON = (b"content-type", b"application/json")
OCTETS = (b"content-type", b"application/octet-stream")


async def _respond(send: Send, status: int, content_type: tuple[bytes, bytes], body: bytes) -> None:
    headers = [content_type, (b"content-length", str(len(body)).encode("ascii"))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Route by path: /hello, /json, /echo, /large, /headers; anything else is 404."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hello":
        await _respond(send, 200, TEXT, HELLO_BODY)
    elif path == "/json":
        await _respond(send, 200, JSON, json.dumps(JSON_DOCUMENT).encode())
    elif path == "/echo":
        await _respond(send, 200, OCTETS, await _read_body(receive))
    elif path == "/large":
        await _respond(send, 200, OCTETS, LARGE_BODY)
    elif path == "/headers":
        # The body is the number of request headers, so the check sees all 30 arrived.
        await _respond(send, 200, TEXT, str(len(scope["headers"])).encode("ascii"))
    else:
        await _respond(send, 404, TEXT, b"Not Found")
