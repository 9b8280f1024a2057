"""Log lines side by side with uvicorn: the same app and log config under `python -m uvicorn`
and `python -m roadrunner` print the same lines (ports, pids and the banner aside)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
import re
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
import yaml
from uvicorn.config import LOGGING_CONFIG as UVICORN_LOGGING_CONFIG
from wsproto.events import CloseConnection, TextMessage

from roadrunner.config import Config
from roadrunner.logging import ForwardHandler
from tests.helpers import capture_logs, raw_request, run_server, status_of
from tests.integration.process_helpers import Process
from tests.integration.test_websocket_h3 import H3WebSocket
from tests.integration.test_websocket_h3 import connect as h3_connect
from tests.integration.ws_h2_client import H2WebSocketClient

APP = '''
import logging

# Apps silence health checks like this (under uvicorn): roadrunner's access lines obey it too.
logging.getLogger("uvicorn.access").addFilter(lambda record: "/hidden" not in record.getMessage())

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "http":
        logging.getLogger("uvicorn.error").info("app says %s", scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["path"] == "/raise":
        raise RuntimeError("boom")
    if scope["path"] == "/return":
        return
    if scope["path"].endswith("/reject"):
        await send({"type": "websocket.close"})
        return
    if scope["path"].endswith("/deny"):
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no"})
        return
    await receive()
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": message["text"]})
    await send({"type": "websocket.close"})
    while (await receive())["type"] != "websocket.disconnect":
        pass
'''

INI = """\
[loggers]
keys=root,uvicorn,uvicorn.error,uvicorn.access

[handlers]
keys=default,access

[formatters]
keys=default,access

[logger_root]
level=WARNING
handlers=

[logger_uvicorn]
level=INFO
handlers=default
propagate=0
qualname=uvicorn

[logger_uvicorn.error]
level=INFO
handlers=
propagate=1
qualname=uvicorn.error

[logger_uvicorn.access]
level=INFO
handlers=access
propagate=0
qualname=uvicorn.access

[handler_default]
class=StreamHandler
formatter=default
args=(sys.stderr,)

[handler_access]
class=StreamHandler
formatter=access
args=(sys.stdout,)

[formatter_default]
class=uvicorn.logging.DefaultFormatter
format=%(levelprefix)s [%(name)s] %(message)s

[formatter_access]
class=uvicorn.logging.AccessFormatter
format=%(levelprefix)s [%(name)s] %(client_addr)s - "%(request_line)s" %(status_code)s
"""

# Lines that differ on purpose: the banner names the server (and roadrunner its protocols);
# uvicorn (0.54, websockets-sansio) logs this error after a correct websocket.http.response.
BANNER = re.compile(r"running on|ASGI callable returned without completing handshake")
LOG_LINE = re.compile(r"(?:\x1b\[\d+m)?(TRACE|DEBUG|INFO|WARNING|ERROR|CRITICAL)(?:\x1b\[0m)?:")


def write_configs(directory: Path) -> dict[str, str]:
    """uvicorn's own LOGGING_CONFIG as JSON, as YAML (with the logger name shown), and an .ini."""
    named = copy.deepcopy(UVICORN_LOGGING_CONFIG)
    for formatter in named["formatters"].values():
        formatter["fmt"] = formatter["fmt"].replace("%(levelprefix)s", "%(levelprefix)s [%(name)s]")
    (directory / "log.json").write_text(json.dumps(UVICORN_LOGGING_CONFIG))
    (directory / "log.yaml").write_text(yaml.safe_dump(named))
    (directory / "log.ini").write_text(INI)
    return {"json": "log.json", "yaml": "log.yaml", "ini": "log.ini"}


@contextlib.contextmanager
def serve(server: str, *args: str, cwd: Path) -> Iterator[Process]:
    """`python -m uvicorn|roadrunner logapp:app --port 0 ARGS`, stopped at the end."""
    (cwd / "logapp.py").write_text(APP)
    process = Process([sys.executable, "-m", server, "logapp:app", "--port", "0", *args], cwd)
    try:
        yield process
    finally:
        process.kill_tree()


def websocket_session(port: int) -> None:
    """Accept + echo + server close; a close before accept; a websocket.http.response denial."""

    async def run() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?a=1") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws.recv()
        for path, status in (("/ws/reject", 403), ("/ws/deny", 401)):
            with pytest.raises(websockets.InvalidStatus, match=str(status)):
                async with websockets.connect(f"ws://127.0.0.1:{port}{path}"):
                    pass

    asyncio.run(run())


def h2_websocket_session(port: int) -> None:
    """The same session over HTTP/2 Extended CONNECT (RFC 8441)."""
    client = H2WebSocketClient(port, path="/ws?a=1")
    assert client.status == 200
    client.send(TextMessage("hi"))
    assert client.next_event() == TextMessage("hi")
    assert isinstance(client.next_event(), CloseConnection)
    client.close()
    for path, status in (("/ws/reject", 403), ("/ws/deny", 401)):
        client = H2WebSocketClient(port, path=path)
        assert client.status == status
        client.close()


