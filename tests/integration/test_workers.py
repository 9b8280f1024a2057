"""The process model over real processes: `python -m roadrunner --workers N`, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.process_helpers import (
    LoadResult,
    Process,
    get_pid,
    pid_alive,
    ready_pids,
    roadrunner,
    run_load,
    write_app,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process model")

READY = r"Worker \[(\d+)\] ready \({n} of {n}\)"


def test_fairness_across_reuseport_workers(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    with roadrunner(app, "--workers", "4", "--no-access-log", cwd=tmp_path) as master:
        master.wait_for(READY.format(n=4))
        assert "SO_REUSEPORT socket per worker" in master.output
        workers = set(ready_pids(master))
        # Ten requests per connection, then a new one: the share measures how the kernel spreads
        # connections (about 600 of them), not the luck of the first 64.
        result = asyncio.run(run_load(
            master.port, 64, per_connection=10, until=lambda r: r.total >= 6000,
        ))
    assert not result.failures, result.failures[:5]
    assert set(result.by_pid) == workers
    for pid, served in result.by_pid.items():
        # Every worker gets a fair part of the connections the kernel spreads over the group.
        assert served >= 0.15 * result.total, (pid, dict(result.by_pid))


def test_killed_worker_is_replaced_and_others_keep_serving(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    with roadrunner(app, "--workers", "2", "--no-access-log", cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        victim, survivor = ready_pids(master)
        state: dict[str, float] = {}

        def during(result: LoadResult) -> None:
            if "killed" not in state and result.total >= 300:
                state["served_before"] = result.by_pid[survivor]
                os.kill(victim, signal.SIGKILL)
                state["killed"] = time.monotonic()
            elif "killed" in state and "replaced" not in state:
                pids = ready_pids(master)
                if len(pids) == 3:
                    state["replaced"] = time.monotonic()
                    state["replacement"] = pids[-1]

        result = asyncio.run(run_load(
            master.port, 16, during=during,
            until=lambda r: "replaced" in state and r.by_pid[int(state["replacement"])] >= 20,
        ))
        master.wait_for(rf"Worker \[{victim}\] died \(signal SIGKILL\); respawning")
    assert state["replaced"] - state["killed"] < 2.0
    # Only requests in flight to the killed worker failed: on its connections, or on fresh ones
    # the kernel had queued for it (None), at most one per client connection. No connection of
    # the surviving worker failed.
    assert set(result.failed_on) <= {victim, None}, (result.failures[:5], result.failed_on[:5])
    assert len(result.failures) <= 16
    assert not [f for f in result.failures if "status" in f or "timeout" in f], result.failures
    # Requests on the surviving worker went on; the replacement took its share.
    assert result.by_pid[survivor] > state["served_before"]


def test_sighup_rolling_restart_under_load_loses_nothing(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    with roadrunner(app, "--workers", "2", "--no-access-log", cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        old = set(ready_pids(master))
        state: dict[str, int] = {}

        def during(result: LoadResult) -> None:
            if "hup" not in state and result.total >= 300:
                master.signal(signal.SIGHUP)
                state["hup"] = result.total
            elif "hup" in state and "done" not in state and master.count("Rolling restart complete"):
                state["done"] = len(result.timeline)

        result = asyncio.run(run_load(
            master.port, 16, during=during,
            until=lambda r: "done" in state and len(r.timeline) >= state["done"] + 500,
        ))
        new = set(ready_pids(master)) - old
    assert not result.failures, result.failures[:5]
    assert len(new) == 2
    assert not any(pid_alive(pid) for pid in old)
    # After the restart only new workers answer.
    assert set(result.timeline[state["done"]:]) <= new


def test_max_requests_recycles_workers_without_failures(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    args = ["--workers", "2", "--no-access-log",
            "--limit-max-requests", "200", "--limit-max-requests-jitter", "50"]
    with roadrunner(app, *args, cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        result = asyncio.run(run_load(master.port, 16, until=lambda r: len(r.by_pid) >= 6))
        master.wait_for(r"Worker \[\d+\] asks to be recycled", count=4)
    assert not result.failures, result.failures[:5]


def test_sigterm_drains_in_flight_request_then_exits_zero(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    args = ["--workers", "2", "--timeout-graceful-shutdown", "10"]
    with roadrunner(app, *args, cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        port = master.port
        outcome: dict[str, object] = {}

        def slow_request() -> None:
            try:
                outcome["pid"] = get_pid(port, "/slow?1.5", timeout=10)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        client = threading.Thread(target=slow_request)
        client.start()
        master.wait_for(r"slow-started")
        master.signal(signal.SIGTERM)
        refused = False
        while client.is_alive() and not refused:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except (ConnectionRefusedError, ConnectionResetError):  # reset: queued as it closed
                refused = True
            time.sleep(0.02)
        client.join(10)
        code = master.wait(timeout=10)  # within --timeout-graceful-shutdown
    assert "error" not in outcome, outcome
    assert isinstance(outcome["pid"], int)
    assert refused, "new connections were still accepted during the drain"
    assert code == 0
    assert master.count(r"Received SIGTERM: shutting down") == 1


def test_import_error_stops_the_tree_with_exit_3(tmp_path: Path) -> None:
    with roadrunner("missing_module:app", "--workers", "3", cwd=tmp_path) as master:
        code = master.wait()
    assert code == 3
    assert master.count(r'Could not import module "missing_module"') == 1
    assert master.count(r"failed to boot; stopping all workers") == 1
    assert master.count(r"Started server process") <= 1


def test_lifespan_startup_failure_stops_the_tree_with_exit_3(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    env = {"FAIL_STARTUP": "1"}
    with roadrunner(app, "--workers", "2", "--lifespan", "on", cwd=tmp_path, env=env) as master:
        code = master.wait()
    assert code == 3
    assert master.count("startup refused") == 1
    assert master.count(r"failed to boot; stopping all workers") == 1


def test_blocked_worker_is_killed_by_the_healthcheck(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    args = ["--workers", "2", "--timeout-worker-healthcheck", "1"]
    with roadrunner(app, *args, cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        blocker = socket.create_connection(("127.0.0.1", master.port))
        blocker.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        match = master.wait_for(r"Worker \[(\d+)\] sent no heartbeat", timeout=10)[0]
        hung = int(match.group(1))
        master.wait_for(r"Worker \[\d+\] ready", count=3)
        blocker.close()
        assert not pid_alive(hung) or master.count(rf"Worker \[{hung}\] died") == 1
        assert get_pid(master.port) != hung


def test_ttin_adds_and_ttou_removes_a_worker(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    with roadrunner(app, "--workers", "2", cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        master.signal(signal.SIGTTIN)
        master.wait_for(READY.format(n=3))
        youngest = ready_pids(master)[-1]
        master.signal(signal.SIGTTOU)
        master.wait_for(rf"Worker \[{youngest}\] stopped \(exit code 0\)")
        master.signal(signal.SIGTERM)
        assert master.wait() == 0
    assert master.count(r"SIGTTOU: workers 3 -> 2") == 1


def test_usr1_reopens_log_files_and_pid_file(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    log_file = tmp_path / "access.log"
    pid_file = tmp_path / "master.pid"
    log_config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"access": {"()": "roadrunner.logging.AccessFormatter",
                                  "fmt": "%(client_addr)s %(request_line)s %(status_code)s"}},
        "handlers": {
            "access": {"class": "logging.FileHandler", "filename": str(log_file),
                       "formatter": "access"},
            "default": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        },
        "loggers": {
            "roadrunner": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "roadrunner.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
    (tmp_path / "log.json").write_text(json.dumps(log_config))
    args = ["--workers", "2", "--log-config", "log.json", "--pid", str(pid_file)]
    with roadrunner(app, *args, cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        assert int(pid_file.read_text()) == master.proc.pid
        get_pid(master.port)
        rotated = tmp_path / "access.log.1"
        log_file.rename(rotated)  # what logrotate does, then it sends SIGUSR1
        master.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not (log_file.exists() and "GET /after" in log_file.read_text()):
            assert time.monotonic() < deadline, "the access log was not reopened"
            get_pid(master.port, "/after")
            time.sleep(0.05)
        master.signal(signal.SIGTERM)
        assert master.wait() == 0
    assert "GET / " in rotated.read_text()
    assert not pid_file.exists()


@pytest.mark.parametrize("preload", [False, True])
def test_master_imports_the_app_only_with_preload(tmp_path: Path, preload: bool) -> None:
    app = write_app(tmp_path)
    imports = tmp_path / "imports.log"
    # --workers defaults to $WEB_CONCURRENCY.
    env = {"IMPORT_LOG": str(imports), "WEB_CONCURRENCY": "2"}
    args = ["--preload"] if preload else []
    with roadrunner(app, *args, cwd=tmp_path, env=env) as master:
        master.wait_for(READY.format(n=2))
        workers = set(ready_pids(master))
        master.signal(signal.SIGTERM)
        assert master.wait() == 0
    importers = [int(line) for line in imports.read_text().split()]
    if preload:
        assert importers == [master.proc.pid]  # once, before forking
    else:
        assert sorted(importers) == sorted(workers)


def test_uds_workers_share_the_master_socket(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    path = str(tmp_path / "rr.sock")
    argv = [sys.executable, "-m", "roadrunner", app, "--uds", path, "--workers", "2"]
    master = Process(argv, tmp_path)
    try:
        master.wait_for(READY.format(n=2))
        assert "unix socket" in master.output and "shared socket" in master.output
        workers = set(ready_pids(master))
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and int(data.split(b"\r\n\r\n")[1]) in workers
        master.signal(signal.SIGINT)
        assert master.wait() == 0
        assert not os.path.exists(path)
    finally:
        master.kill_tree()


def test_worker_above_memory_limit_is_recycled(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    with roadrunner(app, "--workers", "2", "--limit-worker-memory", "150", cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        grown = get_pid(master.port, "/grow?200")  # the app keeps 200 MB
        master.wait_for(rf"Worker \[{grown}\] uses \d+ MB, above --limit-worker-memory 150 MB")
        master.wait_for(rf"Worker \[{grown}\] stopped \(exit code 0\)")
        assert len(ready_pids(master)) == 3
        assert get_pid(master.port) != grown


def test_second_sigint_kills_draining_workers(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    with roadrunner(app, "--workers", "2", cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        port = master.port
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /slow?30 HTTP/1.1\r\nHost: x\r\n\r\n")
        master.wait_for("slow-started")
        master.signal(signal.SIGINT)
        master.wait_for("Received SIGINT: shutting down")
        master.wait_for(r"Worker \[\d+\] stopped \(exit code 0\)")  # the idle one
        master.signal(signal.SIGINT)
        assert master.wait() == 0
        slow.close()
    assert master.count("Second SIGINT: killing workers") == 1
    assert master.count(r"stopped \(signal SIGKILL\)") == 1


def test_single_process_writes_and_removes_pid_file(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    pid_file = tmp_path / "rr.pid"
    with roadrunner(app, "--pid", str(pid_file), cwd=tmp_path) as server:
        server.port  # noqa: B018 - waits for the startup line
        assert int(pid_file.read_text()) == server.proc.pid == get_pid(server.port)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert not pid_file.exists()


def test_bind_failure_exits_3(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        argv = [sys.executable, "-m", "roadrunner", app, "--port", port, "--workers", "2"]
        master = Process(argv, tmp_path)
        assert master.wait() == 3
    assert "Cannot bind to 127.0.0.1" in master.output


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--timeout-worker-healthcheck", "0", "--timeout-worker-healthcheck must be positive"),
    ("--limit-worker-memory", "-5", "--limit-worker-memory must be a positive number of MB"),
    ("--timeout-worker-shutdown", "0", "--timeout-worker-shutdown must be positive"),
])
def test_invalid_process_limits_exit_3(tmp_path: Path, flag: str, value: str, message: str) -> None:
    app = write_app(tmp_path)
    with roadrunner(app, "--workers", "2", flag, value, cwd=tmp_path) as master:
        assert master.wait() == 3
    assert master.count(message) == 1
    assert master.count("Started server process") == 0


def test_sighup_with_a_broken_deploy_keeps_the_old_workers(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    with roadrunner(app, "--workers", "2", "--lifespan", "on", cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        old = set(ready_pids(master))
        (tmp_path / "fail_startup").touch()  # the new code cannot start
        master.signal(signal.SIGHUP)
        master.wait_for(r"failed to boot; rolling restart aborted, the old workers keep serving")
        assert {get_pid(master.port) for _ in range(10)} <= old
        assert master.proc.poll() is None
        (tmp_path / "fail_startup").unlink()
        master.signal(signal.SIGHUP)
        master.wait_for("Rolling restart complete")
        assert not {get_pid(master.port) for _ in range(10)} & old


def test_preload_import_error_exits_3_before_forking(tmp_path: Path) -> None:
    with roadrunner("missing_module:app", "--workers", "2", "--preload", cwd=tmp_path) as master:
        assert master.wait() == 3
    assert master.count(r'Could not import module "missing_module"') == 1
    assert master.count("Started server process") == 0


def stop_with_a_blocked_worker(tmp_path: Path, *args: str) -> tuple[Process, int, float, int]:
    """Two workers, one blocked in its app (time.sleep: not even its timers run); SIGTERM to the
    master. Returns the master, the blocked worker's pid, how long the tree took, its exit code."""
    app = write_app(tmp_path)
    with roadrunner(app, "--workers", "2", *args, cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        with socket.create_connection(("127.0.0.1", master.port)) as blocker:
            blocker.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.5)  # the request reached its worker: that loop is blocked
            master.signal(signal.SIGTERM)
            began = time.monotonic()
            code = master.wait(timeout=20)
            took = time.monotonic() - began
        match = master.wait_for(r"Worker \[(\d+)\] stopped \(signal SIGKILL\)")[0]
    return master, int(match.group(1)), took, code


