"""Start a server under test pinned to its core, wait until it answers, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from bench.http1 import fetch
from bench.procstat import all_stats, tree_of
from bench.scenarios import Request
from bench.servers import Launch, ServerSpec

READY_REQUEST = Request(path="/hello")


def free_port(host: str) -> int:
    """A port that is free right now on host."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server subprocess under `taskset -c CPU`, in its own session so it can be stopped whole."""

    def __init__(self, spec: ServerSpec, launch: Launch, cpu: int, log_path: Path,
                 cwd: Path, wrapper: Sequence[str] = ()) -> None:
        self.spec = spec
        self.wrapper = list(wrapper)  # e.g. a profiler that runs the server as its child
        self.launch = launch
        self.cpu = cpu
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The root of the process tree this object started (the wrapper, if any)."""
        assert self.process is not None
        return self.process.pid

    def server_pid(self) -> int:
        """The server itself: the root, or the wrapper's child process."""
        if not self.wrapper:
            return self.pid
        for stat in tree_of(self.pid, all_stats()):
            if stat.ppid == self.pid:
                return stat.pid
        raise RuntimeError(f"{self.wrapper[0]} has no child process")

    def start(self, timeout: float = 30.0) -> None:
        argv = [*self.wrapper, "taskset", "-c", str(self.cpu), *self.spec.argv(self.launch)]
        env = dict(os.environ, PYTHONPATH=str(self.cwd), PYTHONWARNINGS="ignore")
        with self.log_path.open("wb") as log:
            # taskset execs the server, so the child's pid is the server's (root of its tree).
            self.process = subprocess.Popen(
                argv, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited at start:\n{self.log_tail()}")
            try:
                response = fetch(self.launch.host, self.launch.port, READY_REQUEST, timeout=2.0,
                                 tls=self.launch.tls)
            except OSError:
                time.sleep(0.1)
                continue
            if response.status == 200:
                return
            raise RuntimeError(f"{self.spec.name} answered /hello with {response.status}")
        self.stop()
        raise RuntimeError(f"{self.spec.name} did not answer within {timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful), then SIGKILL to the server's own process group."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        if self.wrapper:
            # Stop the server, not the wrapper, so a profiler can write what it recorded.
            with contextlib.suppress(RuntimeError, ProcessLookupError):
                os.kill(self.server_pid(), signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