def h3_websocket_session(port: int, tls_files: dict[str, str]) -> None:
    """The same session over HTTP/3 Extended CONNECT (RFC 9220)."""

    async def run() -> None:
        async with h3_connect(port, tls_files) as client:
            ws = await H3WebSocket.open(client, "/ws?a=1")
            assert ws.status == 200
            ws.send(TextMessage("hi"))
            assert await ws.receive_message() == "hi"
            assert isinstance(await ws.next_event(), CloseConnection)
            for path, status in (("/ws/reject", 403), ("/ws/deny", 401)):
                assert (await H3WebSocket.open(client, path)).status == status

    asyncio.run(asyncio.wait_for(run(), 20))


def failing_session(port: int) -> None:
    """The app fails before accepting (raises; returns); a handshake without Sec-WebSocket-Key."""

    async def run() -> None:
        for path in ("/raise", "/return"):
            with pytest.raises(websockets.InvalidStatus, match="500"):
                async with websockets.connect(f"ws://127.0.0.1:{port}{path}"):
                    pass

    asyncio.run(run())
    answer = raw_request(port, b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                               b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert status_of(answer) == 400
    # The last line of the session, for run_scenario to wait for.
    websocket_session(port)


def run_scenario(
    process: Process, session: Callable[[int], None] = websocket_session,
    context: ssl.SSLContext | None = None, access_log: bool = True,
) -> list[str]:
    """The WebSocket session, then HTTP requests; the server's log lines, normalised."""
    # The banner's address may be bold (--use-colors).
    port = int(process.wait_for(r"running on (?:\x1b\[1m)?https?://127\.0\.0\.1:(\d+)")[0].group(1))
    session(port)
    process.wait_for(r"connection rejected \(401")
    base = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    for path in ("/hidden", "/a%20b/c?x=1"):
        with urllib.request.urlopen(base + path, context=context) as response:
            assert response.read() == b"ok"
    process.wait_for(r"app says .*/a b/c")
    if access_log:
        process.wait_for(r'"(?:\x1b\[1m)?GET .*a%20b/c\?x=1 HTTP/1.1')
    else:
        time.sleep(0.2)  # time for a wrong access line to show
    assert "Logging error" not in process.output
    # Log lines only (not traceback lines), with ports and pids masked.
    lines = [line for line in process.lines if LOG_LINE.match(line) and not BANNER.search(line)]
    lines = [re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line) for line in lines]
    return [re.sub(r"process \[\d+\]", "process [PID]", line) for line in lines]


@pytest.mark.parametrize("kind", ["default", "json", "yaml", "ini"])
def test_same_lines_as_uvicorn(kind: str, tmp_path: Path) -> None:
    args = [] if kind == "default" else ["--log-config", write_configs(tmp_path)[kind]]
    with serve("uvicorn", *args, cwd=tmp_path) as uvicorn:
        expected = run_scenario(uvicorn)
    with serve("roadrunner", *args, cwd=tmp_path) as roadrunner:
        got = run_scenario(roadrunner)
    assert got == expected
    assert not [line for line in got if '"GET /hidden' in line]
    # The lines the comparison covers, as uvicorn prints them.
    name = " [uvicorn.error]" if kind in ("yaml", "ini") else ""
    assert f'INFO:    {name} 127.0.0.1:PORT - "WebSocket /ws?a=1" [accepted]' in got
    assert f"INFO:    {name} connection rejected (403 Forbidden)" in got
    assert f"INFO:    {name} app says /a b/c" in got


def test_root_path_logged_once_like_uvicorn(tmp_path: Path) -> None:
    # uvicorn's scope["path"] is root_path + the request path, and that is what it logs.
    with serve("uvicorn", "--root-path", "/sub", cwd=tmp_path) as uvicorn:
        expected = run_scenario(uvicorn)
    with serve("roadrunner", "--root-path", "/sub", cwd=tmp_path) as roadrunner:
        got = run_scenario(roadrunner)
    assert got == expected
    assert 'INFO:     127.0.0.1:PORT - "GET /sub/a%20b/c?x=1 HTTP/1.1" 200 OK' in got
    assert 'INFO:     127.0.0.1:PORT - "WebSocket /sub/ws?a=1" [accepted]' in got


def test_websocket_over_h2_logs_like_uvicorn_h1(tmp_path: Path) -> None:
    with serve("uvicorn", cwd=tmp_path) as uvicorn:
        expected = run_scenario(uvicorn)
    with serve("roadrunner", "--protocols", "h1,h2", cwd=tmp_path) as roadrunner:
        got = run_scenario(roadrunner, session=h2_websocket_session)
    assert got == expected


def test_websocket_over_h3_logs_like_uvicorn_h1(tmp_path: Path, tls_files: dict[str, str]) -> None:
    with serve("uvicorn", cwd=tmp_path) as uvicorn:
        expected = run_scenario(uvicorn)
    tls = ["--ssl-certfile", tls_files["certfile"], "--ssl-keyfile", tls_files["keyfile"]]
    with serve("roadrunner", "--protocols", "h1,h2,h3", *tls, cwd=tmp_path) as roadrunner:
        got = run_scenario(
            roadrunner, functools.partial(h3_websocket_session, tls_files=tls_files),
            context=ssl.create_default_context(cafile=tls_files["cafile"]),
        )
    assert got == expected


