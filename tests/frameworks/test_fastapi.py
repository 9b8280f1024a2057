"""FastAPI under roadrunner: JSON, a 20 MB upload, streaming, SSE (sse-starlette), background
tasks, WebSocket and lifespan state, compared with uvicorn."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from typing import Any

import pytest

from tests.frameworks.oracle import (
    Served,
    assert_same,
    assert_streams_like_uvicorn,
    assert_ws_echo,
    both,
    pair,
)

pytestmark = pytest.mark.timeout(40)
APP = "tests.frameworks.apps.fastapi_app:app"

rr, uv = pair(APP)


def wait_for_state(served: Served, key: str, done: Any, timeout: float = 5.0) -> Any:
    """Poll /status until `done(state)` holds; the last state seen."""
    deadline = time.monotonic() + timeout
    with served.client() as client:
        while True:
            state = client.get("/status", params={"key": key}).json()["state"]
            if done(state) or time.monotonic() > deadline:
                return state
            time.sleep(0.05)


def test_json_get(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "GET", "/json", params={"q": "x y"})
    assert a.json() == {"hello": "world", "q": "x y"}
    assert_same(a, b)


def test_json_post(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "POST", "/json", json={"n": [1, 2, 3], "s": "é"})
    assert a.json() == {"received": {"n": [1, 2, 3], "s": "é"}}
    assert_same(a, b)


def test_json_validation_error(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "POST", "/json", content=b"{not json",
                headers={"content-type": "application/json"})
    assert a.status_code == 422
    assert_same(a, b)


def test_multipart_upload_20mb(rr: Served, uv: Served) -> None:
    data = os.urandom(20 * 1024 * 1024)
    files = {"file": ("blob.bin", data, "application/octet-stream")}
    a, b = both(rr, uv, "POST", "/upload", files=files)
    expected = {"name": "blob.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert a.json() == expected
    assert_same(a, b)


def test_streaming_response(rr: Served, uv: Served) -> None:
    assert_streams_like_uvicorn(rr, uv, "/stream")


def read_three_events_and_leave(served: Served) -> tuple[Any, list[str]]:
    """Read 3 SSE events, then close the connection; the generator's state afterwards."""
    key = uuid.uuid4().hex
    events: list[str] = []
    with served.client() as client, client.stream("GET", "/sse", params={"key": key}) as response:
        head = response
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(line.split(":", 1)[1].strip())
                if len(events) == 3:
                    break
    return (head, key), events


def test_sse_client_leaves_and_generator_finishes(rr: Served, uv: Served) -> None:
    (a, a_key), a_events = read_three_events_and_leave(rr)
    (b, b_key), b_events = read_three_events_and_leave(uv)
    assert a_events == b_events == ["0", "1", "2"]
    assert_same(a, b, body=False)
    # After the client left, the server's http.disconnect reaches sse-starlette, which stops
    # the generator: its `finally` runs (ASGI HTTP spec, "Disconnected Client").
    assert wait_for_state(uv, b_key, lambda s: s == "finally ran") == "finally ran"
    assert wait_for_state(rr, a_key, lambda s: s == "finally ran") == "finally ran"


def test_background_task_runs_after_response(rr: Served, uv: Served) -> None:
    for served in (uv, rr):
        key = uuid.uuid4().hex
        with served.client() as client:
            response = client.post("/background", params={"key": key})
            received_at = time.time()
        assert response.json()["queued"] == key, served.label
        state = wait_for_state(served, key, lambda s: isinstance(s, dict))
        assert isinstance(state, dict), f"{served.label}: task did not run: {state!r}"
        # The job sleeps 0.3 s before it records done_at: the response came before it ended.
        assert received_at < state["done_at"], served.label


def test_lifespan_state_reaches_requests(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "GET", "/lifespan")
    assert a.json() == {"greeting": "set in lifespan"}
    assert_same(a, b)


def test_websocket_echo(rr: Served, uv: Served) -> None:
    assert_ws_echo(rr, uv, "/ws")
