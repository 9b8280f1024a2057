"""Master process: forks workers, watches their heartbeats, respawns them, handles signals."""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from roadrunner.config import AppImportError, Config, ConfigError
from roadrunner.server import STARTUP_FAILURE
from roadrunner.worker import MSG_READY, MSG_RECYCLE, reopen_log_files, run_worker

if TYPE_CHECKING:
    from roadrunner.reload import FileWatcher

logger = logging.getLogger("roadrunner.error")

SUPERVISOR_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
    signal.SIGUSR1, signal.SIGCHLD,
)
BACKOFF_FIRST = 0.1  # seconds before respawning a worker that crashed
BACKOFF_MAX = 5.0
CRASH_WINDOW = 30.0  # crashes within this window double the backoff
KILL_GRACE = 3.0  # extra seconds past --timeout-graceful-shutdown before SIGKILL


def reuse_port_available(config: Config) -> bool:
    """Per-worker SO_REUSEPORT sockets need a TCP host/port and a kernel that balances them."""
    if config.uds or config.fd is not None:
        return False
    # Linux spreads connections over a SO_REUSEPORT group; macOS and the BSDs do not.
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def validate(config: Config) -> None:
    """The process-model limits: one clear message for a value that cannot work."""
    if config.timeout_worker_healthcheck <= 0:
        raise ConfigError("--timeout-worker-healthcheck must be positive.")
    if config.timeout_worker_shutdown <= 0:
        raise ConfigError("--timeout-worker-shutdown must be positive.")
    if config.limit_worker_memory is not None and config.limit_worker_memory <= 0:
        raise ConfigError("--limit-worker-memory must be a positive number of MB.")


class Listeners:
    """The sockets workers serve: one SO_REUSEPORT socket per worker, or one shared socket."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.reuse_port = reuse_port_available(config)
        if self.reuse_port:
            # Bound but never listening: it holds the port (and resolves --port 0) so every
            # worker binds the same one; the kernel only balances over listening sockets.
            self.master_socket = config.bind_socket(reuse_port=True)
            config.port = self.master_socket.getsockname()[1]
        else:
            # --fd, --uds or no balancing reuseport: bind once, workers inherit the socket.
            self.master_socket = config.bind_socket()
            self.master_socket.listen(config.backlog)

    @property
    def mode(self) -> str:
        return "SO_REUSEPORT socket per worker" if self.reuse_port else "shared socket"

    def for_worker(self) -> list[socket.socket]:
        """Called in the forked worker: the sockets it passes to Server.serve().

        With `reuse_port` they are the worker's own (a socket of its own in the SO_REUSEPORT
        group); else the one socket every worker shares.
        """
        if not self.reuse_port:
            return [self.master_socket]
        self.master_socket.close()
        # HTTP/3 adds its UDP socket here, bound with SO_REUSEPORT the same way.
        return [self.config.bind_socket(reuse_port=True)]

    def describe(self) -> str:
        config = self.config
        if config.uds:
            return f"unix socket {config.uds}"
        if config.fd is not None:
            return f"socket fd {config.fd}"
        scheme = "https" if config.is_ssl else "http"
        host = f"[{config.host}]" if ":" in config.host else config.host
        return f"{scheme}://{host}:{config.port} [{','.join(config.protocols)}]"

    def close(self) -> None:
        self.master_socket.close()


@dataclass
class WorkerProcess:
    """The master's view of one worker."""

    pid: int
    read_fd: int
    started_at: float
    last_beat: float
    ready: bool = False
    stopping: bool = False  # the master asked it to stop (SIGTERM); not replaced as a crash
    recycling: bool = False  # asked to be replaced; stopped once another worker is ready
    kill_at: float | None = None  # stopping: SIGKILL at this time if still running
    kill_reason: str = ""


@dataclass
class RollingRestart:
    """SIGHUP: replace `old` one by one; each replacement accepts before its old worker drains."""

    old: deque[int] = field(default_factory=deque)
    new_pid: int | None = None
    draining_pid: int | None = None