def test_no_access_log_like_uvicorn(tmp_path: Path) -> None:
    with serve("uvicorn", "--no-access-log", cwd=tmp_path) as uvicorn:
        expected = run_scenario(uvicorn, access_log=False)
    with serve("roadrunner", "--no-access-log", cwd=tmp_path) as roadrunner:
        got = run_scenario(roadrunner, access_log=False)
    assert got == expected
    # The WebSocket lines stay: uvicorn logs them on uvicorn.error, not as access lines.
    assert 'INFO:     127.0.0.1:PORT - "WebSocket /ws?a=1" [accepted]' in got
    assert not [line for line in got if '"GET ' in line]


def test_failed_handshakes_log_like_uvicorn(tmp_path: Path) -> None:
    with serve("uvicorn", cwd=tmp_path) as uvicorn:
        expected = run_scenario(uvicorn, failing_session)
    with serve("roadrunner", cwd=tmp_path) as roadrunner:
        got = run_scenario(roadrunner, failing_session)
    assert got == expected
    assert got.count("INFO:     connection rejected (500 Internal Server Error)") == 2
    assert "INFO:     connection rejected (400 Bad Request)" in got


def test_colours_like_uvicorn(tmp_path: Path) -> None:
    with serve("uvicorn", "--use-colors", cwd=tmp_path) as uvicorn:
        expected = run_scenario(uvicorn)
    with serve("roadrunner", "--use-colors", cwd=tmp_path) as roadrunner:
        got = run_scenario(roadrunner)
    # The pid in uvicorn's startup and shutdown lines is coloured by the server, not the formatter.
    assert [line for line in got if "server process" not in line] == [
        line for line in expected if "server process" not in line
    ]
    assert ('\x1b[32mINFO\x1b[0m:     127.0.0.1:PORT - "\x1b[1mGET /a%20b/c?x=1 HTTP/1.1\x1b[0m" '
            '\x1b[32m200 OK\x1b[0m') in got


def test_config_naming_roadrunner_loggers_still_works(tmp_path: Path) -> None:
    config = copy.deepcopy(UVICORN_LOGGING_CONFIG)
    config["formatters"]["default"]["fmt"] = "%(levelprefix)s %(name)s|%(message)s"
    config["formatters"]["access"]["fmt"] = (
        '%(levelprefix)s %(name)s|%(client_addr)s - "%(request_line)s" %(status_code)s'
    )
    config["loggers"] = {
        "roadrunner": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "roadrunner.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"handlers": ["default"], "level": "INFO", "propagate": False},
    }
    (tmp_path / "rr.json").write_text(json.dumps(config))
    with serve("roadrunner", "--log-config", "rr.json", cwd=tmp_path) as roadrunner:
        lines = run_scenario(roadrunner)
    assert 'INFO:     roadrunner.error|127.0.0.1:PORT - "WebSocket /ws?a=1" [accepted]' in lines
    assert 'INFO:     roadrunner.access|127.0.0.1:PORT - "GET /a%20b/c?x=1 HTTP/1.1" 200 OK' in lines
    assert "INFO:     uvicorn.error|app says /a b/c" in lines
    # The uvicorn.access filter the app adds does not apply to roadrunner.access here.
    assert 'INFO:     roadrunner.access|127.0.0.1:PORT - "GET /hidden HTTP/1.1" 200 OK' in lines


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def access() -> Iterator[logging.Logger]:
    """roadrunner.access (and its parent) as in a fresh process; restored afterwards."""
    loggers = [logging.getLogger(name) for name in ("roadrunner", "roadrunner.access", "uvicorn.access")]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.handlers, logger.propagate = [], True
        logger.setLevel(logging.NOTSET)
    yield loggers[1]  # (uvicorn.access: --log-level sets it)
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_routing_redone_per_config_in_one_process(access: logging.Logger) -> None:
    """Each Config applies its log config afresh; a handler a test (or app) added keeps its level."""
    Config("app:app", log_config=None, log_level="warning")
    assert access.level == logging.WARNING
    Config("app:app", log_config=None)
    assert [type(h) for h in access.handlers] == [ForwardHandler]
    assert access.level == logging.getLogger("uvicorn.access").getEffectiveLevel()
    with capture_logs("roadrunner.access") as logs:
        with run_server(http_app) as server:
            with urllib.request.urlopen(f"{server.url}/x"):
                pass
    assert len(logs.records) == 1
    assert logs.text.endswith(' - "GET /x HTTP/1.1" 200')
    own = {"version": 1, "disable_existing_loggers": False,
           "loggers": {"roadrunner.access": {"level": "DEBUG"}}}
    Config("app:app", log_config=own)
    assert not access.handlers and access.propagate and access.level == logging.DEBUG
