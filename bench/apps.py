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

STREAM_CHUNK = b"s" * 4096
STREAM_CHUNKS = 4  # /stream: 4 x 4 KiB body messages, no Content-Length
DOWNLOAD_BODY_SIZE = 10 * LARGE_BODY_SIZE  # /download: 10 MiB, sent as ten 1 MiB messages

# gzip_response: a ~16 KiB JSON document, serialised once (the scenario measures compression).
JSON_16K_DOCUMENT: dict[str, Any] = {"items": [
    {"id": i, "name": f"item-{i:04d}", "price": round(i * 1.37, 2),
     "tags": ["alpha", "beta", "gamma"][:i % 3 + 1], "in_stock": i % 2 == 0}
    for i in range(172)
]}
JSON_16K_BODY = json.dumps(JSON_16K_DOCUMENT).encode()

# post_4kb_form: a 4,096-byte application/x-www-form-urlencoded body of 64 fields. The app only
# counts the fields (a full parse_qsl costs ~120-400 µs here, more than the servers' own work on
# a request, and would measure urllib instead of the server).
FORM_FIELDS = 64
_FORM_VALUE = "caf%C3%A9+au+lait%2C+" + "v" * 38  # 59 characters
FORM_BODY = "&".join(f"f{i:02d}={_FORM_VALUE}" for i in range(FORM_FIELDS)).encode() + b"w"
assert len(FORM_BODY) == 4096

ITEM_PATHS = 100  # varied_paths: /items/0 .. /items/99


def item_body(index: int) -> bytes:
    """What /items/N answers."""
    return f"item {index}".encode("ascii")


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


async def _count_body(receive: Receive) -> int:
    """Read the request body message by message, keeping only its length (a streaming upload)."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return size
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return size


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _websocket_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """/ws: accept, then echo every message as it came (text as text, bytes as bytes)."""
    await receive()  # websocket.connect
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})  # refused: 403 on the wire
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Route by path: /hello, /json, /json16k, /echo, /upload, /form, /items/N, /large, /stream,
    /download, /headers (else 404); WebSocket /ws echoes."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        await _websocket_echo(scope, receive, send)
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
    elif path == "/upload":
        await _respond(send, 200, TEXT, str(await _count_body(receive)).encode("ascii"))
    elif path == "/form":
        fields = (await _read_body(receive)).count(b"&") + 1
        await _respond(send, 200, TEXT, str(fields).encode("ascii"))
    elif path.startswith("/items/"):
        await _respond(send, 200, TEXT, b"item " + path[7:].encode("utf-8"))
    elif path == "/large":
        await _respond(send, 200, OCTETS, LARGE_BODY)
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [OCTETS]})
        for i in range(STREAM_CHUNKS):
            more = i < STREAM_CHUNKS - 1
            await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": more})
    elif path == "/download":
        length = (b"content-length", str(DOWNLOAD_BODY_SIZE).encode("ascii"))
        await send({"type": "http.response.start", "status": 200, "headers": [OCTETS, length]})
        for i in range(DOWNLOAD_BODY_SIZE // LARGE_BODY_SIZE):
            more = (i + 1) * LARGE_BODY_SIZE < DOWNLOAD_BODY_SIZE
            await send({"type": "http.response.body", "body": LARGE_BODY, "more_body": more})
    elif path == "/json16k":
        await _respond(send, 200, JSON, JSON_16K_BODY)
    elif path == "/headers":
        # The body is the number of request headers, so the check sees all 30 arrived.
        await _respond(send, 200, TEXT, str(len(scope["headers"])).encode("ascii"))
    else:
        await _respond(send, 404, TEXT, b"Not Found")
