"""gRPC's HTTP/2 framing rules that depend on the server, not the app: a response without body
is one HEADERS frame, so a gRPC "Trailers-Only" answer reaches grpcio with its status."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from hyperframe.frame import DataFrame, HeadersFrame

from tests.helpers import read_body, run_server
from tests.integration.test_http2_support import RawH2, request_headers


async def trailers_only_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every call the way gRPC servers answer an immediate error (PROTOCOL-HTTP2.md,
    "Trailers-Only"): status 200, the grpc-status in the headers, no body."""
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/grpc"), (b"grpc-status", b"5"),
        (b"grpc-message", b"gone")]})
    await send({"type": "http.response.body", "body": b""})


def stream_frames(client: RawH2, stream_id: int) -> list[Any]:
    frames = []
    while True:
        frame = client.read_frame()
        assert frame is not None, f"connection closed after {frames}"
        if frame.stream_id == stream_id:
            frames.append(frame)
            if "END_STREAM" in frame.flags:
                return frames


def test_empty_response_is_a_single_headers_frame() -> None:
    # RFC 9113 §8.1: a response may be a HEADERS frame carrying END_STREAM; gRPC requires it
    # for Trailers-Only ("the last received HEADERS frame" carries END_STREAM).
    with run_server(trailers_only_app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1, request_headers(b"/pkg.Svc/Call", b"POST", te=b"trailers",
                                          content_type=b"application/grpc"), body=b"\0" * 5)
        frames = stream_frames(client, 1)
        assert [type(f) for f in frames] == [HeadersFrame], frames
        assert (b"grpc-status", b"5") in frames[0].decoded


def test_grpcio_reads_a_trailers_only_status() -> None:
    with run_server(trailers_only_app, protocols="h2") as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.unary_unary("/pkg.Svc/Call")
            with pytest.raises(grpc.RpcError) as info:
                call(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "gone"


def test_head_of_a_streaming_response_is_not_held_back() -> None:
    """The head waits for the app's next message only within one loop iteration."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"late"})

    with run_server(app, protocols="h2") as server, RawH2(server.port) as client:
        start = time.monotonic()
        client.request(1)
        head = client.wait_for(HeadersFrame, 1)
        assert head is not None and time.monotonic() - start < 0.4
        assert "END_STREAM" not in head.flags
        body = client.wait_for(DataFrame, 1)
        assert body is not None and body.data == b"late"


MESSAGE = b"\0\0\0\0\x0b" + b"m" * 11  # a gRPC frame of an 11-byte message: 16 bytes


@pytest.mark.usefixtures("http2_engine")
def test_small_body_messages_of_one_pass_share_data_frames() -> None:
    """A server stream of small messages (one ASGI send each) is not one DATA frame per send:
    those of one loop pass leave together (9 bytes of frame header per 16-byte message made a
    third of the bytes on the wire and a frame for the client to parse per message)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/grpc")]})
        for _ in range(200):
            await send({"type": "http.response.body", "body": MESSAGE, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1)
        frames = [f for f in stream_frames(client, 1) if isinstance(f, DataFrame)]
    assert b"".join(f.data for f in frames) == MESSAGE * 200
    assert len(frames) <= 20, len(frames)  # one per SEND_SLICE (1 ms) at most, not 200


@pytest.mark.usefixtures("http2_engine")
def test_a_body_message_is_not_held_back_when_the_app_pauses() -> None:
    """Coalescing waits for the end of the loop pass only: a message the app follows with a
    pause leaves at once, and the next one follows it in its own frame."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"second"})

    with run_server(app, protocols="h2") as server, RawH2(server.port) as client:
        start = time.monotonic()
        client.request(1)
        first = client.wait_for(DataFrame, 1)
        assert first is not None and first.data == b"first"
        assert time.monotonic() - start < 0.4
        second = client.wait_for(DataFrame, 1)
        assert second is not None and second.data == b"second"
