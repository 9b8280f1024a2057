"""A minimal HTTP/1.1 client codec for the harness's own checks and the idle-connection client.

Just enough to encode a scenario's request and to tell when a response is complete
(Content-Length or chunked, RFC 9112 §6.3 and §7.1); wrk does the measuring.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass

from bench.scenarios import Request


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    size: int  # bytes of the buffer this response used, head included


def encode_request(request: Request, authority: str, path: str | None = None) -> bytes:
    """The request's bytes: Host first, then the scenario's headers, then Content-Length, or
    Transfer-Encoding: chunked with the body in `request.chunks` chunks. `path` overrides the
    request's own."""
    lines = [f"{request.method} {path or request.path} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in request.headers]
    body = request.body
    if request.chunks:
        lines.append("Transfer-Encoding: chunked")
        body = chunked(request.body, request.chunks)
    elif request.body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body: bytes, count: int) -> bytes:
    """body as `count` chunks of (about) equal size and the last chunk (RFC 9112 §7.1)."""
    size = -(-len(body) // count)  # ceil
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def _dechunk(data: bytes) -> tuple[bytes, int] | None:
    """Decode a chunked body (RFC 9112 §7.1); None until the last chunk and trailers arrive."""
    body: list[bytes] = []
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return None
        size = int(data[pos:end].split(b";", 1)[0], 16)
        pos = end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n\r\n", pos - 2)
            if trailer_end < 0:
                return None
            return b"".join(body), trailer_end + 4
        if len(data) < pos + size + 2:
            return None
        body.append(data[pos:pos + size])
        pos += size + 2


def parse_response(buffer: bytes) -> Response | None:
    """Parse one complete response from the start of buffer; None if more bytes are needed."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    status_line, *header_lines = buffer[:head_end].split(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers = tuple(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(b":") for line in header_lines)
    )
    fields = dict(headers)
    start = head_end + 4
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        decoded = _dechunk(buffer[start:])
        if decoded is None:
            return None
        body, used = decoded
        return Response(status, headers, body, start + used)
    length = int(fields.get(b"content-length", b"0"))
    if len(buffer) < start + length:
        return None
    return Response(status, headers, buffer[start:start + length], start + length)


def _client_tls() -> ssl.SSLContext:
    """TLS for the harness's checks of its own self-signed servers: HTTP/1.1 by ALPN."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def fetch(host: str, port: int, request: Request, timeout: float = 5.0,
          tls: bool = False) -> Response:
    """Send one request on a new connection (over TLS if asked) and read its response."""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
        if tls:
            sock = stack.enter_context(_client_tls().wrap_socket(sock, server_hostname=host))
        sock.sendall(encode_request(request, f"{host}:{port}"))
        buffer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(262144)
            if not chunk:
                break
            buffer += chunk
            response = parse_response(buffer)
            if response is not None:
                return response
    raise ConnectionError(f"no complete response to {request.method} {request.path}")
