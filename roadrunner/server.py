"""Server: listeners, the connection registry, lifespan, the 1 s tick, and graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from email.utils import formatdate
from typing import Any, Protocol

from roadrunner.compiled import build
from roadrunner.config import AppImportError, Config, ConfigError
from roadrunner.lifespan import lifespan_for
from roadrunner.loops import asyncio_run, get_loop_factory, setup_event_loop
from roadrunner.server_state import ServerState

__all__ = ["STARTUP_FAILURE", "Server", "ServerState", "setup_event_loop"]
logger = logging.getLogger("roadrunner.error")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STARTUP_FAILURE = 3
# How long shutdown waits for adopted connections to be set up (a TLS handshake) before it
# tells every connection to drain; one set up later drains from connection_made.
ADOPT_TIMEOUT = 1.0
# Past the graceful timeout: how long cancelled requests get to send their 500 (or close)
# before the connections still open are aborted.
CANCEL_GRACE = 1.0


class Connection(Protocol):
    """What the server needs of every connection protocol."""

    def shutdown(self) -> None: ...


class Server:
    """Serves one Config on this process's event loop (uvicorn's Server API)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server_state = ServerState()
        self.server_state.reset_contextvars = config.reset_contextvars
        self.server_state.configure_pace(config)
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.last_notified = 0.0
        self.servers: list[asyncio.AbstractServer] = []
        self.extra_listeners: list[Any] = []  # datagram endpoints (HTTP/3), closed on shutdown
        # Whether the sockets handed to serve() are this process's alone: a worker's own
        # SO_REUSEPORT socket (supervisor.Listeners says so). Shared or inherited ones are not.
        self.sockets_owned = False
        # The TCP listening sockets this process owns alone (shutdown adopts their accept queue),
        # with the protocol factory and TLS context serving them.
        self.listeners: list[socket.socket] = []
        self.listener_factory: Callable[[], asyncio.BaseProtocol] | None = None
        self.listener_ssl: Any = None
        self.h3_port: int | None = None  # UDP port serving HTTP/3, advertised with Alt-Svc

    @functools.cached_property
    def limit_max_requests(self) -> int | None:
        """uvicorn's: --limit-max-requests plus a random 0..--limit-max-requests-jitter."""
        if self.config.limit_max_requests is None:
            return None
        return self.config.limit_max_requests + random.randint(0, max(self.config.limit_max_requests_jitter, 0))

    # -- entry points ----------------------------------------------------------------------------

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio_run(self.serve(sockets=sockets), loop_factory=get_loop_factory(self.config.loop))

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        with self.capture_signals():
            await self._serve(sockets)

    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        process_id = os.getpid()
        config = self.config
        if not config.loaded:
            try:
                config.load()
            except Exception as exc:
                if not isinstance(exc, AppImportError):  # Config.load() already logged it
                    logger.error("%s", exc)
                sys.exit(STARTUP_FAILURE)
        self.lifespan = lifespan_for(config)
        message = "Started server process [%d]"
        logger.info(message, process_id)
        await self.startup(sockets=sockets)
        if self.should_exit:
            return
        await self.main_loop()
        await self.shutdown(sockets=sockets)
        logger.info("Finished server process [%d]", process_id)

    # -- startup ----------------------------------------------------------------------------------

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            self.should_exit = True
            return
        config = self.config
        loop = asyncio.get_running_loop()
        self.update_default_headers()
        factory = self.protocol_factory(loop)
        ssl_context = config.ssl
        if config.proxy_protocol != "off":
            # The PROXY header precedes the ClientHello: a plain TCP listener reads it, then
            # starts TLS itself (roadrunner/protocols/proxy_wrapper.py).
            from roadrunner.protocols.proxy_wrapper import proxy_protocol_factory

            factory = proxy_protocol_factory(config, self.server_state, factory, ssl_context, loop)  # type: ignore[assignment]
            ssl_context = None
        try:
            if sockets is not None:
                for sock in sockets:
                    self.servers.append(
                        await loop.create_server(factory, sock=sock, ssl=ssl_context, backlog=config.backlog)
                    )
                listeners = sockets
            else:
                sock = config.bind_socket()
                self.servers.append(
                    await loop.create_server(factory, sock=sock, ssl=ssl_context, backlog=config.backlog)
                )
                listeners = [sock]
        except (OSError, ConfigError) as exc:
            logger.error("%s", exc)
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)
        # Bound here (not --fd) or handed over as ours alone: no other process accepts from it.
        owned = self.sockets_owned if sockets is not None else config.fd is None
        self.listeners = list(listeners) if owned else []
        self.listener_factory, self.listener_ssl = factory, ssl_context
        await self.start_extra_listeners(listeners)
        if sockets is None:
            self.log_started(listeners)
        self.started = True

    def protocol_factory(self, loop: asyncio.AbstractEventLoop) -> Callable[[], asyncio.BaseProtocol]:
        """The connection protocol for each accepted TCP connection."""
        from roadrunner.protocols.select import protocol_factory

        return protocol_factory(self.config, self.server_state, self.lifespan.state, loop)

    async def start_extra_listeners(self, listeners: Sequence[socket.socket]) -> None:
        """Hook for listeners beside TCP (the HTTP/3 UDP socket)."""
        if "h3" in self.config.protocols:
            from roadrunner.protocols.quic import start_quic_listener

            try:
                self.extra_listeners.append(await start_quic_listener(self, listeners))
            except ConfigError as exc:
                logger.error("%s", exc)
                for server in self.servers:
                    server.close()
                await self.lifespan.shutdown()
                sys.exit(STARTUP_FAILURE)
            self.update_default_headers()

    def log_started(self, listeners: Sequence[socket.socket]) -> None:
        config = self.config
        scheme = "https" if config.is_ssl else "http"
        protocols = ",".join(config.protocols)
        if "h2" in config.protocols:
            from roadrunner.protocols.http2.engine import engine_name

            protocols += f" on {engine_name(config)}"  # the HTTP/2 engine (--http2-engine)
        protocols += f"; {build()}"  # the mypyc modules: compiled, or pure (ROADRUNNER_PURE=1)
        if config.uds:
            logger.info("Roadrunner running on unix socket %s (Press CTRL+C to quit)", config.uds)
        elif config.fd is not None:
            logger.info("Roadrunner running on socket %s (Press CTRL+C to quit)", listeners[0].getsockname())
        else:
            host, port = listeners[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            logger.info(
                "Roadrunner running on %s://%s:%d [%s] (Press CTRL+C to quit)",
                scheme, shown, port, protocols,
            )

    @property
    def bound_port(self) -> int:
        """The TCP port of the first listener (useful with --port 0)."""
        return int(self.servers[0].sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    # -- main loop --------------------------------------------------------------------------------

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            await asyncio.sleep(0.1)
            should_exit = await self.on_tick(counter)

    def update_default_headers(self) -> None:
        state = self.server_state
        headers = list(self.config.encoded_headers)
        if self.config.date_header:
            headers.insert(0, (b"date", formatdate(usegmt=True).encode()))
        if self.h3_port is not None and self.config.alt_svc:
            # RFC 7838 §3 / RFC 9114 §3.1.1: advertise HTTP/3 on the same port number.
            headers.append((b"alt-svc", b'h3=":%d"; ma=86400' % self.h3_port))
        state.set_default_headers(headers)

    async def on_tick(self, counter: int) -> bool:
        if counter % 10 == 0:
            self.update_default_headers()
            callback = self.config.callback_notify
            if callback is not None and time.monotonic() - self.last_notified > self.config.timeout_notify:
                self.last_notified = time.monotonic()
                await callback()
        if self.should_exit:
            return True
        max_requests = self.limit_max_requests
        if max_requests is not None and self.server_state.total_requests >= max_requests:
            logger.warning("Maximum request limit of %d exceeded. Terminating process.", max_requests)
            return True
        return False

    # -- shutdown ---------------------------------------------------------------------------------

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        logger.info("Shutting down")
        self.server_state.draining = True
        adopting = self.adopt_queued_connections()
        for server in self.servers:
            server.close()
        for listener in self.extra_listeners:
            listener.close()
        for sock in sockets or []:
            sock.close()
        if adopting:
            await asyncio.wait(adopting, timeout=ADOPT_TIMEOUT)
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0.05)
        timeout = self.config.timeout_graceful_shutdown
        try:
            await asyncio.wait_for(self.wait_for_drain(), timeout=timeout)
        except asyncio.TimeoutError:
            await self.cancel_tasks()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 0.5)
        self.server_state.body_pace.close()  # no sweep timer left behind on this loop
        self.server_state.send_pace.close()
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def cancel_tasks(self) -> None:
        """The graceful timeout expired: cancel the apps, let them answer, then drop the rest.

        As under uvicorn, a cancelled request whose response had not started is answered 500
        with Connection: close, and one cancelled mid-response has its connection closed
        (HTTPStream.run). Those last writes get CANCEL_GRACE to be flushed; only connections
        still open after it are aborted.
        """
        state = self.server_state
        tasks = list(state.tasks)
        logger.error("Cancel %s running task(s), timeout graceful shutdown exceeded", len(tasks))
        for task in tasks:
            task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_GRACE
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_GRACE)
        while state.connections and loop.time() < deadline and not self.force_exit:
            await asyncio.sleep(0.01)
        for connection in list(state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()

    def adopt_queued_connections(self) -> list[asyncio.Task[Any]]:
        """Accept what the kernel has queued on our listeners, just before they close.

        Closing a SO_REUSEPORT listener resets the connections still in its accept queue (Linux,
        unless net.ipv4.tcp_migrate_req is on): during a rolling restart those are clients the
        kernel had already handed to this worker. Accepting them in the same step as the close
        leaves that window a few microseconds wide; they are served like any other connection
        of a draining server (their request answered with Connection: close).

        Only listeners this process owns alone: a shared queue (--uds, --fd, gunicorn's sockets,
        a supervisor without per-worker SO_REUSEPORT) outlives this process's close, and the
        workers still running serve it; a draining worker taking from it would steal their
        connections to answer them with Connection: close.
        """
        if self.listener_factory is None:
            return []
        loop = asyncio.get_running_loop()
        tasks = []
        for listener in self.listeners:
            if listener.fileno() == -1:  # already closed by whoever handed it to us
                continue
            listener.setblocking(False)
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:  # BlockingIOError: the queue is empty
                    break
                conn.setblocking(False)
                tasks.append(loop.create_task(self.adopt(loop, conn)))
        return tasks

    async def adopt(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        assert self.listener_factory is not None
        try:
            await loop.connect_accepted_socket(self.listener_factory, conn, ssl=self.listener_ssl)
        except (OSError, asyncio.TimeoutError):  # the client is gone, or its TLS handshake failed
            conn.close()

    async def wait_for_drain(self) -> None:
        if self.server_state.connections and not self.force_exit:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
            while self.server_state.connections and not self.force_exit:
                await asyncio.sleep(0.05)
        if self.server_state.tasks and not self.force_exit:
            logger.info("Waiting for background tasks to complete. (CTRL+C to force quit)")
            while self.server_state.tasks and not self.force_exit:
                await asyncio.sleep(0.05)

    # -- signals ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """SIGINT/SIGTERM start a graceful exit; a second SIGINT forces it."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if sig == signal.SIGINT and self.should_exit:
            self.force_exit = True
        else:
            self.should_exit = True
