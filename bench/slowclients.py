"""Slow clients against roadrunner's defaults (issue 15, RFC 9112 §9.5).

Opens N slow-body connections (POST /echo, Content-Length 4096, one body byte every 3 s) and N
slow-read connections (GET /download, 10 MiB in 1 MiB messages, through a 4 KiB receive
buffer, 16 bytes read every 5 s), then reports at 20, 40 and 60 s how many slow-body clients
are still waiting (no answer, no close), how many got a 408, how many sockets the server
process still holds, and how many TCP connections the kernel still has on the server's port
(those sockets plus orphans: closed by the server, data still queued for the client; not
TIME_WAIT).

A slow-read client does not see the server's reset until it has read what its own receive
buffer holds (16 bytes every 5 s: minutes), so the server-side counts are the measure.

    .venv/bin/python -m bench.slowclients                 # defaults (guards on)
    .venv/bin/python -m bench.slowclients --guards-off    # --timeout-request-body 0 --timeout-send 0

Linux only (it counts the server's sockets in /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.process import free_port

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
BODY_HEAD = b"POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Length: 4096\r\n\r\n"
READ_HEAD = b"GET /download HTTP/1.1\r\nHost: bench\r\n\r\n"


@dataclass
class Tally:
    open: int = 0
    answered_408: int = 0
    closed_at: list[float] = field(default_factory=list)


async def slow_body(port: int, tally: Tally, started: float, every: float, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, (HOST, port))
    tally.open += 1
    try:
        await loop.sock_sendall(sock, BODY_HEAD)
        reader = loop.create_task(loop.sock_recv(sock, 65536))
        while not stop.is_set():
            done, _ = await asyncio.wait({reader}, timeout=every)
            if done:
                data = reader.result()
                if data.startswith(b"HTTP/1.1 408"):
                    tally.answered_408 += 1
                break  # answered or closed: this client is done
            try:
                await loop.sock_sendall(sock, b"x")
            except OSError:
                break
        else:
            reader.cancel()
            return
    except OSError:
        pass
    tally.open -= 1
    tally.closed_at.append(time.monotonic() - started)
    sock.close()


async def slow_read(port: int, tally: Tally, started: float, every: float, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.setblocking(False)
    await loop.sock_connect(sock, (HOST, port))
    tally.open += 1
    try:
        await loop.sock_sendall(sock, READ_HEAD)
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                sock.close()
                return
            try:
                data = sock.recv(16)
            except BlockingIOError:
                continue
            if not data:
                break
    except OSError:  # reset by the server
        pass
    tally.open -= 1
    tally.closed_at.append(time.monotonic() - started)
    sock.close()


def port_connections(port: int) -> int:
    """TCP connections whose local port is the server's, but LISTEN and TIME_WAIT (a closed
    connection's 2 MSL of kernel bookkeeping, no buffers)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] not in ("0A", "06"):
                    count += 1
    return count


def server_sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
    return count


async def run(count: int, guards_off: bool, checkpoints: list[float]) -> None:
    port = free_port(HOST)
    argv = [sys.executable, "-m", "roadrunner", "bench.apps:app", "--host", HOST, "--port", str(port),
            "--no-access-log", "--log-level", "warning"]
    if guards_off:
        argv += ["--timeout-request-body", "0", "--timeout-send", "0"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(argv, cwd=ROOT, env=env)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        idle = server_sockets(server.pid)
        body, read = Tally(), Tally()
        stop = asyncio.Event()
        started = time.monotonic()
        tasks = [asyncio.create_task(slow_body(port, body, started, 3.0, stop)) for _ in range(count)]
        tasks += [asyncio.create_task(slow_read(port, read, started, 5.0, stop)) for _ in range(count)]
        mode = "guards off (--timeout-request-body 0 --timeout-send 0)" if guards_off else "defaults"
        print(f"roadrunner, {mode}: {count} slow-body + {count} slow-read HTTP/1.1 connections")
        print("  t (s) | slow-body waiting | 408 answers | server sockets | kernel TCP on the port")
        for at in checkpoints:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            sockets = server_sockets(server.pid) - idle
            print(f"  {at:5.0f} | {body.open:17d} | {body.answered_408:11d} | {sockets:14d} |"
                  f" {port_connections(port):22d}")
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for name, tally in (("slow-body", body),):
            if tally.closed_at:
                times = sorted(tally.closed_at)
                print(f"  {name}: {len(times)} closed by the server, first at {times[0]:.1f} s,"
                      f" last at {times[-1]:.1f} s")
    finally:
        server.terminate()
        server.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=300, help="of each kind")
    parser.add_argument("--guards-off", action="store_true", help="run with both guards disabled")
    parser.add_argument("--at", type=float, nargs="*", default=[20.0, 40.0, 60.0])
    args = parser.parse_args()
    asyncio.run(run(args.connections, args.guards_off, args.at))


if __name__ == "__main__":
    main()