class Supervisor:
    """Runs N workers and keeps them running until told to stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.target = config.workers
        self.workers: dict[int, WorkerProcess] = {}
        self.shutting_down = False
        self.exit_code = 0
        self.booted = False
        self.respawn_at = 0.0
        self.crashes: deque[float] = deque()
        self.rolling: RollingRestart | None = None
        self.reload_paused = False  # --reload: the app failed to boot; wait for the next change
        self.reloader: FileWatcher | None = None
        self.listeners: Listeners | None = None
        self.wakeup_r, self.wakeup_w = socket.socketpair()

    # -- entry -----------------------------------------------------------------------------------

    def run(self) -> int:
        config = self.config
        try:
            validate(config)
            self.listeners = Listeners(config)
        except ConfigError as exc:
            logger.error("%s", exc)
            return STARTUP_FAILURE
        if config.reload and config.preload:
            logger.warning("--preload is ignored with --reload: workers import the app afresh.")
        elif config.preload:
            try:
                config.load()
            except Exception as exc:
                if not isinstance(exc, AppImportError):  # Config.load() logged those
                    logger.error("%s", exc)
                self.listeners.close()
                return STARTUP_FAILURE
        self.write_pid()
        self.install_signals()
        logger.info("Started parent process [%d]", os.getpid())
        logger.info(
            "Roadrunner running on %s with %d worker(s), %s (Press CTRL+C to quit)",
            self.listeners.describe(), self.target, self.listeners.mode,
        )
        if config.reload:
            from roadrunner.reload import FileWatcher

            # A .pyc is trusted while the source keeps its size and mtime second: an edit
            # within the same second would reload stale code. Workers write none.
            sys.dont_write_bytecode = True

            watcher = FileWatcher(config)
            watcher.start()
            watcher.ready.wait(2)  # the OS watch is in place before the first worker boots
            self.reloader = watcher
        try:
            self.loop()
        finally:
            self.cleanup()
        logger.info("Stopping parent process [%d]", os.getpid())
        return self.exit_code

    def write_pid(self) -> None:
        if self.config.pid:
            with open(self.config.pid, "w") as file:
                file.write(f"{os.getpid()}\n")

    def install_signals(self) -> None:
        """Signals only wake the loop (set_wakeup_fd); the loop reads and handles them in order."""
        self.wakeup_r.setblocking(False)
        self.wakeup_w.setblocking(False)
        for sig in SUPERVISOR_SIGNALS:
            signal.signal(sig, lambda sig, frame: None)
        signal.set_wakeup_fd(self.wakeup_w.fileno(), warn_on_full_buffer=False)

    def cleanup(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in SUPERVISOR_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        if self.reloader is not None:
            self.reloader.stop()
        if self.listeners is not None:
            self.listeners.close()
        if self.config.pid and os.path.exists(self.config.pid):
            os.remove(self.config.pid)

    # -- main loop -------------------------------------------------------------------------------

    def loop(self) -> None:
        while True:
            self.maintain()
            if self.shutting_down and not self.workers:
                return
            fds: list[int] = [self.wakeup_r.fileno()] + [w.read_fd for w in self.workers.values()]
            if self.reloader is not None:
                fds.append(self.reloader.fileno())
            readable, _, _ = select.select(fds, [], [], 0.25)
            if self.wakeup_r.fileno() in readable:
                self.handle_signals()
            for worker in list(self.workers.values()):
                if worker.read_fd in readable:
                    self.read_messages(worker)
            if self.reloader is not None and self.reloader.fileno() in readable:
                self.on_files_changed()
            self.reap()
            self.check_health()

    def handle_signals(self) -> None:
        try:
            data = self.wakeup_r.recv(64)
        except BlockingIOError:  # pragma: no cover
            return
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.shutting_down:
                    logger.warning("Second %s: killing workers.", signal.Signals(signum).name)
                    for worker in self.workers.values():
                        self.kill(worker)
                else:
                    logger.info("Received %s: shutting down.", signal.Signals(signum).name)
                    self.shutdown()
            elif signum == signal.SIGHUP:
                self.start_rolling_restart()
            elif signum == signal.SIGTTIN:
                self.target += 1
                logger.info("SIGTTIN: workers %d -> %d.", self.target - 1, self.target)
            elif signum == signal.SIGTTOU:
                if self.target > 1:
                    self.target -= 1
                    logger.info("SIGTTOU: workers %d -> %d.", self.target + 1, self.target)
            elif signum == signal.SIGUSR1:
                reopen_log_files()
                for worker in self.workers.values():
                    self.signal(worker, signal.SIGUSR1)

    def shutdown(self, exit_code: int = 0) -> None:
        self.shutting_down = True
        self.exit_code = self.exit_code or exit_code
        self.rolling = None
        for worker in self.workers.values():
            self.stop(worker)

    # -- worker lifecycle ------------------------------------------------------------------------

    def active(self) -> list[WorkerProcess]:
        return [w for w in self.workers.values() if not (w.stopping or w.recycling)]

    def maintain(self) -> None:
        """Keep `target` workers: spawn the missing, stop the extra, advance a rolling restart."""
        if self.shutting_down or self.reload_paused:
            return
        active = self.active()
        if not self.booted and active:
            return  # boot one worker first: a broken app fails once, not N times
        if len(active) < self.target and time.monotonic() >= self.respawn_at:
            for _ in range(self.target - len(active) if self.booted else 1):
                self.spawn()
        if self.rolling is not None:
            self.advance_rolling_restart()
        elif len(active) > self.target:
            for worker in sorted(active, key=lambda w: w.started_at)[self.target:]:
                self.stop(worker)

    def spawn(self) -> WorkerProcess:
        assert self.listeners is not None
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        master_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; measured by coverage's fork patch
            code = 1
            try:
                os.close(read_fd)
                signal.set_wakeup_fd(-1)
                for sig in SUPERVISOR_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                self.wakeup_r.close()
                self.wakeup_w.close()
                for other in self.workers.values():
                    os.close(other.read_fd)
                if self.reloader is not None:
                    self.reloader.close_in_child()
                sockets = self.listeners.for_worker()
                code = run_worker(self.config, sockets, write_fd, master_pid, self.listeners.reuse_port)
            except ConfigError as exc:
                logger.error("%s", exc)
                code = STARTUP_FAILURE
            except BaseException:
                logger.exception("Worker failed.")
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        now = time.monotonic()
        worker = WorkerProcess(pid=pid, read_fd=read_fd, started_at=now, last_beat=now)
        self.workers[pid] = worker
        return worker

    def read_messages(self, worker: WorkerProcess) -> None:
        try:
            data = os.read(worker.read_fd, 4096)
        except BlockingIOError:  # pragma: no cover
            return
        if not data:
            return
        worker.last_beat = time.monotonic()
        if MSG_RECYCLE in data and not (worker.stopping or worker.recycling):
            # Not active any more: maintain() starts its replacement.
            logger.info("Worker [%d] asks to be recycled; starting its replacement.", worker.pid)
            worker.recycling = True
        if MSG_READY in data and not worker.ready:
            worker.ready = True
            self.booted = True
            self.reload_paused = False
            logger.info("Worker [%d] ready (%d of %d).", worker.pid,
                        sum(w.ready for w in self.active()), self.target)
            # A new worker accepts: one worker waiting to be recycled may now drain.
            waiting = [w for w in self.workers.values() if w.recycling and not w.stopping]
            if waiting:
                self.stop(min(waiting, key=lambda w: w.started_at))

    def signal(self, worker: WorkerProcess, sig: int) -> None:
        try:
            os.kill(worker.pid, sig)
        except ProcessLookupError:  # pragma: no cover - already gone; reaped next
            pass

    def stop(self, worker: WorkerProcess) -> None:
        """Ask a worker to drain (SIGTERM); SIGKILL it if it outlives its shutdown deadline.

        The deadline is --timeout-graceful-shutdown + KILL_GRACE (the worker cancels its
        requests at the timeout and needs a moment to answer them and run lifespan shutdown),
        or --timeout-worker-shutdown without one: a stuck app (or a blocked event loop) can
        hold neither a shutdown, a rolling restart nor a recycle forever.
        """
        if worker.stopping:
            return
        worker.stopping = True
        timeout = self.config.timeout_graceful_shutdown
        if timeout is not None:
            worker.kill_at = time.monotonic() + timeout + KILL_GRACE
            worker.kill_reason = f"--timeout-graceful-shutdown {timeout:g} + {KILL_GRACE:g} s"
        else:
            worker.kill_at = time.monotonic() + self.config.timeout_worker_shutdown
            worker.kill_reason = f"--timeout-worker-shutdown {self.config.timeout_worker_shutdown:g} s"
        self.signal(worker, signal.SIGTERM)

    def kill(self, worker: WorkerProcess) -> None:
        worker.stopping = True
        worker.kill_at = None
        self.signal(worker, signal.SIGKILL)

    def check_health(self) -> None:
        now = time.monotonic()
        limit = self.config.timeout_worker_healthcheck
        for worker in list(self.workers.values()):
            if worker.kill_at is not None and now >= worker.kill_at:
                logger.warning(
                    "Worker [%d] did not stop in time (%s); killing it (SIGKILL).",
                    worker.pid, worker.kill_reason,
                )
                self.kill(worker)
            elif worker.ready and now - worker.last_beat > limit:
                # Also while stopping: a blocked loop finishes nothing, so waiting out the
                # stop deadline would only delay the kill. A stopping worker is not replaced
                # (its replacement, if any, was started when it was asked to stop).
                logger.error(
                    "Worker [%d] sent no heartbeat for %.1f s (--timeout-worker-healthcheck %s); "
                    "killing %s.", worker.pid, now - worker.last_beat, limit,
                    "it" if worker.stopping or self.shutting_down else "and replacing it",
                )
                worker.last_beat = now
                self.kill(worker)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:  # pragma: no cover - not ours
                continue
            os.close(worker.read_fd)
            self.on_exit(worker, status)

    def on_exit(self, worker: WorkerProcess, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        rolling = self.rolling
        if rolling is not None and worker.pid == rolling.draining_pid:
            rolling.draining_pid = None
        if worker.stopping or self.shutting_down:
            logger.info("Worker [%d] stopped (%s).", worker.pid, how)
            return
        if code == STARTUP_FAILURE and not worker.ready:
            self.on_boot_failure(worker)
            return
        if code == 0:
            # --limit-max-requests / --limit-worker-memory: the worker drained itself.
            logger.info("Worker [%d] recycled; starting a new one.", worker.pid)
            return
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > CRASH_WINDOW:
            self.crashes.popleft()
        delay = min(BACKOFF_FIRST * 2 ** (len(self.crashes) - 1), BACKOFF_MAX)
        self.respawn_at = now + delay
        logger.error("Worker [%d] died (%s); respawning in %.1f s.", worker.pid, how, delay)
        if rolling is not None and worker.pid == rolling.new_pid:
            rolling.new_pid = None

    def on_boot_failure(self, worker: WorkerProcess) -> None:
        if self.config.reload:
            logger.error("Worker [%d] failed to boot; waiting for file changes.", worker.pid)
            self.reload_paused = True
            return
        if self.rolling is not None:
            logger.error(
                "Worker [%d] failed to boot; rolling restart aborted, the old workers keep serving.",
                worker.pid,
            )
            self.rolling = None
            return
        logger.error("Worker [%d] failed to boot; stopping all workers.", worker.pid)
        self.shutdown(exit_code=STARTUP_FAILURE)

    # -- rolling restart (SIGHUP) ----------------------------------------------------------------

    def start_rolling_restart(self) -> None:
        if self.shutting_down:
            return
        old = [w.pid for w in sorted(self.active(), key=lambda w: w.started_at)]
        logger.info("Received SIGHUP: rolling restart of %d worker(s).", len(old))
        self.rolling = RollingRestart(old=deque(old))

    def advance_rolling_restart(self) -> None:
        rolling = self.rolling
        assert rolling is not None
        if rolling.draining_pid is not None:
            return  # one at a time: wait for the previous old worker to finish draining
        while rolling.old and (
            rolling.old[0] not in self.workers or self.workers[rolling.old[0]].stopping
        ):
            rolling.old.popleft()  # gone or recycling meanwhile: already being replaced
        if rolling.new_pid is None:
            if not rolling.old:
                logger.info("Rolling restart complete.")
                self.rolling = None
                return
            if time.monotonic() >= self.respawn_at:
                rolling.new_pid = self.spawn().pid
            return
        new = self.workers.get(rolling.new_pid)
        if new is None or not new.ready:
            return
        # The replacement accepts: now the old worker may close its listener and drain.
        old_pid = rolling.old.popleft()
        rolling.new_pid = None
        rolling.draining_pid = old_pid
        self.stop(self.workers[old_pid])

    # -- reload ----------------------------------------------------------------------------------

    def on_files_changed(self) -> None:
        watcher = self.reloader
        assert watcher is not None
        changed = watcher.changes()
        if not changed:
            return
        shown = ", ".join(sorted(changed)[:5])
        logger.warning("Detected changes in %s. Reloading...", shown)
        self.reload_paused = False
        self.rolling = None
        self.booted = False
        for worker in self.active():
            self.stop(worker)


def run_supervised(config: Config) -> int:
    """Run the master process; returns its exit code (3 when a worker fails at boot)."""
    return Supervisor(config).run()
