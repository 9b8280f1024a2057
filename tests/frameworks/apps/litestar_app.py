"""A Litestar app: hello, a JSON POST, a WebSocket echo."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, WebSocket, get, post, websocket
from litestar.exceptions import WebSocketDisconnect


@get("/")
async def hello() -> str:
    return "hello from litestar"


@post("/json")
async def post_json(data: dict[str, Any]) -> dict[str, Any]:
    return {"received": data}


@websocket("/ws")
async def echo(socket: WebSocket) -> None:
    await socket.accept()
    try:
        while True:
            await socket.send_text(await socket.receive_text())
    except WebSocketDisconnect:
        pass


app = Litestar(route_handlers=[hello, post_json, echo])
