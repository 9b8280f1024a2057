"""HTTP/2 answers that do not depend on timing (RFC 9113 §5.1, §6.9, §8.1).

The app answers without reading the body, so its response may leave before, between or after
the client's later frames are read. Frames already received are judged by the protocol rules
whatever the app has done: each case is sent in one write, in two, and with its second part
held back until the response is complete, 20 times, and always gets the same answer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hyperframe.frame import GoAwayFrame, PingFrame, RstStreamFrame

from tests.helpers import RunningServer, run_server
from tests.integration.test_h2_conformance import (
    DATA,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    PROTOCOL_ERROR,
    WINDOW_UPDATE,
    frame,
    headers,
)
from tests.integration.test_http2_support import RawH2, request_headers

REPEAT = 20
MODES = ["one write", "two writes", "after the response"]


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers at once, without reading the request body."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with run_server(hello, protocols="h2", h2_max_reset_rate=10_000) as running:
        yield running


def post(client: RawH2, **extra: bytes) -> bytes:
    """A POST's HEADERS without END_STREAM: the request side stays open."""
    return headers(client, 1, request_headers(method=b"POST", **extra), END_HEADERS)


# id: (first part, second part, the RST_STREAM code stream 1 must get)
Parts = Callable[[RawH2], tuple[bytes, bytes]]
CASES: dict[str, tuple[Parts, int]] = {
    # RFC 9113 §8.1.1: DATA adding up to more or less than content-length is malformed.
    "8.1.1 DATA short of content-length": (
        lambda c: (post(c, content_length=b"10"), frame(DATA, END_STREAM, 1, b"abc")), PROTOCOL_ERROR
    ),
    "8.1.1 DATA past content-length": (
        lambda c: (post(c, content_length=b"2"), frame(DATA, END_STREAM, 1, b"abc")), PROTOCOL_ERROR
    ),
    # RFC 9113 §8.1: a second HEADERS without END_STREAM makes the request malformed (§8.1.1).
    "8.1 second HEADERS without END_STREAM": (
        lambda c: (post(c), headers(c, 1, [(b"x-a", b"1")], END_HEADERS)), PROTOCOL_ERROR
    ),
    # RFC 9113 §6.9: a zero increment on a stream is a stream error of type PROTOCOL_ERROR.
    "6.9 stream WINDOW_UPDATE of 0": (
        lambda c: (post(c), frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0))), PROTOCOL_ERROR
    ),
    # RFC 9113 §6.9.1: a stream window past 2^31-1 is RST_STREAM(FLOW_CONTROL_ERROR).
    "6.9.1 stream window above 2^31-1": (
        lambda c: (post(c), frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**31 - 1))), FLOW_CONTROL_ERROR
    ),
}


def wait_for_response(client: RawH2) -> None:
    """Read until the response on stream 1 is complete (END_STREAM) or the stream is reset."""
    while True:
        seen = client.read_frame()
        assert seen is not None, "the connection closed"
        if seen.stream_id == 1 and ("END_STREAM" in seen.flags or isinstance(seen, RstStreamFrame)):
            return


def first_reset(client: RawH2) -> int | None:
    """The first RST_STREAM code on stream 1 among the frames already in the server's hands.

    A PING sent after the case is answered after every frame before it was judged; a GOAWAY
    on the way fails the case (these are stream errors: the connection serves on).
    """
    client.ping(b"fence!!!")
    code: int | None = None
    for seen in client.frames:
        if isinstance(seen, RstStreamFrame) and seen.stream_id == 1 and code is None:
            code = seen.error_code
    while True:
        seen = client.read_frame()
        assert seen is not None, "the connection closed"
        assert not isinstance(seen, GoAwayFrame), f"GOAWAY {seen.error_code}"
        if isinstance(seen, RstStreamFrame) and seen.stream_id == 1 and code is None:
            code = seen.error_code
        if isinstance(seen, PingFrame) and "ACK" in seen.flags and seen.opaque_data == b"fence!!!":
            return code


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_answer_does_not_depend_on_timing(server: RunningServer, case: str, mode: str) -> None:
    parts, expected = CASES[case]
    answers = []
    for _ in range(REPEAT):
        with RawH2(server.port) as client:
            first, second = parts(client)
            if mode == "one write":
                client.send_raw(first + second)
            else:
                client.send_raw(first)
                if mode == "after the response":
                    wait_for_response(client)
                client.send_raw(second)
            answers.append(first_reset(client))
    assert answers == [expected] * REPEAT


def test_request_that_ends_after_the_response_is_not_reset(server: RunningServer) -> None:
    """The counterpart: a correct upload that ends after the response gets no RST_STREAM."""
    for _ in range(REPEAT):
        with RawH2(server.port) as client:
            client.send_raw(post(client, content_length=b"3"))
            wait_for_response(client)
            client.send_raw(frame(DATA, END_STREAM, 1, b"abc"))
            assert first_reset(client) is None
