"""HTTP/2 answers that do not depend on timing (RFC 9113 §5.1, §6.9, §8.1; RFC 7540 §3.2).

The app answers without reading the body, so its response may leave before, between or after
the client's later frames are read. Frames already received are judged by the protocol rules
whatever the app has done: each case is sent in one write, in two, and with its second part
held back until the response is complete, 20 times, and always gets the same answer.
"""

from __future__ import annotations

import base64
import shutil
import socket
import struct
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hyperframe.frame import GoAwayFrame, PingFrame, RstStreamFrame, SettingsFrame

from tests.helpers import HTTP2_ENGINES, RunningServer, read_body, run_server
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


# Both HTTP/2 engines (test ids [nghttp2] / [h2]).
@pytest.fixture(scope="module", params=HTTP2_ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_server(
        hello, protocols="h2", h2_max_reset_rate=10_000, http2_engine=request.param
    ) as running:
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


# -- h2c upgrade (RFC 7540 §3.2): the body and the preface at any segment boundary --------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
UPLOAD = bytes(range(256)) * 400  # 100 kB


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%d:%d" % (len(body), zlib.crc32(body))})


def upgrade_request(body: bytes) -> bytes:
    settings = SettingsFrame(0)
    settings.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 20}
    encoded = base64.urlsafe_b64encode(settings.serialize_body()).rstrip(b"=")
    return (
        b"POST /echo HTTP/1.1\r\nHost: example\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + encoded + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body + PREFACE + SettingsFrame(0).serialize()
    )


def upgraded_outcome(port: int, data: bytes, cut: int) -> dict[str, Any]:
    """Send `data` in two segments split at `cut`; the answer on stream 1 after the 101."""
    client = RawH2(port, preface=False)
    with client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.send_raw(data[:cut])
        time.sleep(0.002)  # two segments, read apart
        client.send_raw(data[cut:])
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.sock.recv(1)
            assert chunk, f"closed before the 101 (cut {cut})"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 "), head
        return client.stream_outcome(1)


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_h2c_upgrade_reads_body_and_preface_at_every_boundary(http: str) -> None:
    data = upgrade_request(UPLOAD)
    body_start = data.index(b"\r\n\r\n") + 4
    preface_start = body_start + len(UPLOAD)
    cuts = sorted({
        *range(body_start - 8, body_start + 40),  # around the end of the head
        *range(body_start + 40, preface_start - 40, 4093),  # through the body
        *range(preface_start - 40, len(data)),  # the end of the body, the preface, SETTINGS
    })
    expected = b"%d:%d" % (len(UPLOAD), zlib.crc32(UPLOAD))
    with run_server(echo_length, protocols="h1,h2", http=http) as server:
        for cut in cuts:
            outcome = upgraded_outcome(server.port, data, cut)
            assert (outcome.get("status"), outcome["body"], outcome["goaway"]) == (200, expected, None), cut


def test_curl_h2c_upgrade_with_a_100k_body(tmp_path: Any) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    upload = tmp_path / "100k.bin"
    upload.write_bytes(UPLOAD)
    expected = b"%d:%d" % (len(UPLOAD), zlib.crc32(UPLOAD))
    with run_server(echo_length, protocols="h1,h2") as server:
        for _ in range(10):
            done = subprocess.run(
                [curl, "-sS", "--http2", "--data-binary", f"@{upload}", "-m", "10",
                 f"http://127.0.0.1:{server.port}/echo"],
                capture_output=True, timeout=20, check=False,
            )
            assert (done.returncode, done.stdout) == (0, expected), done.stderr


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_h2c_upgrade_answers_101_once_the_body_is_in(http: str) -> None:
    """RFC 7540 §3.2: the client sends its body whole before HTTP/2; a 101 seen mid-upload
    makes curl stop uploading (and the server then waits for the rest for ever)."""
    data = upgrade_request(UPLOAD)
    half = data.index(b"\r\n\r\n") + 4 + len(UPLOAD) // 2
    expected = b"%d:%d" % (len(UPLOAD), zlib.crc32(UPLOAD))
    with run_server(echo_length, protocols="h1,h2", http=http) as server:
        with RawH2(server.port, preface=False, timeout=0.3) as client:
            client.send_raw(data[:half])
            with pytest.raises(TimeoutError):
                client.sock.recv(1)  # nothing before the whole body
            client.sock.settimeout(5)
            client.send_raw(data[half:])
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.sock.recv(1)
                assert chunk, "closed before the 101"
                head += chunk
            assert head.startswith(b"HTTP/1.1 101 ")
            outcome = client.stream_outcome(1)
            assert (outcome.get("status"), outcome["body"]) == (200, expected)
