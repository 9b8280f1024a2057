"""A real gunicorn arbiter with roadrunner's worker classes, over real sockets."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.process_helpers import Process, get_pid, pid_alive, write_app

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gunicorn is POSIX only")

BOOTED = r"Booting worker with pid: (\d+)"


@contextlib.contextmanager
def gunicorn(tmp_path: Path, *args: str, worker: str = "RoadrunnerWorker",
             env: dict[str, str] | None = None) -> Iterator[Process]:
    app = write_app(tmp_path)
    argv = [sys.executable, "-m", "gunicorn", "-k", f"roadrunner.gunicorn.{worker}",
            "-b", "127.0.0.1:0", "--no-control-socket", *args, app]
    process = Process(argv, tmp_path, env)
    try:
        yield process
    finally:
        process.kill_tree()


def booted(process: Process, count: int) -> list[int]:
    return [int(m.group(1)) for m in process.wait_for(BOOTED, count=count)]


@pytest.mark.parametrize("worker", ["RoadrunnerWorker", "RoadrunnerH11Worker"])
def test_gunicorn_serves_http_and_respawns_a_killed_worker(tmp_path: Path, worker: str) -> None:
    with gunicorn(tmp_path, "-w", "2", "--keep-alive", "3", worker=worker) as arbiter:
        pids = booted(arbiter, 2)
        arbiter.wait_for("Application startup complete", count=2)
        response = httpx.get(f"http://127.0.0.1:{arbiter.port}/")
        assert response.status_code == 200
        assert response.headers["server"] == "roadrunner"
        assert int(response.text) in pids
        os.kill(pids[0], signal.SIGKILL)
        replacement = booted(arbiter, 3)[-1]
        arbiter.wait_for("Application startup complete", count=3)
        served = {get_pid(arbiter.port) for _ in range(20)}
        assert served <= {pids[1], replacement}
        arbiter.signal(signal.SIGTERM)
        assert arbiter.wait() == 0
    assert not pid_alive(replacement)


def test_gunicorn_serves_https(tmp_path: Path, tls_files: dict[str, str],
                               client_ssl_context: ssl.SSLContext) -> None:
    args = ["-w", "1", "--certfile", tls_files["certfile"], "--keyfile", tls_files["keyfile"]]
    with gunicorn(tmp_path, *args) as arbiter:
        arbiter.wait_for("Application startup complete")
        url = f"https://127.0.0.1:{arbiter.port}/"
        with httpx.Client(verify=client_ssl_context) as client:
            response = client.get(url)
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
        with httpx.Client(verify=client_ssl_context, http2=True, http1=False) as client:
            assert client.get(url).http_version == "HTTP/2"


def test_gunicorn_sigterm_drains_in_flight_request(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "-w", "1", "--graceful-timeout", "10") as arbiter:
        arbiter.wait_for("Application startup complete")
        port = arbiter.port
        outcome: dict[str, object] = {}

        def slow() -> None:
            try:
                outcome["pid"] = get_pid(port, "/slow?1", timeout=10)
            except Exception as exc:  # noqa: BLE001 - asserted below
                outcome["error"] = exc

        client = threading.Thread(target=slow)
        client.start()
        arbiter.wait_for("slow-started")
        arbiter.signal(signal.SIGTERM)
        client.join(10)
        assert arbiter.wait() == 0
    assert "error" not in outcome and isinstance(outcome["pid"], int)
    assert arbiter.count("Application shutdown complete") == 1


def test_gunicorn_sigquit_is_a_fast_exit(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "-w", "1", "--graceful-timeout", "30") as arbiter:
        arbiter.wait_for("Application startup complete")
        port = arbiter.port
        errors: list[BaseException] = []

        def slow() -> None:
            try:
                get_pid(port, "/slow?30", timeout=20)
            except Exception as exc:  # noqa: BLE001 - the request is cut short
                errors.append(exc)

        client = threading.Thread(target=slow)
        client.start()
        arbiter.wait_for("slow-started")
        arbiter.signal(signal.SIGQUIT)
        assert arbiter.wait(timeout=10) == 0
        client.join(10)
    assert errors  # the 30 s request did not hold the exit


def test_gunicorn_max_requests_recycles_the_worker(tmp_path: Path) -> None:
    args = ["-w", "1", "--max-requests", "5", "--max-requests-jitter", "2"]
    with gunicorn(tmp_path, *args) as arbiter:
        first = booted(arbiter, 1)[0]
        arbiter.wait_for("Application startup complete")
        served = []
        deadline = time.monotonic() + 10
        while len(booted(arbiter, 0)) < 2:
            # The count is checked on the server's 0.1 s tick: a few more may be served first.
            with contextlib.suppress(OSError, AssertionError):
                served.append(get_pid(arbiter.port))
            assert time.monotonic() < deadline, "the worker was not recycled"
        assert served.count(first) >= 5
        arbiter.wait_for("Maximum request limit of [5-7] exceeded")


def test_gunicorn_halts_with_3_when_lifespan_startup_fails(tmp_path: Path) -> None:
    env = {"FAIL_STARTUP": "1"}
    # One worker: with two, gunicorn 27's arbiter itself may crash in halt() when the second
    # worker also exits 3 during stop() (HaltServer raised again from reap_workers).
    with gunicorn(tmp_path, "-w", "1", env=env) as arbiter:
        code = arbiter.wait()
    assert code == 3
    assert arbiter.count("startup refused") == 1
    assert arbiter.count("Worker failed to boot") == 1
