"""HTTP/3 limits, abuse handling and isolation: each limit crossed by a real QUIC client."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from aioquic.buffer import Buffer
from aioquic.h3.connection import ErrorCode as H3ErrorCode
from aioquic.h3.connection import FrameType, encode_frame
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from roadrunner.protocols.http3.connection import SEND_HIGH_WATER
from roadrunner.protocols.http3.quic_connection import CreditQuicConnection
from roadrunner.protocols.quic import gso_supported
from tests.helpers import run_server
from tests.integration.test_http3 import echo_app
from tests.integration.test_http3_helpers import (
    H3Client,
    client_configuration,
    h3_connect,
    h3_server_kwargs,
)

H3_REQUEST_REJECTED = 0x10B
H3_MESSAGE_ERROR = 0x10E
H3_FRAME_UNEXPECTED = 0x105
H3_NO_ERROR = 0x100
CONNECTION_REFUSED = 0x2
INVALID_TOKEN = 0xB


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll a condition the client can observe (there is no event for it)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def client_initial(cafile: str, port: int) -> bytes:
    """A genuine client Initial datagram (1200 bytes, padded), as a raw client would send."""
    quic = QuicConnection(configuration=client_configuration(cafile))
    quic.connect(("127.0.0.1", port), now=time.monotonic())
    return quic.datagrams_to_send(now=time.monotonic())[0][0]


def collect_replies(sock: socket.socket, quiet: float = 1.0, limit: float = 5.0) -> list[bytes]:
    """Everything the server sends until it has been quiet for `quiet` seconds."""
    replies = []
    sock.settimeout(quiet)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            replies.append(sock.recv(65536))
        except TimeoutError:
            break
    return replies


def test_max_concurrent_streams(tls_files: dict[str, str]) -> None:
    active = 0
    peak = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        while (await receive()).get("more_body"):
            pass
        active -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % peak})

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            assert client._quic._remote_max_streams_bidi == 2
            streams = [client.start_request("POST", "/", body=b"a", end=False) for _ in range(3)]
            # The third stream cannot open until one of the first two is finished.
            await wait_until(lambda: active == 2)
            client.send_body(streams[0], b"", True)
            await asyncio.wait_for(client.responses[streams[0]].done.wait(), 5)
            for stream_id in streams[1:]:
                client.send_body(stream_id, b"", True)
            for stream_id in streams:
                await asyncio.wait_for(client.responses[stream_id].done.wait(), 5)
                assert client.responses[stream_id].status == 200
        assert peak == 2

    with run_server(app, **h3_server_kwargs(tls_files, h3_max_concurrent_streams=2)) as server:
        asyncio.run(main(server.port))


def test_field_section_too_large_gets_431(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            big = await client.request("GET", "/", headers=[(b"x-big", b"a" * 2000)])
            assert big.status == 431
            small = await client.request("GET", "/", headers=[(b"x-small", b"a" * 100)])
            assert small.status == 200
            assert client.h3.received_settings is not None
            assert client.h3.received_settings[0x6] == 1000  # SETTINGS_MAX_FIELD_SECTION_SIZE

    with run_server(echo_app, **h3_server_kwargs(tls_files, h3_max_field_section_size=1000)) as server:
        asyncio.run(main(server.port))


def test_idle_timeout_closes_connection(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            assert (await client.request("GET", "/")).status == 200
            await asyncio.wait_for(client.closed_event.wait(), 5)

    with run_server(echo_app, **h3_server_kwargs(tls_files, h3_idle_timeout=0.3)) as server:
        asyncio.run(main(server.port))
        deadline = time.monotonic() + 5
        while server.server.server_state.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server.server.server_state.connections


def test_max_connections_refused(tls_files: dict[str, str]) -> None:
    class Recording(H3Client):
        instances: list[H3Client] = []

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            Recording.instances.append(self)

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as first:
            from aioquic.asyncio.client import connect

            with pytest.raises(ConnectionError):
                async with connect("127.0.0.1", port, configuration=client_configuration(tls_files["cafile"]),
                                   create_protocol=Recording):
                    pass
            refused = Recording.instances[-1]
            assert refused.terminated is not None
            assert refused.terminated.error_code == CONNECTION_REFUSED
            assert (await first.request("GET", "/")).status == 200

    with run_server(echo_app, **h3_server_kwargs(tls_files, h3_max_connections=1)) as server:
        asyncio.run(main(server.port))


def test_retry_validates_addresses(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            assert (await client.request("GET", "/")).status == 200
            assert client._quic._retry_count == 1

    with run_server(echo_app, **h3_server_kwargs(tls_files, h3_retry=True)) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(client_initial(tls_files["cafile"], server.port), ("127.0.0.1", server.port))
            replies = collect_replies(raw, quiet=0.5)
        # A spoofed source gets one small Retry packet and no handshake state.
        assert len(replies) == 1
        header = pull_quic_header(Buffer(data=replies[0]), host_cid_length=8)
        assert header.packet_type == QuicPacketType.RETRY
        assert not server.server.server_state.connections
        asyncio.run(main(server.port))


def test_retry_tokens_expire_and_bind_the_connection_id(tls_files: dict[str, str]) -> None:
    """RFC 9000 §8.1.3, §17.2.5.2: a token that is stale or names another connection ID is
    refused with INVALID_TOKEN; a fresh one for this client is accepted."""
    with run_server(echo_app, **h3_server_kwargs(tls_files, h3_retry=True)) as server:
        listener = server.server.extra_listeners[0]

        def answer(age: float, bind_cid: bool, forged: bool = False) -> tuple[int | None, int]:
            """(close error code or None, connections on the server) for one Initial."""
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.bind(("127.0.0.1", 0))
                quic = QuicConnection(configuration=client_configuration(tls_files["cafile"]))
                retry_scid = quic._peer_cid.cid if bind_cid else b"another-cid"
                quic._peer_token = listener.retry.create(
                    raw.getsockname(), b"original", retry_scid, listener.loop.time() - age
                )
                if forged:
                    quic._peer_token = bytes(len(quic._peer_token))
                quic.connect(("127.0.0.1", server.port), now=time.monotonic())
                raw.sendto(quic.datagrams_to_send(now=time.monotonic())[0][0], ("127.0.0.1", server.port))
                for reply in collect_replies(raw, quiet=0.3):
                    quic.receive_datagram(reply, ("127.0.0.1", server.port), now=time.monotonic())
                timer = quic.get_timer()
                if timer is not None:
                    quic.handle_timer(now=timer)  # ends the draining period a close starts
                codes = [e.error_code for e in iter(quic.next_event, None) if isinstance(e, ConnectionTerminated)]
                return (codes[0] if codes else None), len(server.server.server_state.connections)

        assert answer(age=60.0, bind_cid=True) == (INVALID_TOKEN, 0)
        assert answer(age=0.0, bind_cid=False) == (INVALID_TOKEN, 0)
        assert answer(age=0.0, bind_cid=True, forged=True) == (INVALID_TOKEN, 0)
        assert answer(age=0.0, bind_cid=True) == (None, 1)


@pytest.fixture(scope="module")
def big_cert_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A certificate with many names: its handshake flight exceeds 3x a client Initial."""
    ca = trustme.CA()
    names = ["127.0.0.1", "localhost", *(f"host-{i}.roadrunner.example" for i in range(250))]
    cert = ca.issue_cert(*names)
    directory = tmp_path_factory.mktemp("bigtls")
    files = {name: str(directory / f"{name}.pem") for name in ("certfile", "keyfile", "cafile")}
    cert.private_key_pem.write_to_path(files["keyfile"])
    Path(files["certfile"]).write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(files["cafile"])
    return files


