"""The `roadrunner` command as a user runs it: real processes, real sockets, exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

APP = textwrap.dedent(
    """
    import asyncio, os

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if os.environ.get("FAIL_STARTUP"):
                        await send({"type": "lifespan.startup.failed", "message": "db down"})
                        return
                    scope["state"]["greeting"] = "hi"
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    print("SHUTDOWN-RAN", flush=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/slow":
            await asyncio.sleep(1.0)
        if scope["path"] == "/stuck":
            await asyncio.sleep(30)
        body = (scope["state"].get("greeting", "none") + " " + os.environ.get("FROM_ENV_FILE", "")).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def factory():
        return app

    raise_on_import = None
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "cliapp.py").write_text(APP)
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    return tmp_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "roadrunner", *args],
        cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_ready(port: int, proc: subprocess.Popen[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not start")


def run_to_exit(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = start(args, cwd, env)
    out, _ = proc.communicate(timeout=20)
    return proc.returncode, out


def test_serves_with_lifespan_state_env_file_and_shuts_down(app_dir: Path) -> None:
    port = free_port()
    (app_dir / ".env").write_text("FROM_ENV_FILE=loaded\n")
    proc = start(["cliapp:app", "--port", str(port), "--env-file", ".env"], app_dir)
    try:
        wait_ready(port, proc)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "hi loaded"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "SHUTDOWN-RAN" in out
    assert f"Roadrunner running on http://127.0.0.1:{port}" in out


def test_environment_variables_set_flags_and_factory(app_dir: Path) -> None:
    port = free_port()
    proc = start(["cliapp:factory", "--factory"], app_dir, {"ROADRUNNER_PORT": str(port)})
    try:
        wait_ready(port, proc)
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["broken:app"], {}, "No module named 'does_not_exist_anywhere'"),
        (["nosuchmodule:app"], {}, 'Could not import module "nosuchmodule"'),
        (["cliapp:missing"], {}, 'Attribute "missing" not found'),
        (["cliapp:raise_on_import"], {}, "is not callable"),
        (["cliapp:app", "--lifespan", "on"], {"FAIL_STARTUP": "1"}, "Application startup failed"),
        (["cliapp:app", "--protocols", "h9"], {}, "Unknown protocol 'h9'"),
        (["cliapp:app", "--limit-request-line", "0"], {}, "must be positive"),
        (["cliapp:app", "--ssl-certfile", "/nonexistent.pem"], {}, "Could not load the TLS certificate"),
    ],
)
def test_startup_failures_exit_3_with_one_clear_line(
    app_dir: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    code, out = run_to_exit([*args, "--port", str(free_port())], app_dir, env)
    assert code == 3, out
    assert message in out
    assert "Traceback" not in out or "does_not_exist_anywhere" in message


def test_port_in_use_exits_3(app_dir: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        code, out = run_to_exit(["cliapp:app", "--port", str(port)], app_dir)
    assert code == 3
    assert f"Cannot bind to 127.0.0.1:{port}" in out


def test_version_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "roadrunner", "--version"], capture_output=True, text=True)
    assert out.stdout.startswith("Running roadrunner ")
    helptext = subprocess.run([sys.executable, "-m", "roadrunner", "--help"], capture_output=True, text=True).stdout
    for flag in ["--uds", "--fd", "--reload-dir", "--ws-max-size", "--forwarded-allow-ips",
                 "--timeout-graceful-shutdown", "--h11-max-incomplete-event-size", "--protocols"]:
        assert flag in helptext


def test_graceful_shutdown_finishes_in_flight_request(app_dir: Path) -> None:
    port = free_port()
    proc = start(["cliapp:app", "--port", str(port), "--timeout-graceful-shutdown", "5"], app_dir)
    wait_ready(port, proc)
    result: dict[str, object] = {}

    def slow_request() -> None:
        try:
            result["status"] = httpx.get(f"http://127.0.0.1:{port}/slow", timeout=10).status_code
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    thread.join(10)
    proc.communicate(timeout=10)
    assert result.get("status") == 200, result
    assert proc.returncode == 0


def test_uds_serving(app_dir: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "rr.sock")
    proc = start(["cliapp:app", "--uds", path], app_dir)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport) as client:
            assert client.get("http://localhost/").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert "unix socket" in out
    assert not os.path.exists(path)


def test_fd_serving(app_dir: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.set_inheritable(True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "roadrunner", "cliapp:app", "--fd", str(sock.fileno())],
        cwd=app_dir, pass_fds=[sock.fileno()], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_ready(port, proc)
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        sock.close()
    assert proc.returncode == 0


def test_second_sigint_forces_exit(app_dir: Path) -> None:
    """One SIGINT starts draining a request stuck for 30 s; a second one stops waiting."""
    port = free_port()
    proc = start(["cliapp:app", "--port", str(port), "--timeout-graceful-shutdown", "60"], app_dir)
    wait_ready(port, proc)
    holder = socket.create_connection(("127.0.0.1", port))
    holder.sendall(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    holder.close()
    assert time.monotonic() - began < 10
