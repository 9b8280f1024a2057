"""TLS, lifespan, proxy headers, access log and graceful shutdown on a real server."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from typing import Any

import httpx
import pytest

from tests.helpers import capture_logs, raw_request, run_server


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["db"] = "connected"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = repr({
        "scheme": scope["scheme"],
        "client": scope["client"],
        "state": scope.get("state"),
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def test_https_serves_with_alpn_http11(tls_files: dict[str, str], client_ssl_context: ssl.SSLContext) -> None:
    with run_server(scope_app, ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
                    protocols="h1") as server:
        response = httpx.get(server.url + "/", verify=client_ssl_context)
        assert response.status_code == 200
        assert "'scheme': 'https'" in response.text
        context = ssl.create_default_context(cafile=tls_files["cafile"])
        context.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.selected_alpn_protocol() == "http/1.1"


def test_lifespan_state_is_copied_into_requests() -> None:
    with run_server(scope_app, lifespan="on") as server:
        response = httpx.get(server.url + "/")
    assert "'state': {'db': 'connected'}" in response.text


def test_lifespan_auto_tolerates_apps_without_lifespan() -> None:
    async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with capture_logs("roadrunner.error") as logs:
        with run_server(http_only, lifespan="auto") as server:
            assert httpx.get(server.url + "/").status_code == 204
    assert "ASGI 'lifespan' protocol appears unsupported." in logs.text


def test_lifespan_startup_failure_stops_server() -> None:
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(RuntimeError, match="server failed to start"):
        with run_server(failing, lifespan="on"):
            pass


def test_asgi2_app_is_adapted() -> None:
    class ASGI2App:
        def __init__(self, scope: dict[str, Any]) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"asgi2"})

    with run_server(ASGI2App) as server:
        assert httpx.get(server.url + "/").text == "asgi2"


@pytest.mark.parametrize(
    ("trusted", "headers", "expected_client", "expected_scheme"),
    [
        ("127.0.0.1", {"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"}, "1.2.3.4", "https"),
        ("10.0.0.0/8", {"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"}, "127.0.0.1", "http"),
        ("127.0.0.1,10.0.0.0/8", {"X-Forwarded-For": "9.9.9.9, 5.5.5.5, 10.1.1.1"}, "5.5.5.5", "http"),
        ("*", {"X-Forwarded-For": "9.9.9.9, 5.5.5.5"}, "9.9.9.9", "http"),
    ],
)
def test_proxy_headers_trusted_only_from_allowed_ips(
    trusted: str, headers: dict[str, str], expected_client: str, expected_scheme: str
) -> None:
    with run_server(scope_app, forwarded_allow_ips=trusted) as server:
        text = httpx.get(server.url + "/", headers=headers).text
    assert f"'client': ('{expected_client}'," in text
    assert f"'scheme': '{expected_scheme}'" in text


def test_no_proxy_headers_flag() -> None:
    with run_server(scope_app, proxy_headers=False) as server:
        text = httpx.get(server.url + "/", headers={"X-Forwarded-For": "1.2.3.4"}).text
    assert "'client': ('127.0.0.1'," in text


def test_access_log_format_and_control_characters_escaped() -> None:
    with capture_logs("roadrunner.access") as logs:
        with run_server(scope_app) as server:
            raw_request(server.port, b"GET /ok%0d%0aFAKE%1b?a=%1b[31m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    records = logs.records
    assert records
    line = records[0].getMessage()
    # As uvicorn's get_path_with_query_string: the decoded path is percent-encoded again.
    assert '"GET /ok%0D%0AFAKE%1B?a=%1b[31m HTTP/1.1" 200' in line
    assert "\n" not in line and "\x1b" not in line


def test_no_access_log() -> None:
    with capture_logs("roadrunner.access") as logs:
        with run_server(scope_app, access_log=False) as server:
            httpx.get(server.url + "/")
    assert not logs.records


def test_shutdown_closes_idle_keep_alive_and_finishes_in_flight() -> None:
    started = threading.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            started.set()
            await asyncio.sleep(0.5)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with run_server(slow) as server:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(1024).startswith(b"HTTP/1.1 200")
        busy = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert started.wait(5)
        server.server.should_exit = True
        assert idle.recv(1024) == b""  # the idle keep-alive connection closes (after its grace)
        answer = busy.recv(1024)
        assert answer.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in answer
        idle.close()
        busy.close()


def wait_for_listener_closed(port: int) -> None:
    """Shutdown has begun once the listening socket refuses new connections. A probe the kernel
    had queued when the listener closed is reset rather than refused: that is the same news. A
    probe whose SYN met the listener as it closed can go unanswered (a timeout): no news, the
    next probe tells."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except (ConnectionRefusedError, ConnectionResetError):
            return
        except TimeoutError:
            continue
        time.sleep(0.01)
    raise AssertionError("the listener stayed open")


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def request_during_shutdown(server: Any, sock: socket.socket) -> bytes:
    """Begin the server's shutdown, then send a request on `sock`: all it gets until closed."""
    server.server.should_exit = True
    wait_for_listener_closed(server.port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return read_until_closed(sock)


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_shutdown_answers_a_request_already_on_an_idle_connection(http: str) -> None:
    """RFC 9112 §9.3.1 race: a client may send on an idle keep-alive connection just as the
    server begins to drain; within --timeout-shutdown-idle it is answered, with a close."""
    with run_server(scope_app, http=http, timeout_shutdown_idle=5) as server:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        answer = request_during_shutdown(server, idle)
        assert answer.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in answer.lower()
        idle.close()


def test_shutdown_idle_grace_zero_closes_idle_connections_at_once() -> None:
    with run_server(scope_app, timeout_shutdown_idle=0) as server:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        idle.settimeout(0.5)  # well under the 1 s default grace: "at once"
        server.server.should_exit = True
        assert idle.recv(1024) == b""
        idle.close()


def test_graceful_timeout_cancels_stuck_tasks() -> None:
    async def stuck(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(30)

    with run_server(stuck, timeout_graceful_shutdown=0.3) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        began = time.monotonic()
        server.server.should_exit = True
        sock.close()
    assert time.monotonic() - began < 5


@pytest.mark.parametrize("protocols", ["h1", "h1,h2"])  # h1,h2: the plaintext protocol sniffer
def test_shutdown_adopts_connections_queued_on_a_closing_listener(protocols: str) -> None:
    """Closing a listener resets the connections still in its accept queue (what a rolling
    restart's old worker did to clients the kernel had handed it); shutdown accepts them first
    and answers their request, with Connection: close."""
    from roadrunner.config import Config
    from roadrunner.lifespan import lifespan_for
    from roadrunner.server import Server

    async def main() -> tuple[bytes, BaseException | bytes]:
        loop = asyncio.get_running_loop()
        config = Config(scope_app, host="127.0.0.1", port=0, lifespan="off", log_config=None,
                        protocols=protocols)
        config.load()
        server = Server(config)
        server.lifespan = lifespan_for(config)
        server.update_default_headers()
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

        async def read_all(sock: socket.socket) -> bytes:
            data = b""
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
                data += chunk
            return data

        # Without adoption: the queued client is reset when the listener closes.
        listener = socket.create_server(("127.0.0.1", 0))
        lost = socket.create_connection(listener.getsockname()[:2])
        lost.sendall(request)
        lost.setblocking(False)
        listener.close()
        try:
            reset: BaseException | bytes = await read_all(lost)
        except ConnectionResetError as exc:
            reset = exc
        lost.close()

        listener = socket.create_server(("127.0.0.1", 0))
        server.listeners = [listener]
        server.listener_factory = server.protocol_factory(loop)
        server.server_state.draining = True
        client = socket.create_connection(listener.getsockname()[:2])  # queued: nobody accepts
        client.sendall(request)
        client.setblocking(False)
        adopting = server.adopt_queued_connections()
        listener.close()
        assert len(adopting) == 1
        await asyncio.wait(adopting, timeout=5)
        for connection in list(server.server_state.connections):  # as Server.shutdown does
            connection.shutdown()
        answer = await read_all(client)
        client.close()
        return answer, reset

    answer, reset = asyncio.run(main())
    assert isinstance(reset, ConnectionResetError), reset
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize("listener", ["bound_here", "worker_own", "shared", "fd"])
def test_shutdown_adopts_only_from_listeners_this_process_owns_alone(listener: str) -> None:
    """A listener shared with other processes (a supervisor's shared socket, --uds, --fd,
    gunicorn's) keeps its queue when this process closes it: the workers still running serve
    it, so a draining one leaves it to them. One bound here, or a worker's own SO_REUSEPORT
    socket (supervisor.Listeners), is reset on close: its queue is adopted."""
    from roadrunner.config import Config
    from roadrunner.lifespan import lifespan_for
    from roadrunner.server import Server

    async def main() -> tuple[int, bool]:
        shared = socket.create_server(("127.0.0.1", 0))
        options: dict[str, Any] = {"fd": shared.fileno()} if listener == "fd" else {}
        config = Config(scope_app, host="127.0.0.1", port=0, lifespan="off", log_config=None, **options)
        config.load()
        server = Server(config)
        server.lifespan = lifespan_for(config)
        server.sockets_owned = listener == "worker_own"
        await server.startup(sockets=[shared] if listener in ("worker_own", "shared") else None)
        port = server.servers[0].sockets[0].getsockname()[1]
        # Queued: the loop does not run (and accept) between the connect and the adoption.
        client = socket.create_connection(("127.0.0.1", port))
        adopting = server.adopt_queued_connections()
        still_queued = False
        if not adopting:  # what another worker would accept from the shared queue
            shared.setblocking(False)
            try:
                accepted, _ = shared.accept()
            except BlockingIOError:
                pass
            else:
                accepted.close()
                still_queued = True
        if adopting:
            await asyncio.wait(adopting, timeout=5)
        for connection in list(server.server_state.connections):
            connection.transport.abort()
        for running in server.servers:
            running.close()
        client.close()
        if listener == "fd":
            shared.detach()  # the server's socket on the same fd closed it
        else:
            shared.close()
        return len(adopting), still_queued

    adopted, still_queued = asyncio.run(main())
    owned = listener in ("bound_here", "worker_own")
    assert adopted == (1 if owned else 0)
    assert still_queued == (not owned)


def test_shutdown_answers_first_bytes_on_a_connection_not_yet_sniffed() -> None:
    """On a shared h1,h2 plaintext port a connection waits for its first bytes to pick the
    protocol; one whose client sends them just as the server drains is answered (like an idle
    keep-alive connection), not closed unanswered."""
    with run_server(scope_app, protocols="h1,h2", timeout_shutdown_idle=5) as server:
        fresh = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        time.sleep(0.1)  # accepted, waiting for its first bytes
        answer = request_during_shutdown(server, fresh)
        fresh.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in answer.lower()


def test_shutdown_answers_then_goaway_on_an_h2c_connection_set_up_while_draining() -> None:
    """An h2c client whose preface and request arrive once shutdown has begun gets its request
    answered, then GOAWAY(NO_ERROR) naming that stream as the last (RFC 9113 §6.8), rather than
    a connection that serves on as if the server were not draining."""
    import h2.config
    import h2.connection
    import hpack
    import hyperframe.frame

    with run_server(scope_app, protocols="h1,h2", timeout_shutdown_idle=5) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        time.sleep(0.1)  # accepted, waiting for its first bytes
        server.server.should_exit = True
        wait_for_listener_closed(server.port)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                              (":authority", "x")], end_stream=True)
        sock.sendall(conn.data_to_send())
        started = time.monotonic()
        received = read_until_closed(sock)
        sock.close()
    # Drained at once, not left serving until some idle timeout (the 5 s grace here) ends it.
    assert time.monotonic() - started < 2.5
    # Parsed frame by frame: the h2 client refuses a response that follows GOAWAY, which
    # RFC 9113 §6.8 allows for streams up to the last one named.
    frames = []
    while len(received) >= 9:
        frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(received[:9]))
        frame.parse_body(memoryview(received[9:9 + length]))
        frames.append(frame)
        received = received[9 + length:]
    goaways = [f for f in frames if isinstance(f, hyperframe.frame.GoAwayFrame)]
    assert goaways and goaways[0].error_code == 0 and goaways[0].last_stream_id == 1
    heads = [f for f in frames if isinstance(f, hyperframe.frame.HeadersFrame) and f.stream_id == 1]
    assert heads and (b":status", b"200") in hpack.Decoder().decode(heads[0].data, raw=True)