def test_anti_amplification_limit(big_cert_files: dict[str, str]) -> None:
    assert Path(big_cert_files["certfile"]).stat().st_size > 3 * 1200 * 1.4  # PEM ~ 1.35x DER

    async def main(port: int) -> None:
        async with h3_connect(port, big_cert_files["cafile"]) as client:
            assert (await client.request("GET", "/")).status == 200

    with run_server(echo_app, **h3_server_kwargs(big_cert_files)) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            initial = client_initial(big_cert_files["cafile"], server.port)
            raw.sendto(initial, ("127.0.0.1", server.port))
            replies = collect_replies(raw)
        # RFC 9000 §8.1: before the address is validated, at most 3x the bytes received.
        assert replies
        assert sum(map(len, replies)) <= 3 * len(initial)
        asyncio.run(main(server.port))  # a real client completes the same handshake


def test_graceful_shutdown_goaway(tls_files: dict[str, str]) -> None:
    async def main(running: Any) -> None:
        async with h3_connect(running.port, tls_files["cafile"]) as client:
            first = client.start_request("POST", "/", body=b"part", end=False)
            await wait_until(lambda: running.server.server_state.tasks)
            running.server.should_exit = True
            await asyncio.wait_for(client.goaway_event.wait(), 5)
            assert client.goaway_id == first + 4
            late = await client.request("GET", "/late")
            assert late.reset_code == H3_REQUEST_REJECTED
            client.send_body(first, b"-end", True)
            response = client.responses[first]
            await asyncio.wait_for(response.done.wait(), 5)
            assert response.status == 200 and bytes(response.body) == b"part-end"
            await asyncio.wait_for(client.closed_event.wait(), 5)
            assert client.terminated is not None
            assert client.terminated.error_code == H3_NO_ERROR

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server))


