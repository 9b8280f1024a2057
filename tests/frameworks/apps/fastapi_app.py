"""A FastAPI app: JSON, a multipart upload, streaming, SSE (sse-starlette), background tasks,
WebSocket and lifespan state. /status?key=K reports what SSE generators and background
tasks recorded, so a test can see code that runs after its response."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import BackgroundTasks, FastAPI, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from sse_starlette.sse import EventSourceResponse

EVENTS: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    yield {"greeting": "set in lifespan"}


app = FastAPI(lifespan=lifespan)


@app.get("/json")
async def get_json(q: str = "") -> dict[str, Any]:
    return {"hello": "world", "q": q}


@app.post("/json")
async def post_json(payload: dict[str, Any]) -> dict[str, Any]:
    return {"received": payload}


@app.post("/upload")
async def upload(file: UploadFile) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    while chunk := await file.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return {"name": file.filename, "size": size, "sha256": digest.hexdigest()}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(4):
            yield f"chunk {index}\n".encode()
            await asyncio.sleep(0.2)

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/sse")
async def sse(key: str) -> EventSourceResponse:
    async def events() -> AsyncIterator[dict[str, str]]:
        EVENTS[key] = "streaming"
        try:
            index = 0
            while True:
                yield {"event": "tick", "data": str(index)}
                index += 1
                await asyncio.sleep(0.05)
        finally:
            EVENTS[key] = "finally ran"

    return EventSourceResponse(events())


@app.post("/background")
async def background(key: str, tasks: BackgroundTasks) -> dict[str, str]:
    async def job() -> None:
        await asyncio.sleep(0.3)
        EVENTS[key] = {"done_at": time.time()}

    tasks.add_task(job)
    EVENTS[key] = "queued"
    return {"queued": key, "sent_at": str(time.time())}


@app.get("/status")
async def status(key: str) -> dict[str, Any]:
    return {"state": EVENTS.get(key)}


@app.get("/lifespan")
async def lifespan_state(request: Request) -> dict[str, str]:
    return {"greeting": request.state.greeting}


@app.websocket("/ws")
async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return
