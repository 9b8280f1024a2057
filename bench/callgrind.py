"""`python -m bench.callgrind`: user-space instructions per request, counted by callgrind.

Timing on a shared 2-core machine is noisy; instruction counts are not. The server runs under
`valgrind --tool=callgrind` (as in the bench: one worker, uvloop, httptools, no access log); a
client outside valgrind sends a warm-up, the counters are zeroed, then it sends a fixed number of
keep-alive requests over a few connections and the counters are dumped. Kernel time is not
counted, so this measures the server's own code path, not the whole cost of a request.

    python -m bench.callgrind --server roadrunner --server uvicorn --requests 4000
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.process import free_port
from bench.servers import SERVERS, Launch

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


def request_bytes(path: str) -> bytes:
    # wrk's request shape: a request line and a Host header.
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def read_response(sock: socket.socket, buffer: bytearray) -> None:
    """Read one Content-Length-framed response off a keep-alive connection."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end != -1:
            head = bytes(buffer[:end]).lower()
            match = re.search(rb"\r\ncontent-length: *(\d+)", head)
            if match is None:
                raise RuntimeError(f"no content-length in {head!r}")
            total = end + 4 + int(match.group(1))
            if len(buffer) >= total:
                del buffer[:total]
                return
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk


def drive(port: int, path: str, connections: int, requests: int) -> None:
    """`requests` keep-alive requests spread round-robin over `connections` sockets."""
    payload = request_bytes(path)
    socks = [socket.create_connection((HOST, port)) for _ in range(connections)]
    buffers = [bytearray() for _ in socks]
    try:
        for _ in range(requests // connections):
            for sock in socks:
                sock.sendall(payload)
            for sock, buffer in zip(socks, buffers, strict=True):
                read_response(sock, buffer)
    finally:
        for sock in socks:
            sock.close()


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited at start")
        try:
            drive(port, "/hello", 1, 1)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not answer in time")


def total_instructions(out_file: Path) -> int:
    for line in out_file.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def measure(server: str, path: str, connections: int, warmup: int, requests: int,
            keep: Path | None = None) -> float:
    """Instructions per request; with `keep`, the callgrind dump is copied there."""
    spec = SERVERS[server]
    port = free_port(HOST)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
                *spec.argv(Launch(HOST, port))]
        # A fixed hash seed: set and dict probing is then the same from run to run.
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", PYTHONHASHSEED="0")
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_ready(port, process, 180.0)
            drive(port, path, connections, warmup)
            subprocess.run(["callgrind_control", "-z", str(process.pid)], check=True,
                           capture_output=True)
            drive(port, path, connections, requests)
            subprocess.run(["callgrind_control", "-d", str(process.pid)], check=True,
                           capture_output=True)
            dumps = sorted(Path(tmp).glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
            if keep is not None:
                shutil.copy(dumps[-1], keep / f"callgrind.{server}.out")
            return total_instructions(dumps[-1]) / requests
        finally:
            process.terminate()
            process.wait(60)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="append", choices=list(SERVERS))
    parser.add_argument("--path", default="/hello")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--keep", type=Path, help="copy each dump here (for callgrind_annotate)")
    args = parser.parse_args(argv)
    for server in args.server or ["roadrunner", "uvicorn"]:
        per_request = measure(server, args.path, args.connections, args.warmup, args.requests,
                              args.keep)
        print(f"{server}: {per_request:,.0f} instructions per request ({args.path}, "
              f"{args.requests} requests over {args.connections} connections)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