def test_limit_concurrency_rejects_streams(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            held = client.start_request("POST", "/", body=b"x", end=False)
            rejected = await client.request("GET", "/")
            assert rejected.reset_code == H3_REQUEST_REJECTED
            client.send_body(held, b"", True)
            await asyncio.wait_for(client.responses[held].done.wait(), 5)
            assert client.responses[held].status == 200
            # The held request's task ends just after its response: once it has, the server
            # serves again.
            await wait_until(lambda: not server.server.server_state.tasks)
            assert (await client.request("GET", "/")).status == 200

    with run_server(echo_app, **h3_server_kwargs(tls_files, limit_concurrency=1)) as server:
        asyncio.run(main(server.port))


def test_stream_errors_stay_on_their_stream(tls_files: dict[str, str]) -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                seen.append("disconnect " + scope["path"])
                return
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    async def main(running: Any) -> None:
        async with h3_connect(running.port, tls_files["cafile"]) as client:
            # 1. The client cancels a request mid-body: the app sees a disconnect.
            cancelled = client.start_request("POST", "/cancelled", body=b"abc", end=False)
            await asyncio.sleep(0)
            client._quic.reset_stream(cancelled, 0x10C)
            client.transmit()
            await wait_until(lambda: "disconnect /cancelled" in seen)
            # 2. Malformed header name: H3_MESSAGE_ERROR on that stream only.
            bad = await client.request("GET", "/bad", headers=[(b"X-Upper", b"v")])
            assert bad.reset_code == H3_MESSAGE_ERROR
            # 3. No :path: malformed.
            stream_id = client._quic.get_next_available_stream_id()
            client.responses[stream_id] = type(bad)()
            client.h3.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"https"),
                                               (b":authority", b"localhost")], end_stream=True)
            client.transmit()
            await asyncio.wait_for(client.responses[stream_id].done.wait(), 5)
            assert client.responses[stream_id].reset_code == H3_MESSAGE_ERROR
            # 4. Body shorter than its content-length: the app sees a disconnect.
            short_id = client.start_request("POST", "/short", headers=[(b"content-length", b"10")],
                                            end=False)
            await wait_until(lambda: running.server.server_state.tasks)
            client.send_body(short_id, b"abc", True)
            short = client.responses[short_id]
            await asyncio.wait_for(short.done.wait(), 5)
            assert short.reset_code == H3_MESSAGE_ERROR
            await wait_until(lambda: "disconnect /short" in seen)
            # The connection still serves requests.
            ok = await client.request("GET", "/ok")
            assert ok.status == 200 and bytes(ok.body) == b"/ok"
            assert client.terminated is None

    with run_server(app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server))


