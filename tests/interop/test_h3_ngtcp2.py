"""HTTP/3 interop with the ngtcp2 example client (`gtlsclient`, Debian ngtcp2-client)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import read_body, run_server
from tests.integration.test_http3_helpers import h3_server_kwargs
from tests.interop.conftest import require_tool


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET answers with the HTTP version; POST echoes the body."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    if scope["method"] == "GET":
        body = bytearray(b"hello over HTTP/" + scope["http_version"].encode())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": bytes(body)})


def gtlsclient(port: int, *args: str, uri: str = "/") -> subprocess.CompletedProcess[str]:
    command = [
        require_tool("gtlsclient"), "--exit-on-all-streams-close", "--no-quic-dump",
        "--timeout=20s", *args, "127.0.0.1", str(port), f"https://localhost:{port}{uri}",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def server(tls_files: dict[str, str]) -> Any:
    require_tool("gtlsclient")
    with run_server(app, **h3_server_kwargs(tls_files, access_log=False)) as running:
        yield running


def test_get(server: Any, tmp_path: Path) -> None:
    result = gtlsclient(server.port, "-q", f"--download={tmp_path}", uri="/hello")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hello").read_bytes() == b"hello over HTTP/3"


@pytest.mark.parametrize("loss", [[], ["-r", "0.05", "-t", "0.05"]], ids=["clean", "5pct-loss"])
def test_post_100k_echo_byte_identical(server: Any, tmp_path: Path, loss: list[str]) -> None:
    payload = bytes(range(251)) * 400  # ~100 kB, not a multiple of any frame size
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    download = tmp_path / "out"
    download.mkdir()
    result = gtlsclient(server.port, "-q", *loss, "-m", "POST", f"--data={source}",
                        f"--download={download}", uri="/echo")
    assert result.returncode == 0, result.stderr
    assert (download / "echo").read_bytes() == payload


@pytest.mark.parametrize("loss", [[], ["-r", "0.05", "-t", "0.05"]], ids=["clean", "5pct-loss"])
def test_100_requests_on_one_connection(server: Any, loss: list[str]) -> None:
    result = gtlsclient(server.port, *loss, "-n", "100", uri="/")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count(":status: 200") == 100
    assert output.count("[:status: ") == 100  # no other status
