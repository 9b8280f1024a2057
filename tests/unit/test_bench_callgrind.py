"""bench/callgrind.py's helpers: response framing on a keep-alive socket, the h1 and h2c clients,
the gate's scenarios, and the dump's total."""

from __future__ import annotations

import select
import socket
import threading
import time
from pathlib import Path

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded

from bench.callgrind import (
    GATE,
    H1Client,
    H2Client,
    drive,
    idle_corrected,
    read_response,
    request_bytes,
    total_instructions,
)
from bench.scenarios import ECHO_BODY, Request


def test_read_response_takes_exactly_one_response_off_the_buffer() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                      b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
        buffer = bytearray()
        read_response(left, buffer)
        assert bytes(buffer).startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 2")
        read_response(left, buffer)
        assert buffer == b""


def test_read_response_reads_a_chunked_body_arriving_in_pieces() -> None:
    left, right = socket.socketpair()
    with left, right:
        response = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n")
        following = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"

        def send_slowly() -> None:
            for i in range(0, len(response), 7):  # cut inside size lines, data and CRLFs
                right.sendall(response[i:i + 7])
                time.sleep(0.005)
            right.sendall(following)

        sender = threading.Thread(target=send_slowly)
        sender.start()
        buffer = bytearray()
        assert read_response(left, buffer) == b"hello" + b"x" * 16
        assert read_response(left, buffer) == b"hi"
        sender.join()
        assert buffer == b""


def test_read_response_refuses_a_response_it_cannot_frame() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello")
        with pytest.raises(RuntimeError, match="neither content-length nor chunked"):
            read_response(left, bytearray())


def test_drive_sends_the_requested_number_over_each_connection() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
                while request_bytes("/hello") in data:
                    data = data.replace(request_bytes("/hello"), b"", 1)
                    seen.append(b"x")
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def accept() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    with listener:
        acceptor = threading.Thread(target=accept, daemon=True)
        acceptor.start()
        drive(listener.getsockname()[1], "/hello", connections=2, requests=10)
        acceptor.join(5)
    assert len(seen) == 10


def test_total_instructions_reads_the_summary_line(tmp_path: Path) -> None:
    dump = tmp_path / "callgrind.out"
    dump.write_text("version: 1\nevents: Ir\nfn=(1) main\n0 12\nsummary: 376458939\n")
    assert total_instructions(dump) == 376458939
    (tmp_path / "empty.out").write_text("events: Ir\n")
    with pytest.raises(RuntimeError, match="no totals"):
        total_instructions(tmp_path / "empty.out")


def _h2_server_echoing(listener: socket.socket, seen: list[bytes]) -> None:
    """One h2c connection served by the h2 library: each request's body (or b"hi") comes back."""
    conn, _ = listener.accept()
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    conn.sendall(server.data_to_send())
    bodies: dict[int, bytes] = {}
    with conn:
        while data := conn.recv(65536):
            for event in server.receive_data(data):
                if isinstance(event, RequestReceived):
                    seen.append(dict(event.headers)[b":path"])
                    bodies[event.stream_id] = b""
                elif isinstance(event, DataReceived):
                    bodies[event.stream_id] += event.data
                    server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, StreamEnded):
                    server.send_headers(event.stream_id, [(b":status", b"200")])
                    server.send_data(event.stream_id, bodies.pop(event.stream_id) or b"hi",
                                     end_stream=True)
            conn.sendall(server.data_to_send())


@pytest.mark.parametrize("request_", [Request(path="/hello"),
                                      Request(method="POST", path="/echo", body=b"x" * 5000)])
def test_h2_client_completes_each_exchange_on_one_connection(request_: Request) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []
    with listener:
        server = threading.Thread(target=_h2_server_echoing, args=(listener, seen), daemon=True)
        server.start()
        with H2Client(listener.getsockname()[1], 1, request_) as h2:
            h2.run(3)
            h2.run(40)  # past the 64 KiB initial windows for the echo: WINDOW_UPDATEs flow
            assert h2.streams[0] == 2 * 43 - 1  # one stream per request, on the same connection
        server.join(5)
    assert seen == [request_.path.encode()] * 43


def test_h1_client_refuses_an_echo_that_is_not_the_body() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")

    with listener:
        threading.Thread(target=serve, daemon=True).start()
        with H1Client(listener.getsockname()[1], 1, Request(method="POST", path="/echo",
                                                             body=b"yes")) as h1:
            with pytest.raises(RuntimeError, match="echo returned 2 bytes"):
                h1.run(1)


def test_gate_scenarios_are_the_benchs_requests() -> None:
    assert set(GATE) == {"h1_hello", "h1_echo", "h2c_hello"}
    assert GATE["h1_echo"].request.body == ECHO_BODY
    assert GATE["h2c_hello"].protocol == "h2c"
    assert all(scenario.lockstep for scenario in GATE.values())
    assert GATE["h2c_hello"].settings == (
        "h2c GET /hello (0 B body), 400 requests over 2 connections in lockstep after 100 warm-up,"
        " idle cost per second taken out")


@pytest.mark.parametrize(("lockstep", "most_in_flight"), [(False, 3), (True, 1)])
def test_lockstep_keeps_one_request_in_flight(lockstep: bool, most_in_flight: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    in_flight: list[int] = []

    def accept() -> None:
        conns = [listener.accept()[0] for _ in range(3)]
        while select.select(conns, [], [], 5)[0]:
            # Count the requests waiting on all connections, then answer them.
            time.sleep(0.05)  # let a round's other requests arrive
            ready = select.select(conns, [], [], 0)[0]
            in_flight.append(len(ready))
            for conn in ready:
                if not conn.recv(65536):
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with listener:
        threading.Thread(target=accept, daemon=True).start()
        with H1Client(listener.getsockname()[1], 3, Request(path="/hello"), lockstep) as h1:
            h1.run(6)
    assert max(in_flight) == most_in_flight



def test_idle_corrected_takes_the_idle_rate_times_the_window_out() -> None:
    # 2,000 requests in 10 s counted 200 M; idle, 3 s counted 0.9 M: 300 k per second.
    assert idle_corrected(200_000_000, 10.0, 900_000, 3.0, 2000) == pytest.approx(98_500)
    # Twice as slow a machine: twice the ticks in the window, the same figure per request.
    assert idle_corrected(203_000_000, 20.0, 900_000, 3.0, 2000) == pytest.approx(98_500)
