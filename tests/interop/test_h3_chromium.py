"""HTTP/3 interop with headless Chromium forced onto QUIC for the test origin."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.helpers import run_server
from tests.integration.test_http3_helpers import h3_server_kwargs
from tests.interop.conftest import require_tool

PAGE = (
    b"<html><body><div id='protocol'>none</div><script>"
    b"document.getElementById('protocol').textContent ="
    b" 'protocol=' + performance.getEntries()[0].nextHopProtocol;"
    b"</script></body></html>"
)


async def page_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8")]})
    await send({"type": "http.response.body", "body": PAGE})


def spki_hash(certfile: str) -> str:
    """base64(sha256(SubjectPublicKeyInfo)), as --ignore-certificate-errors-spki-list wants."""
    cert = x509.load_pem_x509_certificate(Path(certfile).read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_chromium_loads_page_over_h3(tls_files: dict[str, str], tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    with run_server(page_app, **h3_server_kwargs(tls_files, access_log=False)) as server:
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--origin-to-force-quic-on=localhost:{server.port}",
            f"--ignore-certificate-errors-spki-list={spki_hash(tls_files['certfile'])}",
            "--host-resolver-rules=MAP localhost 127.0.0.1",
            "--dump-dom", f"https://localhost:{server.port}/",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    match = re.search(r"protocol=([\w/.-]*)", result.stdout)
    assert match is not None, result.stdout + result.stderr[-2000:]
    assert match.group(1) == "h3"
