"""--reload over a real process: edit the app on disk, the worker restarts with the new code."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import watchfiles

from roadrunner.reload import ReloadFilter
from tests.integration.process_helpers import roadrunner

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process model")

APP = '''
BODY = b"{version}"

async def app(scope, receive, send):
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(BODY)).encode())]}})
    await send({{"type": "http.response.body", "body": BODY}})
'''
READY = r"Worker \[\d+\] ready"


def write(directory: Path, version: str) -> None:
    (directory / "versioned.py").write_text(APP.format(version=version))


def body(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return data.partition(b"\r\n\r\n")[2]


def test_edit_restarts_the_worker_with_new_code(tmp_path: Path) -> None:
    write(tmp_path, "one")
    args = ["--reload", "--reload-delay", "0.05", "--preload"]
    with roadrunner("versioned:app", *args, cwd=tmp_path) as master:
        master.wait_for(READY)
        assert master.count("--preload is ignored with --reload") == 1
        assert body(master.port) == b"one"
        write(tmp_path, "two")
        master.wait_for(r"Detected changes in versioned\.py\. Reloading")
        master.wait_for(READY, count=2)
        assert body(master.port) == b"two"


def test_syntax_error_keeps_the_reloader_alive(tmp_path: Path) -> None:
    write(tmp_path, "one")
    with roadrunner("versioned:app", "--reload", "--reload-delay", "0.05", cwd=tmp_path) as master:
        master.wait_for(READY)
        (tmp_path / "versioned.py").write_text("def broken(:\n")
        master.wait_for(r"failed to boot; waiting for file changes")
        assert master.count("invalid syntax") + master.count("SyntaxError") >= 1
        assert master.proc.poll() is None
        write(tmp_path, "fixed")
        master.wait_for(READY, count=2)
        assert body(master.port) == b"fixed"


def test_include_and_exclude_patterns(tmp_path: Path) -> None:
    write(tmp_path, "one")
    watched = tmp_path / "watched"
    watched.mkdir()
    args = ["--reload", "--reload-delay", "0.05", "--reload-dir", str(watched),
            "--reload-include", "*.txt", "--reload-exclude", "skip_*.py"]
    with roadrunner("versioned:app", *args, cwd=tmp_path) as master:
        master.wait_for(READY)
        (watched / "skip_me.py").write_text("x = 1\n")  # excluded
        (watched / "notes.txt").write_text("hello\n")  # included
        line = master.wait_for(r"Detected changes in (.*)\. Reloading")[0].group(1)
        assert "notes.txt" in line and "skip_me.py" not in line
        master.wait_for(READY, count=2)


def test_reload_filter_defaults() -> None:
    accept = ReloadFilter(includes=["*.html"], excludes=["*.tmp.py"])
    assert accept(watchfiles.Change.modified, "/app/main.py")
    assert accept(watchfiles.Change.modified, "/app/templates/index.html")
    assert not accept(watchfiles.Change.modified, "/app/cache.tmp.py")
    assert not accept(watchfiles.Change.modified, "/app/main.pyc")
    assert not accept(watchfiles.Change.modified, "/app/.hidden.py")
    assert not accept(watchfiles.Change.modified, "/app/__pycache__/main.py")
    assert not accept(watchfiles.Change.modified, "/app/readme.md")