def test_worker_outliving_the_graceful_timeout_is_killed(tmp_path: Path) -> None:
    # A long healthcheck leaves the stop deadline (timeout + 3 s) to end the blocked worker.
    args = ["--timeout-graceful-shutdown", "1", "--timeout-worker-healthcheck", "60"]
    master, stuck, took, code = stop_with_a_blocked_worker(tmp_path, *args)
    assert 1 + 3 <= took < 1 + 3 + 3
    assert code == 0
    assert master.count(
        rf"Worker \[{stuck}\] did not stop in time \(--timeout-graceful-shutdown 1 \+ 3 s\); "
        r"killing it \(SIGKILL\)"
    ) == 1
    assert not pid_alive(stuck)


def test_without_graceful_timeout_timeout_worker_shutdown_bounds_the_stop(tmp_path: Path) -> None:
    args = ["--timeout-worker-shutdown", "2", "--timeout-worker-healthcheck", "60"]
    master, stuck, took, code = stop_with_a_blocked_worker(tmp_path, *args)
    assert 2 <= took < 2 + 3
    assert code == 0
    assert master.count(
        rf"Worker \[{stuck}\] did not stop in time \(--timeout-worker-shutdown 2 s\); killing it"
    ) == 1
    assert not pid_alive(stuck)


