"""The ASGI HTTP contract the frameworks rely on, on h1 (both parsers), h2 and h3.

- After the last http.request, receive() blocks until the client goes or the response is
  complete, then returns http.disconnect (uvicorn; Django's listen_for_disconnect, Starlette's
  listen_for_disconnect, Quart and sse-starlette all watch for the disconnect this way).
- send() after the client has gone raises an OSError subclass (ASGI spec 2.4+; we advertise
  2.5), which Starlette's StreamingResponse relies on to stop an endless generator.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hyperframe.frame import RstStreamFrame

from tests.helpers import read_body, run_server
from tests.integration.process_helpers import roadrunner
from tests.integration.test_http2_support import RawH2, request_headers
from tests.integration.test_http3_helpers import h3_connect, h3_server_kwargs

CANCEL = 0x8


async def watcher_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the body, start a disconnect watcher (as Django does), answer after 0.3 s.

    The body says whether the watcher returned before the response was sent (it must not);
    the x-after header what it returned once the response was complete.
    """
    body = await read_body(receive)
    watcher = asyncio.ensure_future(receive())
    await asyncio.sleep(0.3)
    early = watcher.result()["type"] if watcher.done() else "none"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"{len(body)} early={early}".encode()})
    message = await asyncio.wait_for(watcher, 2)
    watcher_results.append(message["type"])


watcher_results: list[str] = []


@pytest.fixture(autouse=True)
def clear_watcher_results() -> None:
    watcher_results.clear()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_h1_receive_after_body_waits_for_response_complete(http: str) -> None:
    with run_server(watcher_app, http=http) as server, httpx.Client() as client:
        response = client.post(server.url + "/", content=b"x" * 1000)
        assert response.text == "1000 early=none"
        response = client.get(server.url + "/")  # keep-alive: the next request is served too
        assert response.text == "0 early=none"
        deadline = time.monotonic() + 2
        while len(watcher_results) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert watcher_results == ["http.disconnect", "http.disconnect"]


@pytest.mark.usefixtures("http2_engine")
def test_h2_receive_after_body_waits_for_response_complete() -> None:
    with run_server(watcher_app, protocols="h1,h2") as server:
        with httpx.Client(http1=False, http2=True) as client:
            responses = [client.post(server.url + "/", content=b"y" * 500) for _ in range(2)]
        assert [r.http_version for r in responses] == ["HTTP/2", "HTTP/2"]
        assert [r.text for r in responses] == ["500 early=none"] * 2
        deadline = time.monotonic() + 2
        while len(watcher_results) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert watcher_results == ["http.disconnect", "http.disconnect"]


def test_h3_receive_after_body_waits_for_response_complete(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            response = await client.request("POST", "/", body=b"z" * 300)
            assert response.status == 200
            assert bytes(response.body) == b"300 early=none"

    with run_server(watcher_app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))
        deadline = time.monotonic() + 2
        while not watcher_results and time.monotonic() < deadline:
            time.sleep(0.01)
    assert watcher_results == ["http.disconnect"]


