"""bench/callgrind.py's helpers: response framing on a keep-alive socket, and the dump's total."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from bench.callgrind import drive, read_response, request_bytes, total_instructions


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


def test_read_response_refuses_a_response_without_content_length() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        with pytest.raises(RuntimeError, match="no content-length"):
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
