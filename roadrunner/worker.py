"""The worker side of the process model: a Server that reports to the master over a pipe."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import sys
from typing import Any

from roadrunner.config import Config
from roadrunner.server import STARTUP_FAILURE, Server

logger = logging.getLogger("roadrunner.error")

# One byte per message on the worker -> master pipe.
MSG_READY = b"R"  # listeners are open: this worker accepts connections
MSG_BEAT = b"H"  # heartbeat, written from the event loop
MSG_RECYCLE = b"C"  # max requests / memory reached: replace me, then send SIGTERM

TICKS_PER_SECOND = 10  # Server.main_loop ticks every 0.1 s


def reopen_log_files() -> None:
    """Reopen every logging.FileHandler (after logrotate moved the files away: SIGUSR1)."""
    seen: set[int] = set()
    loggers = [logging.getLogger()] + [
        item for item in logging.Logger.manager.loggerDict.values()
        if isinstance(item, logging.Logger)
    ]
    for each in loggers:
        for handler in each.handlers:
            if not isinstance(handler, logging.FileHandler) or id(handler) in seen:
                continue
            seen.add(id(handler))
            with handler.lock:  # type: ignore[union-attr]
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()


def rss_megabytes() -> float:
    """This process's resident set size in MB (current on Linux, peak elsewhere)."""
    try:
        with open("/proc/self/statm") as file:
            pages = int(file.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class WorkerServer(Server):
    """A Server that beats from its event loop, says when it accepts, and recycles itself."""

    def __init__(self, config: Config, beat_fd: int, master_pid: int) -> None:
        super().__init__(config)
        self.beat_fd = beat_fd
        self.master_pid = master_pid
        interval = min(1.0, config.timeout_worker_healthcheck / 3)
        self.beat_every = max(1, int(interval * TICKS_PER_SECOND))
        self.reopen_logs = False
        self.recycle_requested = False

    def send(self, message: bytes) -> None:
        try:
            os.write(self.beat_fd, message)
        except BlockingIOError:  # pragma: no cover - master slow to read: the next beat retries
            pass
        except OSError:  # pragma: no cover - master gone
            self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self.send(MSG_READY)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain; the loop keeps beating meanwhile so the master can tell draining from hung."""
        beating = asyncio.create_task(self.beat_while_draining())
        try:
            await super().shutdown(sockets=sockets)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    async def beat_while_draining(self) -> None:
        while True:
            await asyncio.sleep(self.beat_every / TICKS_PER_SECOND)
            self.send(MSG_BEAT)

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)
        if counter % TICKS_PER_SECOND == 0 and self.over_memory_limit():
            should_exit = True
        if should_exit and not self.should_exit:
            # Max requests or memory: keep accepting until the master has a replacement
            # accepting and sends SIGTERM, so the listening socket never goes missing.
            if not self.recycle_requested:
                self.recycle_requested = True
                self.limit_max_requests = None
                self.send(MSG_RECYCLE)
            should_exit = False
        if self.reopen_logs:
            self.reopen_logs = False
            reopen_log_files()
        if counter % self.beat_every == 0:
            # Beating from the loop: a blocked loop stops beating and the master replaces it.
            self.send(MSG_BEAT)
            if os.getppid() != self.master_pid:
                logger.error("Master process is gone; worker [%d] exits.", os.getpid())
                self.should_exit = True
                return True
        return should_exit

    def over_memory_limit(self) -> bool:
        limit = self.config.limit_worker_memory
        if not limit or self.recycle_requested:
            return False
        used = rss_megabytes()
        if used <= limit:
            return False
        logger.warning(
            "Worker [%d] uses %.0f MB, above --limit-worker-memory %d MB. Recycling.",
            os.getpid(), used, limit,
        )
        return True


def run_worker(
    config: Config, sockets: list[socket.socket], beat_fd: int, master_pid: int, sockets_owned: bool
) -> int:
    """Serve in this (forked) process until told to stop; return the process exit code.

    `sockets_owned`: the sockets are this worker's alone (its own SO_REUSEPORT socket).
    """
    # The master's signals are the master's: a worker ignores the control ones and drains on
    # SIGTERM/SIGINT (installed by Server.capture_signals).
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    server = WorkerServer(config, beat_fd, master_pid)
    server.sockets_owned = sockets_owned

    def on_usr1(sig: int, frame: Any) -> None:
        server.reopen_logs = True

    signal.signal(signal.SIGUSR1, on_usr1)
    try:
        server.run(sockets=sockets)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception:
        logger.exception("Worker [%d] crashed.", os.getpid())
        return 1
    return 0 if server.started else STARTUP_FAILURE
