"""gunicorn worker classes: gunicorn's arbiter supervises, roadrunner's Server serves.

    gunicorn -k roadrunner.gunicorn.RoadrunnerWorker app:app
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import sys
from typing import Any

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from roadrunner.config import Config
from roadrunner.server import Server, setup_event_loop


class RoadrunnerWorker(Worker):  # type: ignore[misc]
    """Runs roadrunner's Server on the sockets gunicorn bound, with gunicorn's settings."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": "auto"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # gunicorn owns logging: roadrunner's loggers write through gunicorn's handlers.
        for name, source in (("roadrunner.error", self.log.error_log),
                             ("roadrunner.access", self.log.access_log)):
            target = logging.getLogger(name)
            target.handlers = source.handlers
            target.setLevel(source.level)
            target.propagate = False
        logging.getLogger("roadrunner").handlers = self.log.error_log.handlers
        self.server: Server | None = None
        self.config = Config(**self.config_kwargs())

    def config_kwargs(self) -> dict[str, Any]:
        """gunicorn settings mapped onto roadrunner's Config."""
        cfg = self.cfg
        kwargs: dict[str, Any] = {
            "app": None,
            "log_config": None,
            "timeout_keep_alive": cfg.keepalive,
            # gunicorn kills a worker silent for --timeout; self.timeout is half of it.
            "timeout_notify": self.timeout,
            "callback_notify": self.callback_notify,
            "forwarded_allow_ips": cfg.forwarded_allow_ips,
            "timeout_graceful_shutdown": cfg.graceful_timeout,
            "backlog": cfg.backlog,
        }
        if cfg.max_requests > 0:
            # Worker.__init__ already added gunicorn's random jitter to self.max_requests.
            kwargs["limit_max_requests"] = self.max_requests
        if cfg.is_ssl:
            kwargs.update(
                ssl_keyfile=cfg.ssl_options.get("keyfile"),
                ssl_certfile=cfg.ssl_options.get("certfile"),
                ssl_keyfile_password=cfg.ssl_options.get("password"),
                # gunicorn ignores its deprecated --ssl-version; a server context negotiates.
                ssl_version=ssl.PROTOCOL_TLS_SERVER,
                ssl_cert_reqs=cfg.ssl_options.get("cert_reqs", ssl.CERT_NONE),
                ssl_ca_certs=cfg.ssl_options.get("ca_certs"),
                ssl_ciphers=cfg.ssl_options.get("ciphers") or "TLSv1",
            )
        kwargs.update(self.CONFIG_KWARGS)
        return kwargs

    def init_process(self) -> None:
        setup_event_loop(self.config.loop)
        super().init_process()

    def init_signals(self) -> None:
        # Server.serve installs SIGTERM/SIGINT (graceful); the loop gets SIGQUIT (fast exit).
        # Reset the others so gunicorn's handlers do not swallow them.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.siginterrupt(signal.SIGUSR1, False)

    def handle_quit_fast(self) -> None:
        """gunicorn's SIGQUIT: stop now, without waiting for connections to drain."""
        if self.server is not None:
            self.server.should_exit = True
            self.server.force_exit = True

    async def serve(self) -> None:
        self.config.app = self.wsgi
        self.server = Server(config=self.config)
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, self.handle_quit_fast)
        sockets = [getattr(s, "sock", s) for s in self.sockets]
        listeners: list[socket.socket] = [s for s in sockets if isinstance(s, socket.socket)]
        await self.server.serve(sockets=listeners)
        if not self.server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)  # 3: gunicorn halts instead of respawning

    def run(self) -> None:
        asyncio.run(self.serve())

    async def callback_notify(self) -> None:
        self.notify()


class RoadrunnerH11Worker(RoadrunnerWorker):
    """The pure-Python stack: h11 and the asyncio event loop."""

    CONFIG_KWARGS = {"loop": "asyncio", "http": "h11"}
