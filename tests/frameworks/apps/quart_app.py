"""A Quart app: hello, a JSON POST, a WebSocket echo."""

from __future__ import annotations

from typing import Any

from quart import Quart, request, websocket

app = Quart(__name__)


@app.get("/")
async def hello() -> str:
    return "hello from quart"


@app.post("/json")
async def post_json() -> dict[str, Any]:
    return {"received": await request.get_json()}


@app.websocket("/ws")
async def echo() -> None:
    while True:
        await websocket.send(await websocket.receive())
