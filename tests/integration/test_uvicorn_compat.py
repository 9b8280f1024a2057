"""The same Starlette and FastAPI apps answer identically under roadrunner and uvicorn."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
RELEVANT_HEADERS = ("content-type", "content-length", "transfer-encoding", "set-cookie", "location")

REQUESTS = {
    "starlette": [
        ("GET", "/", {}, None),
        ("GET", "/scope/a%2Fb%20c?x=1&y=%20", {"X-Custom": "Value", "Cookie": "k=v"}, None),
        ("POST", "/scope/post", {"Content-Type": "text/plain"}, b"body"),
        ("POST", "/echo", {"Content-Type": "application/json"}, b'{"a": 1}'),
        ("PUT", "/echo", {}, bytes(range(256)) * 100),
        ("GET", "/stream", {}, None),
        ("GET", "/cookies", {}, None),
        ("GET", "/redirect", {}, None),
        ("GET", "/error", {}, None),
        ("GET", "/nope", {}, None),
        ("DELETE", "/", {}, None),
        ("HEAD", "/", {}, None),
    ],
    "fastapi": [
        ("GET", "/items/5?q=abc", {}, None),
        ("GET", "/items/notanint", {}, None),
        ("POST", "/items", {"Content-Type": "application/json"}, b'{"name": "x", "price": 1.5, "tags": ["a"]}'),
        ("POST", "/items", {"Content-Type": "application/json"}, b'{"name": "x"}'),
        ("GET", "/missing", {}, None),
        ("HEAD", "/head", {}, None),
        ("GET", "/openapi.json", {}, None),
    ],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(server: str, app: str) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", server, app, "--port", str(port), "--log-level", "warning",
               "--root-path", "/root"]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"{server} did not start") from None
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def normalise(text: str, port_a: str, port_b: str) -> str:
    return text.replace(port_a, "PORT").replace(port_b, "PORT")


@pytest.mark.parametrize("app_name", ["starlette", "fastapi"])
def test_same_answers_as_uvicorn(app_name: str) -> None:
    app = f"tests.apps.{app_name}_app:app"
    roadrunner_gen = serve("roadrunner", app)
    uvicorn_gen = serve("uvicorn", app)
    rr_url = next(roadrunner_gen)
    uv_url = next(uvicorn_gen)
    rr_port, uv_port = rr_url.rsplit(":", 1)[1], uv_url.rsplit(":", 1)[1]
    try:
        # A fresh connection per request: uvicorn closes a keep-alive connection after an app
        # error, which would race with the client reusing it; answers are compared, not reuse.
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=rr_url, limits=fresh) as rr, httpx.Client(base_url=uv_url, limits=fresh) as uv:
            for method, path, headers, body in REQUESTS[app_name]:
                a = rr.request(method, path, headers=headers, content=body)
                b = uv.request(method, path, headers=headers, content=body)
                label = f"{method} {path}"
                assert a.status_code == b.status_code, label
                assert normalise(a.text, rr_port, uv_port) == normalise(b.text, rr_port, uv_port), label
                for name in RELEVANT_HEADERS:
                    assert a.headers.get_list(name) == b.headers.get_list(name), f"{label}: {name}"
    finally:
        for gen in (roadrunner_gen, uvicorn_gen):
            with pytest.raises(StopIteration):
                next(gen)
