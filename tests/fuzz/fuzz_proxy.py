"""PROXY protocol v1/v2: arbitrary header bytes into the listener's ProxyProtocolReader.

The bytes are read as a socket would deliver them to the reader (never more than it asks
for, in chunks of a size the input picks). Whatever they are:
- nothing escapes, and the reader always asks for at least one more byte until it is done;
- a rejected header closes the connection with nothing written;
- an accepted one used exactly its own bytes (never one byte past it), matches what
  `parse` makes of the whole stream, and the connection it hands over serves a request
  with the header's addresses as the scope's client and server.

Input: byte 0 bits 0-1 pick the mode (v1, v2, auto), bits 2-7 the largest read; the rest is
what the load balancer sent.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz import driver  # noqa: E402

with driver.instrumented():
    from roadrunner.protocols.http1 import connection_class
    from roadrunner.protocols.proxy_wrapper import ProxiedTransport, ProxyProtocolReader
    from roadrunner.proxy_protocol import ProxyProtocolError, parse
    from roadrunner.server import ServerState

MODES = ("v1", "v2", "auto", "auto")
REQUEST = b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"


async def addresses_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the scope's client and server, as the connection saw them."""
    answer = repr((scope["client"], scope["server"])).encode("utf-8", "backslashreplace")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


CONFIGS = {mode: driver.config(addresses_app, proxy_protocol=mode, proxy_protocol_allow_ips="*")
           for mode in MODES}


def expected(stream: bytes, mode: str) -> Any:
    try:
        return parse(stream, mode)
    except ProxyProtocolError:
        return "rejected"


def check(data: bytes) -> None:
    if not data:
        return
    mode = MODES[data[0] & 3]
    largest = (data[0] >> 2) + 1
    stream = data[1:]
    cfg = CONFIGS[mode]
    state = ServerState()
    h1 = connection_class(cfg)
    reader = ProxyProtocolReader(cfg, state, lambda: h1(cfg, state, {}, driver.loop), None, driver.loop)
    transport = driver.connect(reader)  # type: ignore[arg-type]
    pos = 0
    while not reader.done and pos < len(stream):
        buffer = reader.get_buffer(-1)
        assert len(buffer) >= 1, f"reader asks for {len(buffer)} bytes after {pos}"
        size = min(len(buffer), largest, len(stream) - pos)
        buffer[:size] = stream[pos:pos + size]
        pos += size
        reader.buffer_updated(size)
    if not reader.done:
        reader.eof_received()  # the stream ends inside the header
        assert transport.closed and not transport.out
        driver.hang_up(transport)
        driver.assert_no_errors()
        return
    want = expected(stream, mode)
    protocol = transport.protocol
    if protocol is reader:
        assert transport.closed and not transport.out, "a rejected header closes, silently"
        assert want == "rejected" or want is None, f"parse() accepts what the reader refused: {want}"
        driver.hang_up(transport)
        driver.assert_no_errors()
        return
    assert protocol is not None
    proxied = protocol.transport  # type: ignore[attr-defined]
    assert isinstance(proxied, ProxiedTransport)
    header = proxied.header
    assert pos == header.length, f"read {pos} bytes for a {header.length}-byte header"
    assert header == want, f"the reader got {header}, parse() {want}"
    protocol.data_received(REQUEST)  # type: ignore[attr-defined]
    driver.spin()
    client = driver.PEER if header.source is None else header.source
    server = driver.SOCK if header.destination is None else header.destination
    # The scope's addresses are (host, port) pairs; a UNIX path has no port (ASGI: None).
    client_text = repr((client[:2] if isinstance(client, tuple) else None,
                        server[:2] if isinstance(server, tuple) else None)).encode("utf-8", "backslashreplace")
    head, _, body = bytes(transport.out).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), f"after {header}: {bytes(transport.out)!r}"
    assert body == client_text, f"scope addresses {body!r}, header {client_text!r}"
    driver.hang_up(transport)
    driver.assert_no_errors()


if __name__ == "__main__":
    driver.main("proxy", check)
