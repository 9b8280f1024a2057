"""Helpers for process-model tests: a real `python -m roadrunner` (or gunicorn) process whose
log is collected line by line, a test app that reports its pid, and a keep-alive load client."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The test app: the body of every answer is the pid of the worker that served it.
APP_SOURCE = '''
import asyncio, os, time

IMPORTED_BY = os.getpid()
if os.environ.get("IMPORT_LOG"):
    with open(os.environ["IMPORT_LOG"], "a") as f:
        f.write(f"{os.getpid()}\\n")
hoard = []

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("FAIL_STARTUP") or os.path.exists("fail_startup"):
                    await send({"type": "lifespan.startup.failed", "message": "startup refused"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/slow":
        print(f"slow-started {os.getpid()}", flush=True)
        await asyncio.sleep(float(scope["query_string"] or 1))
    elif path == "/stall":  # starts a 10-byte answer, sends half of it, then waits
        print(f"slow-started {os.getpid()}", flush=True)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"start", "more_body": True})
        await asyncio.sleep(60)
    elif path == "/block":
        time.sleep(60)  # blocks the event loop: the heartbeat stops
    elif path == "/grow":
        hoard.append(b"x" * int(scope["query_string"]) * 1024 * 1024)
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''

RUNNING = re.compile(r"(?:running on|Listening at:) https?://127\.0\.0\.1:(\d+)")


def write_app(directory: Path, name: str = "pidapp") -> str:
    (directory / f"{name}.py").write_text(APP_SOURCE)
    return f"{name}:app"


class Process:
    """A child process whose combined output is read into `lines` by a thread."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    @property
    def output(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 10.0) -> list[re.Match[str]]:
        """Wait until `pattern` matched `count` lines; return the matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for m in map(regex.search, self.lines) if m]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(
                        f"{pattern!r} x{count} not seen (got {len(found)}). Output:\n"
                        + "\n".join(self.lines[-60:])
                    )
                self.cond.wait(min(remaining, 0.2))

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self.cond:
            return sum(1 for line in self.lines if regex.search(line))

    @property
    def port(self) -> int:
        return int(self.wait_for(RUNNING.pattern)[0].group(1))

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code

    def kill_tree(self) -> None:
        """SIGTERM (a clean exit also saves coverage data), then SIGKILL the whole session."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        # Make sure no process of this session (an orphaned worker) survives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


@contextlib.contextmanager
def roadrunner(
    app: str, *args: str, cwd: Path, env: dict[str, str] | None = None, module: str = "roadrunner"
) -> Iterator[Process]:
    """`python -m roadrunner APP --port 0 ARGS` in `cwd`; killed at the end if still running.

    `module="uvicorn"` runs the reference server the same way, for side-by-side tests.
    """
    argv = [sys.executable, "-m", module, app, "--port", "0", *args]
    process = Process(argv, cwd, env)
    try:
        yield process
    finally:
        process.kill_tree()


def ready_pids(process: Process) -> list[int]:
    return [int(m.group(1)) for m in process.wait_for(r"Worker \[(\d+)\] ready", count=0)]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- load client -----------------------------------------------------------------------------------


@dataclass
class LoadResult:
    by_pid: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    # For each failure: the pid that answered last on that connection (None: a fresh one).
    failed_on: list[int | None] = field(default_factory=list)
    retried: int = 0  # connection closed before any response byte: re-sent once (RFC 9112 §9.3.1)
    timeline: list[int] = field(default_factory=list)  # serving pid of each response, in order

    @property
    def total(self) -> int:
        return sum(self.by_pid.values())


async def _connection_loop(
    port: int, result: LoadResult, stop: asyncio.Event, per_connection: int, path: str
) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    retrying = False
    last_pid: int | None = None

    def fail(message: str) -> None:
        result.failures.append(message)
        result.failed_on.append(last_pid)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 5
            )
        except (OSError, asyncio.TimeoutError) as exc:
            fail(f"connect: {exc!r}")
            await asyncio.sleep(0.05)
            continue
        if not retrying:
            last_pid = None
        try:
            for _ in range(per_connection):
                if stop.is_set():
                    break
                writer.write(request)
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    partial = getattr(exc, "partial", b"")
                    # RFC 9112 §9.3.1: a connection closed before any byte of the response
                    # leaves an idempotent request unprocessed; a client may send it again.
                    if partial or retrying:
                        fail(f"closed mid-response: {exc!r} {partial[:80]!r}")
                        retrying = False
                    else:
                        result.retried += 1
                        retrying = True
                    break
                except asyncio.TimeoutError:
                    fail("response timeout")
                    break
                retrying = False
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ")[1])
                headers = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                )
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if status != 200:
                    fail(f"status {status}")
                    break
                pid = last_pid = int(body)
                result.by_pid[pid] += 1
                result.timeline.append(pid)
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            fail(f"body: {exc!r}")
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1)


async def run_load(
    port: int,
    connections: int,
    until: Callable[[LoadResult], bool],
    per_connection: int = 50,
    path: str = "/",
    timeout: float = 30.0,
    during: Callable[[LoadResult], object] | None = None,
) -> LoadResult:
    """Keep `connections` keep-alive connections busy until `until(result)` holds.

    Each connection sends `per_connection` requests, then reconnects (connection churn).
    `during(result)` is polled every 50 ms from a thread (to send signals, watch logs).
    """
    result = LoadResult()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_connection_loop(port, result, stop, per_connection, path))
        for _ in range(connections)
    ]
    deadline = time.monotonic() + timeout
    try:
        while not until(result):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"load did not reach its goal in {timeout} s: {result.total} requests, "
                    f"{dict(result.by_pid)}, failures {result.failures[:5]}"
                )
            if during is not None:
                await asyncio.to_thread(during, result)
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


def get_pid(port: int, path: str = "/", timeout: float = 5.0) -> int:
    """One request on a new connection; the pid of the worker that answered."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return int(body)
