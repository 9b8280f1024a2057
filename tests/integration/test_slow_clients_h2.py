"""Slow clients on HTTP/2, on both engines: a trickled body gets 408 + RST_STREAM(NO_ERROR), a
stream whose client sends no WINDOW_UPDATE is RST_STREAM(CANCEL), a client that reads nothing
on TCP loses the connection, and the other streams of a connection are served meanwhile."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

import httpx
import pytest
from hyperframe.frame import (
    DataFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.helpers import run_server
from tests.integration.slow_clients_support import RATE, WINDOW, pace_app, pace_limits
from tests.integration.test_http2_support import RawH2, request_headers

pytestmark = pytest.mark.usefixtures("http2_engine")

NO_ERROR, CANCEL = 0x0, 0x8
BIG = 16 * 65536
outcomes: list[str] = []
release = threading.Event()
app = pace_app(BIG // 65536, outcomes, release)


def slow_server(**kwargs: Any) -> Any:
    kwargs.setdefault("protocols", "h2")
    return run_server(app, **pace_limits(**kwargs))


def frames_of(client: RawH2, stream_id: int) -> list[Any]:
    return [frame for frame in client.frames if frame.stream_id == stream_id]


def reset_code(client: RawH2, stream_id: int) -> int | None:
    for frame in frames_of(client, stream_id):
        if isinstance(frame, RstStreamFrame):
            return int(frame.error_code)
    return None


def test_h2_slow_body_gets_408_while_another_stream_is_served() -> None:
    with slow_server() as server, RawH2(server.port) as client:
        started = time.monotonic()
        client.request(1, request_headers(b"/echo", b"POST", content_length=b"4096"), end_stream=False)
        stream_id, served = 3, 0
        while reset_code(client, 1) is None and time.monotonic() - started < WINDOW + 3:
            client.send(client.data(1, b"x"))  # 5 bytes/s
            client.request(stream_id, request_headers(b"/"))
            served += client.stream_outcome(stream_id).get("status") == 200
            stream_id += 2
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        frames = frames_of(client, 1)
        heads = [frame for frame in frames if isinstance(frame, HeadersFrame)]
        assert heads and dict(heads[0].decoded)[b":status"] == b"408"  # type: ignore[attr-defined]
        assert any(isinstance(frame, DataFrame) and "END_STREAM" in frame.flags for frame in frames)
        assert reset_code(client, 1) == NO_ERROR  # RFC 9113 §8.1: stop sending, keep the answer
        assert WINDOW <= elapsed < WINDOW + 3
        assert served >= 2
        client.request(stream_id, request_headers(b"/echo", b"POST"), body=b"q" * 5000)
        assert client.stream_outcome(stream_id)["body"] == b"5000"


@pytest.mark.parametrize("path", [b"/big", b"/whole"])
def test_h2_stream_without_window_update_is_reset_while_others_proceed(path: bytes) -> None:
    settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 16384}
    with slow_server() as server, RawH2(server.port, settings=settings) as client:
        client.send(WindowUpdateFrame(0, 64 * 1024 * 1024))  # connection window: plenty
        started = time.monotonic()
        client.request(1, request_headers(path))  # and never a WINDOW_UPDATE for stream 1
        client.request(3, request_headers(path))
        assert len(client.stream_outcome(3)["body"]) == BIG  # read with WINDOW_UPDATEs
        while reset_code(client, 1) is None and client.read_frame() is not None:
            pass
        assert reset_code(client, 1) == CANCEL
        assert WINDOW <= time.monotonic() - started < WINDOW + 3
        received = sum(len(f.data) for f in frames_of(client, 1) if isinstance(f, DataFrame))
        assert received == 16384
        assert client.is_alive()


def test_h2_connection_goes_when_the_client_reads_nothing() -> None:
    outcomes.clear()
    settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1}
    with slow_server() as server, RawH2(server.port, settings=settings) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.send(WindowUpdateFrame(0, 2**31 - 1 - 65535))
        client.request(1, request_headers(b"/huge"))
        client.request(3, request_headers(b"/huge"))
        started = time.monotonic()
        deadline = started + WINDOW + 4
        while len(outcomes) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outcomes == ["disconnected", "disconnected"]
        assert WINDOW <= time.monotonic() - started < WINDOW + 4
        assert not server.server.server_state.connections
        assert client.read_frame() is not None or client.closed  # whatever was buffered, then reset


def test_h2_slow_apps_with_fast_clients_are_not_tripped(
    tls_files: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    kwargs = {"ssl_certfile": tls_files["certfile"], "ssl_keyfile": tls_files["keyfile"]}
    with slow_server(protocols="h1,h2", **kwargs) as server, httpx.Client(
        http2=True, verify=client_ssl_context, timeout=10
    ) as client:
        drip = client.get(server.url + "/drip")
        late = client.post(server.url + "/late", content=b"l" * (3 * 1024 * 1024))
        big = client.get(server.url + "/big")
    assert drip.http_version == "HTTP/2" and drip.text == "0,1,2,3,4,5,6,7,8,9,end"
    assert late.status_code == 200 and late.text == str(3 * 1024 * 1024)
    assert len(big.content) == BIG


def test_h2_body_held_back_by_another_streams_unread_body_is_not_slow() -> None:
    """Stream 1's app reads nothing and its body fills the connection window: stream 3's client
    cannot send, so its app waiting for body must not count against the client."""
    release.clear()

    window = 65535
    with run_server(
        app, protocols="h2", timeout_request_body=WINDOW, min_request_body_rate=RATE,
        h2_initial_window_size=window, h2_connection_window_size=window,
    ) as server, RawH2(server.port) as client:
        client.request(1, request_headers(b"/hold", b"POST"), end_stream=False)
        for _ in range(window // 16384):
            client.send(client.data(1, b"u" * 16384))
        client.send(client.data(1, b"u" * (window % 16384), end_stream=True))
        client.request(3, request_headers(b"/echo", b"POST", content_length=b"1000"), end_stream=False)
        time.sleep(WINDOW * 3)
        assert client.is_alive()
        assert frames_of(client, 3) == []  # no 408: the server held the window, not the client
        release.set()
        assert client.stream_outcome(1)["body"] == b"%d" % window
        client.send(client.data(3, b"v" * 1000, end_stream=True))
        assert client.stream_outcome(3)["body"] == b"1000"