def test_healthcheck_kills_a_blocked_stopping_worker_without_replacing_it(tmp_path: Path) -> None:
    """The healthcheck does not wait out a stop deadline a blocked loop cannot meet, and during
    shutdown it does not start a replacement."""
    args = ["--timeout-graceful-shutdown", "30", "--timeout-worker-healthcheck", "1"]
    master, stuck, took, code = stop_with_a_blocked_worker(tmp_path, *args)
    assert took < 1 + 3
    assert code == 0
    assert master.count(rf"Worker \[{stuck}\] sent no heartbeat for [\d.]+ s .*; killing it\.$") == 1
    assert master.count(r"Started server process") == 2


def test_sighup_rolling_restart_is_not_held_by_a_stuck_request(tmp_path: Path) -> None:
    """The old worker keeps beating but its request never ends (no --timeout-graceful-shutdown):
    --timeout-worker-shutdown ends it, and the rolling restart completes."""
    app = write_app(tmp_path)
    args = ["--workers", "2", "--timeout-worker-shutdown", "2"]
    with roadrunner(app, *args, cwd=tmp_path) as master:
        master.wait_for(READY.format(n=2))
        with socket.create_connection(("127.0.0.1", master.port)) as stuck:
            stuck.sendall(b"GET /slow?3600 HTTP/1.1\r\nHost: x\r\n\r\n")
            old = int(master.wait_for(r"slow-started (\d+)")[0].group(1))
            master.signal(signal.SIGHUP)
            master.wait_for(r"Rolling restart complete", timeout=2 + 10)
        assert master.count(rf"Worker \[{old}\] did not stop in time") == 1
        assert master.count(rf"Worker \[{old}\] stopped \(signal SIGKILL\)") == 1
        assert get_pid(master.port) != old