class DisconnectProbe:
    """An app that streams a first chunk, then waits in receive() for the client to leave.

    It records what receive() returned and what the send() after that raised.
    """

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.started = threading.Event()
        self.done = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await read_body(receive)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            self.started.set()
            self.events.append((await receive())["type"])
            try:
                await send({"type": "http.response.body", "body": b"late", "more_body": True})
            except OSError as exc:
                self.events.append(type(exc).__name__)
        finally:
            self.done.set()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_h1_client_leaving_wakes_receive_and_send_raises(http: str) -> None:
    probe = DisconnectProbe()
    with run_server(probe, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert probe.started.wait(5)
            time.sleep(0.2)
            assert not probe.done.is_set()  # receive() is waiting, not answering
        assert probe.done.wait(5)
    assert probe.events == ["http.disconnect", "ClientDisconnected"]


@pytest.mark.usefixtures("http2_engine")
def test_h2_stream_reset_wakes_receive_and_send_raises() -> None:
    probe = DisconnectProbe()
    with run_server(probe, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1, request_headers(b"/"))
        assert probe.started.wait(5)
        time.sleep(0.2)
        assert not probe.done.is_set()
        client.send(RstStreamFrame(1, error_code=CANCEL))
        assert probe.done.wait(5)
        assert client.is_alive()
    assert probe.events == ["http.disconnect", "ClientDisconnected"]


def test_h3_stream_reset_wakes_receive_and_send_raises(tls_files: dict[str, str]) -> None:
    probe = DisconnectProbe()

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            stream_id = client.start_request("GET", "/")
            await asyncio.get_running_loop().run_in_executor(None, probe.started.wait, 5)
            await asyncio.sleep(0.2)
            assert not probe.done.is_set()
            client._quic.reset_stream(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
            client._quic.stop_stream(stream_id, 0x10C)
            client.transmit()
            await asyncio.get_running_loop().run_in_executor(None, probe.done.wait, 5)

    with run_server(probe, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))
    assert probe.events == ["http.disconnect", "ClientDisconnected"]


# -- Starlette, both ways it watches for a disconnect ---------------------------------------------


def starlette_endless_app(finally_ran: threading.Event, spec_version: str | None) -> Any:
    """An endless StreamingResponse; with spec_version set, the scope claims that version."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def numbers() -> Any:
        try:
            n = 0
            while True:
                yield f"{n}\n"
                n += 1
                await asyncio.sleep(0.005)
        finally:
            finally_ran.set()

    async def endpoint(request: Any) -> StreamingResponse:
        return StreamingResponse(numbers(), media_type="text/plain")

    app = Starlette(routes=[Route("/", endpoint)])
    if spec_version is None:
        return app

    async def claim_version(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["asgi"] = {**scope["asgi"], "spec_version": spec_version}
        await app(scope, receive, send)

    return claim_version


@pytest.mark.parametrize("protocols", ["h1", "h1,h2"])
@pytest.mark.parametrize(
    "spec_version",
    [None, "2.3"],
    ids=["spec-2.5-send-raises", "spec-2.3-starlette-listens-on-receive"],
)
def test_starlette_endless_stream_stops_when_client_leaves(
    spec_version: str | None, protocols: str
) -> None:
    finally_ran = threading.Event()
    app = starlette_endless_app(finally_ran, spec_version)
    with run_server(app, protocols=protocols) as server:
        with httpx.Client(http1=protocols == "h1", http2=protocols != "h1", timeout=5) as client:
            with client.stream("GET", server.url + "/") as response:
                lines = response.iter_lines()
                assert [next(lines) for _ in range(3)] == ["0", "1", "2"]
        assert finally_ran.wait(10), "the generator kept running after the client left"
        started = time.monotonic()
    # Nothing is left running: shutdown is prompt (uvicorn: 0.3 s).
    assert time.monotonic() - started < 10


def test_a_body_iterator_is_closed_when_the_app_lets_the_disconnect_out() -> None:
    """send() raises once the client is gone (spec 2.4+), and an app that lets that out often
    leaves the exception in a reference cycle (a task group keeps it; here a local does): its
    async generator then stays suspended until the cyclic GC runs, which on an idle server may
    be never (Starlette's stream with a disconnect listener, spec 2.3, met that when send()
    raised before the listener's cancel landed). The server clears the finished frames of the
    exception it discards, so the generator is freed and asyncio closes it. Judged with the
    collector off: before, its finally never ran."""
    finally_ran = threading.Event()
    chunks_sent = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def numbers() -> Any:
            try:
                while True:
                    yield b"x\n"
            finally:
                finally_ran.set()

        body = numbers()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            async for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                chunks_sent.set()
                await asyncio.sleep(0.02)
        except OSError as exc:
            error = exc  # noqa: F841 - the frame <-> traceback cycle a framework's task group makes
            raise

    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with run_server(app) as server:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert chunks_sent.wait(5)
            assert finally_ran.wait(5), "the body iterator was left to the garbage collector"
    finally:
        if gc_was_enabled:
            gc.enable()


# -- the spin guard: a real process, its CPU time and SIGTERM --------------------------------------

LONG_POLL_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    print("waiting", flush=True)
    while True:  # a disconnect watcher that answers nothing until the client goes
        message = await receive()
        if message["type"] == "http.disconnect":
            print("disconnected", flush=True)
            return
'''


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_app_looping_on_receive_costs_no_cpu_and_sigterm_stops_it(tmp_path: Path) -> None:
    (tmp_path / "longpoll.py").write_text(LONG_POLL_APP)
    with roadrunner("longpoll:app", "--timeout-graceful-shutdown", "1", cwd=tmp_path) as process:
        port = process.port
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            process.wait_for("waiting")
            time.sleep(0.2)
            before = cpu_seconds(process.proc.pid)
            time.sleep(1.0)
            spent = cpu_seconds(process.proc.pid) - before
            assert spent < 0.1, f"the server burnt {spent:.2f} CPU-s in 1 s with an idle app"
            started = time.monotonic()
            process.signal(signal.SIGTERM)
            assert process.wait(timeout=6) == 0
            assert time.monotonic() - started < 4  # graceful timeout 1 s, then the app is cancelled
