"""HTTP/1.1 interop with curl: a client we did not write."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.helpers import run_server
from tests.interop.conftest import require_tool


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    payload = body or b"hello"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": payload})


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("curl"), "-sS", *args], capture_output=True, text=True, timeout=30)


def test_curl_get_post_chunked_and_keep_alive(tmp_path: Any) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"z" * 300_000)
    with run_server(app) as server:
        out = curl("-i", server.url + "/")
        assert out.stdout.startswith("HTTP/1.1 200 OK")
        assert "transfer-encoding: chunked" in out.stdout.lower()
        assert out.stdout.endswith("hello")
        posted = curl("--data-binary", f"@{upload}", server.url + "/echo")
        assert posted.stdout == "z" * 300_000
        chunked = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "abc", server.url + "/")
        assert chunked.stdout == "abc"
        two = curl("-v", server.url + "/a", server.url + "/b")
        assert "Re-using existing connection" in two.stderr or "Reusing existing" in two.stderr
        continue_ = curl("-v", "-H", "Expect: 100-continue", "--data-binary", f"@{upload}", server.url + "/")
        assert "HTTP/1.1 100 Continue" in continue_.stderr


def test_curl_https(tls_files: dict[str, str]) -> None:
    with run_server(app, ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
                    protocols="h1") as server:
        out = curl("--cacert", tls_files["cafile"], "--http1.1", server.url + "/")
    assert out.stdout == "hello"
