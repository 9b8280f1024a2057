"""A real haproxy in TCP mode in front of roadrunner, with send-proxy and send-proxy-v2.

The client connects to haproxy from 127.0.0.2, haproxy connects to roadrunner from 127.0.0.1:
the app must see 127.0.0.2 and the client's own port, which only the PROXY header carries.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import run_server
from tests.interop.conftest import require_tool

CLIENT_ADDRESS = "127.0.0.2"


async def whoami(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = json.dumps(
        {"client": scope["client"], "server": scope["server"], "scheme": scope["scheme"]}
    ).encode()
    await send({
        "type": "http.response.start", "status": 200,
        "headers": [(b"content-type", b"application/json")],
    })
    await send({"type": "http.response.body", "body": body})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"haproxy exited with {process.returncode}: {output}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"haproxy did not listen on {port}")


@contextlib.contextmanager
def haproxy(backend_port: int, tmp_path: Path) -> Iterator[dict[str, int]]:
    """haproxy with one frontend per PROXY version, both to roadrunner on backend_port."""
    binary = require_tool("haproxy")
    ports = {"v1": free_port(), "v2": free_port()}
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        f"""
global
    maxconn 100

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend front_v1
    bind 127.0.0.1:{ports["v1"]}
    default_backend back_v1

frontend front_v2
    bind 127.0.0.1:{ports["v2"]}
    default_backend back_v2

backend back_v1
    server roadrunner 127.0.0.1:{backend_port} send-proxy

backend back_v2
    server roadrunner 127.0.0.1:{backend_port} send-proxy-v2
"""
    )
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    process = subprocess.Popen(
        [binary, "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        for port in ports.values():
            wait_listening(port, process)
        yield ports
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout:
            process.stdout.close()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_haproxy_send_proxy_carries_the_client_address(version: str, tmp_path: Path) -> None:
    with run_server(whoami, proxy_protocol=version) as server:
        with haproxy(server.port, tmp_path) as ports:
            transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
            with httpx.Client(transport=transport) as client:
                response = client.get(f"http://127.0.0.1:{ports[version]}/")
                # A second request on the same connection keeps the addresses.
                again = client.get(f"http://127.0.0.1:{ports[version]}/")
    assert response.status_code == 200
    seen = response.json()
    assert seen["client"][0] == CLIENT_ADDRESS
    assert seen["client"][1] > 0
    # The server address is the haproxy frontend the client reached, not roadrunner's socket.
    assert seen["server"] == ["127.0.0.1", ports[version]]
    assert again.json() == seen


def test_haproxy_auto_mode_accepts_both_versions(tmp_path: Path) -> None:
    with run_server(whoami, proxy_protocol="auto") as server:
        with haproxy(server.port, tmp_path) as ports:
            seen = {}
            for version, port in ports.items():
                with socket.create_connection(
                    ("127.0.0.1", port), timeout=5, source_address=(CLIENT_ADDRESS, 0)
                ) as sock:
                    client_port = sock.getsockname()[1]
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
                body = data.partition(b"\r\n\r\n")[2]
                # Chunked body: one chunk, the JSON object sits between the size line and CRLF.
                seen[version] = json.loads(body.split(b"\r\n")[1])
                assert seen[version]["client"] == [CLIENT_ADDRESS, client_port]
    assert seen["v1"]["server"][1] != seen["v2"]["server"][1]


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2"])
def test_haproxy_tls_passthrough(
    http2: bool, tmp_path: Path, tls_files: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    """TLS through haproxy in TCP mode: the PROXY header precedes the ClientHello (and ALPN)."""
    with run_server(
        whoami, proxy_protocol="v2",
        ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
    ) as server:
        with haproxy(server.port, tmp_path) as ports:
            transport = httpx.HTTPTransport(
                local_address=CLIENT_ADDRESS, verify=client_ssl_context, http2=http2
            )
            with httpx.Client(transport=transport) as client:
                response = client.get(f"https://127.0.0.1:{ports['v2']}/")
    assert response.status_code == 200
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    seen = response.json()
    assert seen["client"][0] == CLIENT_ADDRESS
    assert seen["scheme"] == "https"
