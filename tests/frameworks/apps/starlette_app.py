"""A Starlette app: hello, a streaming response, a WebSocket echo."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello from starlette")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(4):
            yield f"chunk {index}\n".encode()
            await asyncio.sleep(0.2)

    return StreamingResponse(chunks(), media_type="text/plain")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[Route("/", hello), Route("/stream", stream), WebSocketRoute("/ws", echo)])
