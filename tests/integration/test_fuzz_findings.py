"""What the fuzz harnesses (tests/fuzz/) found, each reproduced against the real server."""

from __future__ import annotations

from typing import Any

import pytest
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from tests.helpers import capture_logs, run_server
from tests.integration.test_http2_support import RawH2, request_headers


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.mark.parametrize("case", ["malformed", "refused"])
def test_h2_requests_then_goaway_in_one_read(case: str) -> None:
    """A request h2 wants reset (malformed, RFC 9113 §8.1.1; past the concurrency limit,
    §5.1.2) read together with the client's GOAWAY: h2 is closed by the time roadrunner
    answers the request, and the reset must not escape data_received (fuzz/http2)."""
    with run_server(hello, protocols="h2", h2_max_concurrent_streams=1) as server, \
            capture_logs("asyncio") as asyncio_log, capture_logs("roadrunner.error") as errors:
        with RawH2(server.port) as client:
            frames = []
            if case == "malformed":
                frames.append(client.headers_frame(1, [*request_headers(), (b"", b"")]))
            else:
                frames += [client.headers_frame(1, request_headers(), end_stream=False),
                           client.headers_frame(3, request_headers())]
            client.send(*frames, GoAwayFrame(0, last_stream_id=0))
            while client.sock.recv(65536):  # raw: no SETTINGS ACK may follow the GOAWAY
                pass
        with RawH2(server.port) as client:
            client.request(1)
            assert client.stream_outcome(1)["body"] == b"hello"
    assert not [r for r in asyncio_log.records if r.exc_info], asyncio_log.text
    assert not [r for r in errors.records if r.exc_info], errors.text


@pytest.mark.parametrize("case", ["malformed", "refused"])
def test_h2_request_reset_by_the_client_in_the_same_read(case: str) -> None:
    """A request h2 wants reset, read together with the client's own RST_STREAM for it: the
    stream is closed by the time roadrunner resets it, and the connection serves on (RFC 9113
    §5.4.2: a stream error is not a connection error; fuzz/http2)."""
    with run_server(hello, protocols="h2", h2_max_concurrent_streams=1) as server, \
            capture_logs("asyncio") as asyncio_log:
        with RawH2(server.port) as client:
            if case == "malformed":
                frames = [client.headers_frame(1, [*request_headers(), (b"", b"")])]
                reset, follow_up = 1, 3
            else:
                frames = [client.headers_frame(1, request_headers(), end_stream=False),
                          client.headers_frame(3, request_headers())]
                reset, follow_up = 3, 5
            client.send(*frames, RstStreamFrame(reset, error_code=0x8))
            if case == "refused":
                client.send(RstStreamFrame(1, error_code=0x8))
            client.request(follow_up)
            assert client.stream_outcome(follow_up)["body"] == b"hello"
    assert not [r for r in asyncio_log.records if r.exc_info], asyncio_log.text
