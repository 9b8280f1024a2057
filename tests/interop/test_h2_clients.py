"""HTTP/2 interop with clients we did not write: curl, nghttp and h2load (nghttp2)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_server
from tests.interop.conftest import require_tool

# Every test here runs once per HTTP/2 engine (nghttp2, h2): see the http2_engine fixture.
pytestmark = pytest.mark.usefixtures("http2_engine")

TRAILER_BODY = b"body before trailers"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the request body (or "hello"); /trailers answers with a trailer section."""
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/trailers":
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum")]})
        await send({"type": "http.response.body", "body": TRAILER_BODY})
        await send({"type": "http.response.trailers",
                    "headers": [(b"x-checksum", b"abc123")], "more_trailers": False})
        return
    payload = body or b"hello"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"x-http-version", scope["http_version"].encode())]})
    await send({"type": "http.response.body", "body": payload})


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=60, check=False)


def tls_kwargs(tls_files: dict[str, str]) -> dict[str, Any]:
    """A TLS listener; its default protocols are h1 and h2 (ALPN picks)."""
    return {"ssl_certfile": tls_files["certfile"], "ssl_keyfile": tls_files["keyfile"],
            "access_log": False}


def test_curl_http2_over_tls(tls_files: dict[str, str]) -> None:
    curl = require_tool("curl")
    with run_server(app, **tls_kwargs(tls_files)) as server:
        out = run(curl, "-sS", "--http2", "--cacert", tls_files["cafile"],
                  "-D", "-", "-w", "\n%{http_version}", f"https://localhost:{server.port}/")
    assert out.returncode == 0, out.stderr
    head, _, rest = out.stdout.partition("\n\n")  # text mode turned CRLF into LF
    body, _, version = rest.rpartition("\n")
    # curl prints the HTTP/2 status line as "HTTP/2 200" (RFC 9113 §8.3.2 :status).
    assert head.startswith("HTTP/2 200")
    assert "x-http-version: 2" in head.lower()
    assert body == "hello"
    assert version == "2"


def test_curl_http2_prior_knowledge_h2c() -> None:
    curl = require_tool("curl")
    with run_server(app, protocols="h1,h2", access_log=False) as server:
        out = run(curl, "-sS", "--http2-prior-knowledge", "-i", "-w", "\n%{http_version}",
                  server.url + "/")
        # The same port still serves HTTP/1.1 to a client that does not open with the preface.
        h1 = run(curl, "-sS", "--http1.1", "-w", "\n%{http_version}", server.url + "/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/2 200")
    assert out.stdout.endswith("hello\n2")
    assert h1.stdout == "hello\n1.1"


@pytest.mark.parametrize("transport", ["tls", "h2c"])
def test_curl_http2_post_300k_echoed(transport: str, tls_files: dict[str, str], tmp_path: Path) -> None:
    curl = require_tool("curl")
    payload = bytes(range(256)) * 1200  # 307,200 bytes, every byte value
    upload = tmp_path / "upload.bin"
    upload.write_bytes(payload)
    received = tmp_path / "received.bin"
    if transport == "tls":
        kwargs = tls_kwargs(tls_files)
        flags = ["--http2", "--cacert", tls_files["cafile"]]
    else:
        kwargs = {"protocols": "h1,h2", "access_log": False}
        flags = ["--http2-prior-knowledge"]
    with run_server(app, **kwargs) as server:
        out = run(curl, "-sS", *flags, "--data-binary", f"@{upload}", "-o", str(received),
                  "-w", "%{http_version} %{size_upload}",
                  server.url + "/echo")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"2 {len(payload)}"
    assert received.read_bytes() == payload


def test_nghttp_h2c_upgrade_from_http1() -> None:
    nghttp = require_tool("nghttp")
    with run_server(app, protocols="h1,h2", access_log=False) as server:
        out = run(nghttp, "-u", "-v", server.url + "/upgrade")
        body = run(nghttp, "-u", server.url + "/upgrade")
    assert out.returncode == 0, out.stdout + out.stderr
    # RFC 7540 §3.2: the HTTP/1.1 request carries Upgrade: h2c and HTTP2-Settings; the server
    # answers 101 and the response to that request arrives on stream 1 as HTTP/2 frames.
    assert "upgrade: h2c" in out.stdout
    assert "http2-settings: " in out.stdout
    assert "HTTP Upgrade response" in out.stdout
    assert "HTTP/1.1 101 Switching Protocols" in out.stdout
    assert "HTTP Upgrade success" in out.stdout
    assert re.search(r"recv SETTINGS frame <length=\d+, flags=0x00, stream_id=0>", out.stdout)
    assert re.search(r"recv \(stream_id=1\) :status: 200", out.stdout)
    assert "recv (stream_id=1) x-http-version: 2" in out.stdout
    assert re.search(r"recv DATA frame <length=5, flags=0x0[01], stream_id=1>", out.stdout)
    assert body.returncode == 0, body.stderr
    assert body.stdout == "hello"


