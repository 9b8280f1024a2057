"""What the slow-client tests share on every protocol: short pace windows and one app whose
routes are a slow reader, a fast producer and a slow producer."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.helpers import read_body

WINDOW = 0.6  # --timeout-request-body / --timeout-send in these tests
RATE = 200  # bytes/s: 120 bytes per window


def pace_limits(**kwargs: Any) -> dict[str, Any]:
    """Server settings with both pace guards on short windows (any of them overridable)."""
    kwargs.setdefault("timeout_request_body", WINDOW)
    kwargs.setdefault("min_request_body_rate", RATE)
    kwargs.setdefault("timeout_send", WINDOW)
    kwargs.setdefault("min_send_rate", RATE)
    return kwargs


def pace_app(big_chunks: int, outcomes: list[str], release: threading.Event) -> Any:
    """/echo answers the body's length, /hold does too but reads nothing until `release` is set; /big streams `big_chunks` messages of 64 KiB and /huge
    1,024 (each noting in `outcomes` whether it completed), /whole sends /big's bytes in one
    message; /drip is a slow app writing a few bytes every 0.25 s for about four windows; /late
    reads its body only after two windows; / says ok."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        if path in ("/echo", "/late", "/hold"):
            if path == "/late":
                await asyncio.sleep(WINDOW * 2.5)
            while path == "/hold" and not release.is_set():
                await asyncio.sleep(0.01)
            answer = b"%d" % len(await read_body(receive))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": answer})
        elif path in ("/big", "/huge"):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            try:
                for _ in range(big_chunks if path == "/big" else 1024):
                    await send({"type": "http.response.body", "body": b"b" * 65536, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                outcomes.append("complete")
            except OSError:
                outcomes.append("disconnected")
        elif path == "/whole":  # the app is done at once: the bytes wait in the server's buffers
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"w" * (big_chunks * 65536)})
        elif path == "/drip":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for index in range(10):
                await send({"type": "http.response.body", "body": b"%d," % index, "more_body": True})
                await asyncio.sleep(0.25)
            await send({"type": "http.response.body", "body": b"end"})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    return app
