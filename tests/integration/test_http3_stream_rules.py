"""HTTP/3 request-stream rules the server enforces the same on every aioquic release (1.3 on
Python 3.10, 1.7 on 3.11+): streams that end or are reset before their head, truncated frames,
unknown frame types. Each case is sent by a real QUIC client to a real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import ErrorCode

from tests.helpers import run_server
from tests.integration.test_http3 import echo_app
from tests.integration.test_http3_helpers import H3Client, Response, h3_connect, h3_server_kwargs

UNKNOWN_FRAME_TYPE = 0x21  # reserved for greasing (RFC 9114 §7.2.8): must be ignored


def frame(frame_type: int, length: int, payload: bytes = b"") -> bytes:
    return encode_uint_var(frame_type) + encode_uint_var(length) + payload


async def open_raw_stream(client: H3Client) -> tuple[int, Response]:
    """A new request stream, once the server's MAX_STREAMS allows it (RFC 9000 §4.6): aioquic
    1.3's client would send a RESET_STREAM past the limit."""
    while client._quic.get_next_available_stream_id() // 4 >= client._quic._remote_max_streams_bidi:
        await asyncio.sleep(0.005)
    stream_id = client._quic.get_next_available_stream_id()
    response = client.responses[stream_id] = Response()
    return stream_id, response


def test_streams_ended_or_reset_before_their_head(tls_files: dict[str, str]) -> None:
    """RFC 9114 §4.1: no head, no answer: the server resets its half with H3_REQUEST_INCOMPLETE
    and the client gets its stream slot back (three times the stream limit in a row)."""

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            for index in range(6):
                stream_id, response = await asyncio.wait_for(open_raw_stream(client), 5)
                if index % 2:
                    client._quic.send_stream_data(stream_id, b"", end_stream=True)  # a lone FIN
                else:
                    client._quic.reset_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
                client.transmit()
                await asyncio.wait_for(response.done.wait(), 5)
                assert response.reset_code == ErrorCode.H3_REQUEST_INCOMPLETE
                assert response.status == 0
            response = await client.request("POST", "/after", body=b"ok")
            assert (response.status, bytes(response.body)) == (200, b"ok")

    with run_server(echo_app, **h3_server_kwargs(tls_files, h3_max_concurrent_streams=2)) as server:
        asyncio.run(main(server.port))


@pytest.mark.parametrize("frame_type", [0x0, 0x1], ids=["DATA", "HEADERS"])
def test_truncated_frame_is_a_connection_error(tls_files: dict[str, str], frame_type: int) -> None:
    """RFC 9114 §7.1: a frame cut short by the end of the stream is H3_FRAME_ERROR; other
    connections are served on."""

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            stream_id = client.start_request("POST", "/", end=False)
            client._quic.send_stream_data(stream_id, frame(frame_type, 10, b"abc"), end_stream=True)
            client.transmit()
            await asyncio.wait_for(client.closed_event.wait(), 5)
            assert client.terminated is not None
            assert client.terminated.error_code == ErrorCode.H3_FRAME_ERROR
        async with h3_connect(port, tls_files["cafile"]) as client:
            assert (await client.request("GET", "/")).status == 200

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_unknown_frames_are_skipped_without_buffering(tls_files: dict[str, str]) -> None:
    """RFC 9114 §9, §10.5: an unknown frame's payload is dropped as it arrives, however long the
    frame claims to be; the request around it is served."""
    window = 64 * 1024
    payload = b"\x00" * (4 * window)  # needs the stream's credit renewed several times
    seen: dict[str, int] = {}

    async def main(running: Any) -> None:
        async with h3_connect(running.port, tls_files["cafile"]) as client:
            stream_id = client.start_request("POST", "/", body=b"ab", end=False)
            client._quic.send_stream_data(stream_id, frame(UNKNOWN_FRAME_TYPE, len(payload) * 2, payload))
            client.transmit()
            (connection,) = running.server.server_state.connections

            def delivered() -> int:
                quic_stream = connection.quic._streams.get(stream_id)
                return quic_stream.receiver.starting_offset() if quic_stream is not None else 0

            while delivered() < len(payload):
                await asyncio.sleep(0.005)  # the server's reads are not observable by the client
            seen["buffered"] = len(connection.h3._stream[stream_id].buffer)
            client._quic.send_stream_data(stream_id, payload)  # the rest of the unknown frame
            client.send_body(stream_id, b"cd", True)
            response = client.responses[stream_id]
            await asyncio.wait_for(response.done.wait(), 5)
            assert (response.status, bytes(response.body)) == (200, b"abcd")
        assert seen["buffered"] == 0

    with run_server(echo_app, **h3_server_kwargs(tls_files, h3_max_stream_data=window)) as server:
        asyncio.run(main(server))


def test_unknown_frame_may_end_the_request(tls_files: dict[str, str]) -> None:
    """RFC 9114 §4.1, §9: the request ends with its stream, even when the last frame is one the
    server ignores."""

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            stream_id = client.start_request("POST", "/", body=b"body", end=False)
            client._quic.send_stream_data(stream_id, frame(UNKNOWN_FRAME_TYPE, 3, b"xyz"), end_stream=True)
            client.transmit()
            response = client.responses[stream_id]
            await asyncio.wait_for(response.done.wait(), 5)
            assert (response.status, bytes(response.body)) == (200, b"body")

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))