def request_stream_id(verbose: str) -> int:
    """The stream nghttp opened for its request (it sends PRIORITY anchors on idle streams first)."""
    match = re.search(r"send HEADERS frame <[^>]*stream_id=(\d+)>", verbose)
    assert match is not None, verbose
    return int(match.group(1))


def test_nghttp_sees_trailers(tls_files: dict[str, str]) -> None:
    nghttp = require_tool("nghttp")
    with run_server(app, **tls_kwargs(tls_files)) as server:
        url = f"https://localhost:{server.port}/trailers"
        # nghttp 1.52 does not send "te: trailers" on its own, so the test asks for it.
        out = run(nghttp, "-v", "-H", "te: trailers", url)
        without = run(nghttp, "-v", url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "te: trailers" in out.stdout
    sid = request_stream_id(out.stdout)
    # RFC 9113 §8.1: the trailer section is a HEADERS frame that ends the stream, after DATA.
    data = out.stdout.index(f"recv DATA frame <length={len(TRAILER_BODY)}, flags=0x00, stream_id={sid}>")
    trailer = out.stdout.index(f"recv (stream_id={sid}) x-checksum: abc123")
    assert data < trailer
    assert re.search(rf"recv HEADERS frame <length=\d+, flags=0x05, stream_id={sid}>", out.stdout[trailer:])
    assert TRAILER_BODY.decode() in out.stdout
    # Without "te: trailers" the server drops the trailers (RFC 9110 §6.5.1 lets it) and ends
    # the stream with the body instead.
    assert without.returncode == 0, without.stdout + without.stderr
    assert "x-checksum: abc123" not in without.stdout
    sid = request_stream_id(without.stdout)
    assert re.search(rf"recv DATA frame <length=\d+, flags=0x01, stream_id={sid}>", without.stdout)
    assert TRAILER_BODY.decode() in without.stdout


H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored"
)


def h2load(url: str, *flags: str) -> dict[str, int]:
    out = run(require_tool("h2load"), *flags, url)
    match = H2LOAD_REQUESTS.search(out.stdout)
    assert match is not None, out.stdout + out.stderr
    total, started, done, succeeded, failed, errored = map(int, match.groups())
    statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out.stdout)
    assert statuses is not None, out.stdout
    protocol = re.search(r"Application protocol: (\S+)", out.stdout)
    return {"total": total, "started": started, "done": done, "succeeded": succeeded,
            "failed": failed, "errored": errored, "2xx": int(statuses.group(1)),
            "h2": int(protocol is not None and protocol.group(1) in ("h2", "h2c"))}


@pytest.mark.parametrize(("transport", "streams"), [("tls", 10), ("h2c", 10), ("tls", 16), ("h2c", 16)])
def test_h2load_no_failed_requests(transport: str, streams: int, tls_files: dict[str, str]) -> None:
    kwargs = tls_kwargs(tls_files) if transport == "tls" else {"protocols": "h1,h2", "access_log": False}
    with run_server(app, **kwargs) as server:
        result = h2load(server.url + "/", "-n", "2000", "-c", "4", "-m", str(streams))
    assert result == {"total": 2000, "started": 2000, "done": 2000, "succeeded": 2000,
                      "failed": 0, "errored": 0, "2xx": 2000, "h2": 1}


def test_h2load_against_max_concurrent_streams(tls_files: dict[str, str]) -> None:
    with run_server(app, h2_max_concurrent_streams=8, **tls_kwargs(tls_files)) as server:
        at_limit = h2load(server.url + "/", "-n", "1000", "-c", "2", "-m", "8")
        over = h2load(server.url + "/", "-n", "1000", "-c", "2", "-m", "32")
    assert at_limit["succeeded"] == 1000
    assert (at_limit["failed"], at_limit["errored"]) == (0, 0)
    # h2load writes its first 32 requests before it reads the server's SETTINGS (the limit is
    # unbounded until then, RFC 9113 §6.5.2); the server refuses the streams beyond 8 with
    # REFUSED_STREAM (§5.1.2), which h2load counts as errors and does not retry. Only those
    # early streams may fail: at most 24 per connection, and every other request succeeds.
    assert over["done"] == 1000
    assert over["failed"] == over["errored"] <= 2 * (32 - 8)
    assert over["succeeded"] == over["2xx"] == 1000 - over["failed"]


def test_nghttp_small_windows_upload_and_download(tmp_path: Path) -> None:
    # 64 KiB stream and connection windows on the client side (-w 16 -W 16): the server must
    # wait for WINDOW_UPDATE (RFC 9113 §6.9) while sending the 1 MB echo back.
    nghttp = require_tool("nghttp")
    payload = bytes(range(251)) * 4200  # 1,054,200 bytes
    upload = tmp_path / "upload.bin"
    upload.write_bytes(payload)
    with run_server(app, protocols="h1,h2", access_log=False) as server:
        out = subprocess.run([nghttp, "-w", "16", "-W", "16", "-d", str(upload), server.url + "/echo"],
                             capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == payload