def test_bad_clients_do_not_stop_the_listener(tls_files: dict[str, str]) -> None:
    async def violator(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            # RFC 9114 §4.1: DATA before HEADERS is a connection error (H3_FRAME_UNEXPECTED).
            stream_id = client._quic.get_next_available_stream_id()
            client._quic.send_stream_data(stream_id, encode_frame(FrameType.DATA, b"x"), True)
            client.transmit()
            await asyncio.wait_for(client.closed_event.wait(), 5)
            assert client.terminated is not None
            assert client.terminated.error_code == H3_FRAME_UNEXPECTED

    async def good(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            response = await client.request("POST", "/", body=b"still here")
            assert bytes(response.body) == b"still here"

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        address = ("127.0.0.1", server.port)
        initial = client_initial(tls_files["cafile"], server.port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            garbage = [
                b"",
                b"\x00",
                b"\xff" * 40,  # long header, truncated
                b"\xc0\x00\x00\x00\x01" + b"\x08" + b"A" * 8 + b"\x08" + b"B" * 8 + b"\x00" * 1200,
                b"\xc0\xba\xba\xba\xba" + b"\x08" + b"A" * 8 + b"\x08" + b"B" * 8 + b"\x00" * 1200,
                b"\x40" + b"\x11" * 60,  # short header, unknown connection ID
                initial[:600],  # truncated Initial
                initial[:40] + bytes(len(initial) - 40),  # Initial with a corrupted payload
            ]
            for datagram in garbage:
                raw.sendto(datagram, address)
            replies = collect_replies(raw, quiet=0.3)
        # Only the unknown version gets an answer: a Version Negotiation packet.
        assert len(replies) == 1 and replies[0][1:5] == b"\x00\x00\x00\x00"
        assert not server.server.server_state.connections
        asyncio.run(violator(server.port))
        asyncio.run(good(server.port))
        listener = server.server.extra_listeners[0]
        assert listener.dropped == 0


def test_request_body_backpressure_follows_the_app(tls_files: dict[str, str]) -> None:
    window = 64 * 1024
    gate = threading.Event()
    consumed = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal consumed
        message = await receive()
        consumed = len(message["body"])
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        total = consumed
        while message.get("more_body"):
            message = await receive()
            total += len(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % total})

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            size = 1024 * 1024
            stream_id = client.start_request("POST", "/", body=b"z" * size)
            stream = client._quic._streams[stream_id]
            # The client sends until its credit is used up, then stalls.
            await wait_until(lambda: consumed and stream.sender.highest_offset >= stream.max_stream_data_remote)
            assert stream.max_stream_data_remote <= consumed + window + 1024
            assert client._quic._remote_max_data <= consumed + 4 * window + 4096
            gate.set()
            response = client.responses[stream_id]
            await asyncio.wait_for(response.done.wait(), 10)
            assert bytes(response.body) == b"%d" % size

    kwargs = h3_server_kwargs(tls_files, h3_max_stream_data=window, h3_max_data=4 * window)
    with run_server(app, **kwargs) as server:
        try:
            asyncio.run(main(server.port))
        finally:
            gate.set()


def download_app_factory(size: int) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % size)]})
        chunk = b"d" * 65536
        for _ in range(size // len(chunk)):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


@pytest.mark.parametrize("gso", [True, False])
def test_download_batches_datagrams_with_gso(tls_files: dict[str, str], gso: bool) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        if gso and not gso_supported(probe):
            pytest.skip("the kernel has no UDP GSO")
    size = 2 * 1024 * 1024

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            response = await client.request("GET", "/big")
            assert len(response.body) == size

    with run_server(download_app_factory(size), **h3_server_kwargs(tls_files, h3_gso=gso)) as server:
        sender = server.server.extra_listeners[0].sender
        batches: list[int] = []
        send = sender.send

        def counting_send(datagrams: list[tuple[bytes, Any]]) -> None:
            batches.append(len(datagrams))
            send(datagrams)

        sender.send = counting_send
        asyncio.run(main(server.port))
        assert sender.datagrams > size // 1200
        if gso:
            # How many datagrams each flush holds depends on ACK timing (a loaded machine
            # flushes more often, with fewer); what the sender controls is that a flush of
            # several datagrams leaves in one call per run of equal sizes, not one per datagram.
            multi = [n for n in batches if n > 1]
            assert multi, "no flush ever held more than one datagram"
            assert sender.syscalls < sender.datagrams
            assert sender.syscalls <= len(batches) + len(multi) * 2
        else:
            assert sender.syscalls == sender.datagrams


def test_aioquic_gets_the_precise_time(
    tls_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """aioquic's pacer (RFC 9002 §7.7) refills its send budget from the `now` it is given. The
    server must pass a clock finer than uvloop's loop.time(), which moves in whole milliseconds:
    with it, a download got one paced burst per millisecond and idled in between."""
    pytest.importorskip("uvloop")
    size = 1024 * 1024
    seen: list[float] = []
    original = CreditQuicConnection.datagrams_to_send

    def recording(self: CreditQuicConnection, now: float) -> list[tuple[bytes, Any]]:
        seen.append(now)
        return original(self, now=now)

    monkeypatch.setattr(CreditQuicConnection, "datagrams_to_send", recording)

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            response = await client.request("GET", "/big")
            assert len(response.body) == size

    with run_server(download_app_factory(size), **h3_server_kwargs(tls_files, loop="uvloop")) as server:
        asyncio.run(main(server.port))
    assert len(seen) > 10
    assert seen == sorted(seen), "aioquic's time went backwards"
    whole_ms = [now for now in seen if abs(now * 1000 - round(now * 1000)) < 1e-6]
    assert len(whole_ms) < len(seen) // 2, f"{len(whole_ms)} of {len(seen)} times on a whole ms"


def test_drain_waits_on_unsent_bytes_not_bytes_in_flight(tls_files: dict[str, str]) -> None:
    """A response's app is held back by what still waits to be sent, not by what the peer has yet
    to acknowledge. Counting unacknowledged bytes kept the app asleep until the ACKs came down to
    128 KiB, and the sender had nothing to send for about an RTT at every app message."""
    window = 4 * 1024 * 1024
    client = QuicConnection(configuration=client_configuration(
        tls_files["cafile"], max_data=window, max_stream_data=window))
    server_configuration = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    server_configuration.load_cert_chain(tls_files["certfile"], tls_files["keyfile"])
    addr = ("127.0.0.1", 4433)
    clock = [1.0]

    def pump(source: QuicConnection, sink: QuicConnection) -> None:
        clock[0] += 0.001
        for data, _ in source.datagrams_to_send(now=clock[0]):
            sink.receive_datagram(data, addr, now=clock[0])

    client.connect(addr, now=clock[0])
    first = client.datagrams_to_send(now=clock[0])
    header = pull_quic_header(Buffer(data=first[0][0]), host_cid_length=8)
    server = CreditQuicConnection(
        configuration=server_configuration, max_streams_bidi=100,
        original_destination_connection_id=header.destination_cid,
    )
    for data, _ in first:
        server.receive_datagram(data, addr, now=clock[0])
    for _ in range(4):
        pump(server, client)
        pump(client, server)
    stream_id = client.get_next_available_stream_id()
    client.send_stream_data(stream_id, b"request", end_stream=True)
    pump(client, server)

    size = 4 * SEND_HIGH_WATER
    server.send_stream_data(stream_id, b"x" * size)
    assert server.send_queued(stream_id) == size
    # Let it all leave at once (the congestion controller sits behind the recovery object); the
    # peer acknowledges nothing.
    getattr(server._loss, "_cc", server._loss).congestion_window = 2 * size
    for _ in range(5000):  # the pacer lets a few packets out per call
        clock[0] += 0.001
        if not server.datagrams_to_send(now=clock[0]):
            break
    assert len(server._streams[stream_id].sender._buffer) == size  # all still unacknowledged
    assert server.send_queued(stream_id) == 0  # so drain() lets the app write the next message


def test_client_resets_return_stream_credit(tls_files: dict[str, str]) -> None:
    """A reset request closes both halves: the client gets its stream slot back each time."""

    async def hold(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/hold":
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            for _ in range(6):  # three times the stream limit
                stream_id = client.start_request("POST", "/hold", body=b"x", end=False)
                await asyncio.sleep(0.05)
                client._quic.reset_stream(stream_id, H3ErrorCode.H3_REQUEST_CANCELLED)
                client.transmit()
                await asyncio.sleep(0.05)
            response = await asyncio.wait_for(client.request("GET", "/"), 5)
            assert response.status == 200

    with run_server(hold, **h3_server_kwargs(tls_files, h3_max_concurrent_streams=2)) as server:
        asyncio.run(main(server.port))
