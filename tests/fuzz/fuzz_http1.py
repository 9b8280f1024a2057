"""HTTP/1.1: the same bytes through the httptools and the h11 connection.

A small driver of its own (an in-memory transport, the loop run by hand): the client's bytes,
cut into the same writes, go to an HttpToolsConnection and an H11Connection. The app records
every scope and body it gets and answers 200. Both must serve the same requests (equal scopes,
equal bodies), answer with the same statuses in the same order (rejections included) and
leave the connection in the same state (open or closed).

Input: byte 0 bits 0-2 pick how the rest is cut into writes; the rest is the client's bytes
(request heads, bodies in any framing, pipelined requests).

With FUZZ_H1_COLLECT=<dir>, a disagreement is saved there and fuzzing goes on (to survey them
all while the known ones of issue 15 are still open).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz import driver  # noqa: E402

with driver.instrumented():
    from roadrunner.protocols.http1 import H11Connection, HttpToolsConnection
    from roadrunner.server import ServerState

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")  # the app's bodies are b"ok"
seen: list[tuple[dict[str, Any], bytes]] = []


async def recording_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen.append(({k: v for k, v in scope.items() if k != "state"}, body))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


CONFIGS = {kind: driver.config(recording_app, http=kind, ws="none") for kind in ("httptools", "h11")}
CLASSES = {"httptools": HttpToolsConnection, "h11": H11Connection}


def cut(wire: bytes, mode: int) -> list[bytes]:
    if mode == 0 or len(wire) < 2:
        return [wire]
    if mode == 1:
        return [wire[i:i + 1] for i in range(len(wire))]
    rng = random.Random(mode)
    points = sorted(rng.sample(range(1, len(wire)), min(len(wire) - 1, mode * 2)))
    return [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]


def serve(kind: str, chunks: list[bytes]) -> tuple[Any, ...]:
    seen.clear()
    state = ServerState()
    connection = CLASSES[kind](CONFIGS[kind], state, {}, driver.loop)
    transport = driver.connect(connection)
    pending = list(chunks)
    for _ in range(4 * len(chunks) + 8):  # a paused transport keeps the rest, as a socket does
        if transport.closed or not pending:
            break
        if transport.reading:
            connection.data_received(pending.pop(0))
        driver.spin(3)
    driver.spin()
    out = bytes(transport.out)
    outcome = (list(seen), STATUS_LINE.findall(out), transport.closed)
    driver.hang_up(transport)
    assert not state.tasks, f"{kind}: tasks left"
    return outcome


def check(data: bytes) -> None:
    if not data:
        return
    chunks = cut(data[1:], data[0] & 7)
    fast = serve("httptools", chunks)
    strict = serve("h11", chunks)
    collect = os.environ.get("FUZZ_H1_COLLECT")
    if collect and fast != strict:
        Path(collect, hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)
        return
    assert fast == strict, f"httptools {fast!r}\n      h11 {strict!r}"
    driver.assert_no_errors()


if __name__ == "__main__":
    driver.main("http1", check)
