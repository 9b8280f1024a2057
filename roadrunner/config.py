"""Config: every option in one object, validated once; app import, SSL context, socket binding."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import logging.config
import os
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from roadrunner.config_checks import (
    HTTP2_ENGINE_CHOICES,
    HTTP_CHOICES,
    INTERFACE_CHOICES,
    LIFESPAN_CHOICES,
    LOOP_CHOICES,
    NOT_YET_AVAILABLE,
    PROTOCOL_CHOICES,
    PROXY_PROTOCOL_CHOICES,
    REFUSED_CHOICES,
    WS_CHOICES,
    ConfigError,
    validate_choices,
    validate_h3,
)
from roadrunner.importer import (
    AppImportError,
    ASGI2Middleware,
    call_factory,
    import_from_string,
    is_asgi3,
    load_app,
    wsgi_middleware,
)
from roadrunner.logging import LOG_LEVELS, LOGGING_CONFIG, configure_logging
from roadrunner.tls import direct_ssl_objects

__all__ = [
    "AppImportError", "ASGI2Middleware", "Config", "ConfigError", "LOG_LEVELS", "import_from_string",
    # the choices live with their validation (config_checks.py); the CLI imports them from here
    "HTTP2_ENGINE_CHOICES", "HTTP_CHOICES", "INTERFACE_CHOICES", "LIFESPAN_CHOICES", "LOOP_CHOICES",
    "NOT_YET_AVAILABLE", "PROTOCOL_CHOICES", "PROXY_PROTOCOL_CHOICES", "REFUSED_CHOICES", "WS_CHOICES",
]

logger = logging.getLogger("roadrunner.error")

# --proxy-headers trusts X-Forwarded-For and -Proto only, as uvicorn (middleware/proxy_headers.py).
DEFAULT_PROXY_HEADERS_MODE = "x-forwarded-for-proto"
# uvicorn 0.54: $FORWARDED_ALLOW_IPS, else the IPv4 and IPv6 loopback addresses.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"

SSL_PROTOCOL_VERSION = ssl.PROTOCOL_TLS_SERVER


def parse_protocols(value: str | Sequence[str] | None, tls: bool) -> tuple[str, ...]:
    """Parse --protocols; the default is h1, plus h2 on TLS listeners."""
    if value is None or value == "":
        return ("h1", "h2") if tls else ("h1",)
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        name = item.strip().lower()
        if name in ("http1", "http/1.1", "h11"):
            name = "h1"
        if name not in PROTOCOL_CHOICES:
            raise ConfigError(f"Unknown protocol {item!r} in --protocols (choose from h1,h2,h3).")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError("--protocols must name at least one of h1,h2,h3.")
    return tuple(out)


def parse_trusted_hosts(value: str | Sequence[str] | None) -> list[str]:
    """Parse --forwarded-allow-ips: comma list of IPs, CIDRs, '*' or unix socket names."""
    if value is None:
        value = os.environ.get("FORWARDED_ALLOW_IPS", DEFAULT_FORWARDED_ALLOW_IPS)
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


class Config:
    """Every server option with uvicorn's names and defaults, plus roadrunner's own."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 8000,
        uds: str | None = None,
        fd: int | None = None,
        loop: str = "auto",
        http: str = "auto",
        http2: bool = False,
        ws: str = "auto",
        ws_max_size: int = 16 * 1024 * 1024,
        ws_max_queue: int = 32,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
        ws_per_message_deflate: bool = True,
        ws_close_timeout: float = 5.0,
        lifespan: str = "auto",
        env_file: str | os.PathLike[str] | None = None,
        log_config: dict[str, Any] | str | None = LOGGING_CONFIG,
        log_level: str | int | None = None,
        access_log: bool = True,
        use_colors: bool | None = None,
        interface: str = "auto",
        reload: bool = False,
        reload_dirs: list[str] | str | None = None,
        reload_delay: float = 0.25,
        reload_includes: list[str] | str | None = None,
        reload_excludes: list[str] | str | None = None,
        workers: int | None = None,
        proxy_headers: bool = True,
        server_header: bool = True,
        date_header: bool = True,
        forwarded_allow_ips: list[str] | str | None = None,
        root_path: str = "",
        limit_concurrency: int | None = None,
        limit_max_requests: int | None = None,
        limit_max_requests_jitter: int = 0,
        backlog: int = 2048,
        timeout_keep_alive: float = 5,
        timeout_notify: float = 30,
        timeout_graceful_shutdown: float | None = None,
        timeout_worker_healthcheck: float = 5,
        callback_notify: Callable[..., Awaitable[None]] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile_password: str | None = None,
        ssl_version: int = SSL_PROTOCOL_VERSION,
        ssl_cert_reqs: int = ssl.CERT_NONE,
        ssl_ca_certs: str | None = None,
        ssl_ciphers: str | None = None,
        ssl_context_factory: Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext] | None = None,
        headers: list[tuple[str, str]] | None = None,
        factory: bool = False,
        h11_max_incomplete_event_size: int | None = None,
        reset_contextvars: bool = False,
        app_dir: str | None = None,
        # roadrunner's own options
        protocols: str | Sequence[str] | None = None,
        limit_request_line: int = 8192,
        limit_request_headers_size: int = 16384,
        limit_request_fields: int = 100,
        limit_request_body: int | None = None,
        timeout_request_header: float = 10.0,
        timeout_request_body: float = 20.0,
        min_request_body_rate: int = 500,
        timeout_send: float = 30.0,
        min_send_rate: int = 500,
        timeout_shutdown_idle: float = 1.0,
        limit_concurrency_soft: int | None = None,
        retry_after: int = 1,
        proxy_protocol: str = "off",
        proxy_protocol_allow_ips: list[str] | str | None = None,
        preload: bool = False,
        pid: str | None = None,
        limit_worker_memory: int | None = None,
        timeout_worker_shutdown: float = 30,
        h2_max_concurrent_streams: int = 100,
        h2_initial_window_size: int = 1024 * 1024,
        h2_connection_window_size: int = 4 * 1024 * 1024,
        h2_max_frame_size: int = 16384,
        h2_max_header_list_size: int = 16384,
        h2_max_header_block_size: int = 16384,
        h2_max_header_table_size: int = 4096,
        h2_max_reset_rate: int = 100,
        h2_max_ping_rate: int = 50,
        h2_max_settings_rate: int = 50,
        h2_max_empty_frame_rate: int = 100,
        http2_engine: str = "auto",
        alt_svc: bool = True,
        # HTTP/3 over QUIC (roadrunner.protocols.http3/ / quic)
        h3_max_concurrent_streams: int = 100,
        h3_max_field_section_size: int = 16384,
        h3_idle_timeout: float = 30.0,
        h3_max_connections: int = 10000,
        h3_retry: bool = False,
        h3_max_stream_data: int = 1024 * 1024,
        h3_max_data: int = 4 * 1024 * 1024,
        h3_qpack_max_table_capacity: int = 8192,
        h3_qpack_blocked_streams: int = 16,
        h3_gso: bool = True,
        # edge middleware (roadrunner.middleware.stack), all off by default
        proxy_headers_mode: str = DEFAULT_PROXY_HEADERS_MODE,
        cors_allow_origins: list[str] | str | None = None,
        cors_allow_origin_regex: str | None = None,
        cors_allow_methods: list[str] | str | None = "GET,HEAD,POST",
        cors_allow_headers: list[str] | str | None = None,
        cors_allow_credentials: bool = False,
        cors_expose_headers: list[str] | str | None = None,
        cors_max_age: int = 600,
        security_headers: bool = False,
        etag: bool = False,
        etag_max_size: int = 1024 * 1024,
        compress: bool = False,
        compress_min_size: int = 500,
        rate_limit: str | None = None,
        rate_burst: int | None = None,
        rate_limit_max_peers: int = 65536,
        rate_limit_exempt: list[str] | str | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.uds = uds
        self.fd = fd
        self.loop = loop
        self.http = http
        self.http2 = http2
        self.ws = ws
        self.ws_max_size = ws_max_size
        self.ws_max_queue = ws_max_queue
        self.ws_ping_interval = ws_ping_interval
        self.ws_ping_timeout = ws_ping_timeout
        self.ws_per_message_deflate = ws_per_message_deflate
        self.ws_close_timeout = ws_close_timeout
        self.lifespan = lifespan
        self.log_config = log_config
        self.log_level = log_level
        self.access_log = access_log
        self.use_colors = use_colors
        self.interface = interface
        self.reload = reload
        self.reload_delay = reload_delay
        self.workers = workers or 1
        self.proxy_headers = proxy_headers
        self.server_header = server_header
        self.date_header = date_header
        self.root_path = root_path
        self.limit_concurrency = limit_concurrency
        self.limit_max_requests = limit_max_requests
        self.limit_max_requests_jitter = limit_max_requests_jitter
        self.backlog = backlog
        self.timeout_keep_alive = timeout_keep_alive
        self.timeout_notify = timeout_notify
        self.timeout_graceful_shutdown = timeout_graceful_shutdown
        self.timeout_worker_healthcheck = timeout_worker_healthcheck
        self.callback_notify = callback_notify
        self.ssl_keyfile = ssl_keyfile
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile_password = ssl_keyfile_password
        self.ssl_version = ssl_version
        self.ssl_cert_reqs = ssl_cert_reqs
        self.ssl_ca_certs = ssl_ca_certs
        self.ssl_ciphers = ssl_ciphers
        self.ssl_context_factory = ssl_context_factory
        self.headers: list[tuple[str, str]] = list(headers or [])
        self.encoded_headers: list[tuple[bytes, bytes]] = []
        self.factory = factory
        self.h11_max_incomplete_event_size = h11_max_incomplete_event_size
        self.reset_contextvars = reset_contextvars
        self.app_dir = app_dir
        self.limit_request_line = limit_request_line
        self.limit_request_headers_size = limit_request_headers_size
        self.limit_request_fields = limit_request_fields
        self.limit_request_body = limit_request_body
        self.timeout_request_header = timeout_request_header
        self.timeout_request_body = timeout_request_body
        self.min_request_body_rate = min_request_body_rate
        self.timeout_send = timeout_send
        self.min_send_rate = min_send_rate
        self.timeout_shutdown_idle = timeout_shutdown_idle
        self.limit_concurrency_soft = limit_concurrency_soft
        self.retry_after = retry_after
        self.proxy_protocol = proxy_protocol
        self.proxy_protocol_allow_ips = parse_trusted_hosts(
            proxy_protocol_allow_ips if proxy_protocol_allow_ips is not None else "127.0.0.1"
        )
        self.preload = preload
        self.pid = pid
        self.limit_worker_memory = limit_worker_memory
        self.timeout_worker_shutdown = timeout_worker_shutdown
        self.h2_max_concurrent_streams = h2_max_concurrent_streams
        self.h2_initial_window_size = h2_initial_window_size
        self.h2_connection_window_size = h2_connection_window_size
        self.h2_max_frame_size = h2_max_frame_size
        self.h2_max_header_list_size = h2_max_header_list_size
        self.h2_max_header_block_size = h2_max_header_block_size
        self.h2_max_header_table_size = h2_max_header_table_size
        self.h2_max_reset_rate = h2_max_reset_rate
        self.h2_max_ping_rate = h2_max_ping_rate
        self.h2_max_settings_rate = h2_max_settings_rate
        self.h2_max_empty_frame_rate = h2_max_empty_frame_rate
        self.http2_engine = http2_engine
        self.alt_svc = alt_svc
        self.h3_max_concurrent_streams = h3_max_concurrent_streams
        self.h3_max_field_section_size = h3_max_field_section_size
        self.h3_idle_timeout = h3_idle_timeout
        self.h3_max_connections = h3_max_connections
        self.h3_retry = h3_retry
        self.h3_max_stream_data = h3_max_stream_data
        self.h3_max_data = h3_max_data
        self.h3_qpack_max_table_capacity = h3_qpack_max_table_capacity
        self.h3_qpack_blocked_streams = h3_qpack_blocked_streams
        self.h3_gso = h3_gso
        self.proxy_headers_mode = proxy_headers_mode
        self.cors_allow_origins = cors_allow_origins
        self.cors_allow_origin_regex = cors_allow_origin_regex
        self.cors_allow_methods = cors_allow_methods
        self.cors_allow_headers = cors_allow_headers
        self.cors_allow_credentials = cors_allow_credentials
        self.cors_expose_headers = cors_expose_headers
        self.cors_max_age = cors_max_age
        self.security_headers = security_headers
        self.etag = etag
        self.etag_max_size = etag_max_size
        self.compress = compress
        self.compress_min_size = compress_min_size
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst
        self.rate_limit_max_peers = rate_limit_max_peers
        self.rate_limit_exempt = rate_limit_exempt
        self.loaded = False
        self.ssl: ssl.SSLContext | None = None

        validate_choices(self)
        self.protocols = parse_protocols(protocols, tls=self.is_ssl)
        if self.http2 and "h2" not in self.protocols:
            # uvicorn's --http2 switch: serve HTTP/2 beside the protocols already chosen.
            self.protocols = (*self.protocols, "h2")
        validate_h3(self)
        self.configure_logging()

        self.reload_dirs: list[Path] = [
            Path(d) for d in ([reload_dirs] if isinstance(reload_dirs, str) else reload_dirs or [])
        ]
        self.reload_includes = (
            [reload_includes] if isinstance(reload_includes, str) else list(reload_includes or [])
        )
        self.reload_excludes = (
            [reload_excludes] if isinstance(reload_excludes, str) else list(reload_excludes or [])
        )
        if env_file is not None:
            self.load_env_file(env_file)
        if workers is None and "WEB_CONCURRENCY" in os.environ:
            self.workers = int(os.environ["WEB_CONCURRENCY"])
        self.forwarded_allow_ips = parse_trusted_hosts(forwarded_allow_ips)
        if self.reload and self.workers > 1:
            # As uvicorn: one reloading process; --workers is ignored.
            logger.warning('"workers" flag is ignored when reloading is enabled.')
            self.workers = 1

    # -- derived values --------------------------------------------------------------------------

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_keyfile or self.ssl_certfile or self.ssl_context_factory)

    @property
    def use_subprocess(self) -> bool:
        return bool(self.reload or self.workers > 1)

    @property
    def asgi_version(self) -> str:
        return "2.0" if self.interface == "asgi2" else "3.0"

    @property
    def should_reload(self) -> bool:
        return isinstance(self.app, str) and self.reload

    def load_env_file(self, env_file: str | os.PathLike[str]) -> None:
        """Load the file with python-dotenv, as uvicorn does (variables already set win)."""
        from dotenv import load_dotenv

        path = Path(env_file)
        if not path.is_file():
            raise ConfigError(f"Environment file {str(path)!r} not found.")
        logger.info("Loading environment from '%s'", env_file)
        load_dotenv(dotenv_path=env_file)

    def configure_logging(self) -> None:
        """Apply --log-config, --log-level, --use-colors and --access-log (logging.py)."""
        configure_logging(self.log_config, self.log_level, self.use_colors, self.access_log)

    # -- loading ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Build the SSL context, encode headers, import and wrap the app."""
        assert not self.loaded
        if self.is_ssl:
            self.ssl = direct_ssl_objects(self.load_ssl_context())
        self.encoded_headers = [
            (key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in self.headers
        ]
        if self.server_header and b"server" not in dict(self.encoded_headers):
            self.encoded_headers.insert(0, (b"server", b"roadrunner"))
        if self.app_dir is not None:
            sys.path.insert(0, self.app_dir)
        self.loaded_app = call_factory(load_app(self.app), self.factory, self.app)
        if self.interface == "auto":
            self.interface = "asgi3" if is_asgi3(self.loaded_app) else "asgi2"
        if self.interface == "wsgi":
            self.loaded_app = wsgi_middleware(self.loaded_app)
            self.ws = "none"  # as uvicorn: WSGI has no WebSocket
        elif self.interface == "asgi2":
            self.loaded_app = ASGI2Middleware(self.loaded_app)
        # Edge middleware goes inside the proxy headers, so it sees the resolved client.
        from roadrunner.middleware.stack import build_edge_stack

        self.loaded_app = build_edge_stack(self.loaded_app, self)
        # Connections that can rewrite the scope themselves call `inner_app` after
        # `scope_rewriter`; everything else calls `loaded_app` (the same, as middleware).
        self.inner_app = self.loaded_app
        self.scope_rewriter: Callable[[dict[str, Any]], None] | None = None
        if self.proxy_headers:
            from roadrunner.middleware.proxy_headers import ProxyHeadersMiddleware

            proxy = ProxyHeadersMiddleware(
                self.loaded_app, trusted_hosts=self.forwarded_allow_ips,
                mode=self.proxy_headers_mode,
            )
            self.loaded_app = proxy
            self.scope_rewriter = proxy.rewrite
        self.loaded = True

    def load_app(self) -> Any:
        """Import the app and return it; exits 3 on failure (uvicorn's Config.load_app)."""
        try:
            return load_app(self.app)
        except AppImportError:
            sys.exit(3)

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        from roadrunner.loops import get_loop_factory

        return get_loop_factory(self.loop)

    def load_ssl_context(self) -> ssl.SSLContext:
        """The TLS context: from --ssl-* options, or what `ssl_context_factory` returns."""
        if self.ssl_context_factory is None:
            return self.create_ssl_context()

        def default_factory() -> ssl.SSLContext:
            if not self.ssl_certfile:
                raise RuntimeError(
                    "`default_ssl_context_factory()` requires `ssl_certfile` to be set on `Config`. "
                    "Either pass `ssl_certfile` (and optionally `ssl_keyfile`) or build the `SSLContext` "
                    "directly inside `ssl_context_factory` without calling the default factory."
                )
            return self.create_ssl_context()

        context = self.ssl_context_factory(self, default_factory)
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"`ssl_context_factory` must return an `ssl.SSLContext`, got {type(context).__name__}")
        return context

    def create_ssl_context(self) -> ssl.SSLContext:
        """An SSL context from the uvicorn ssl options; ALPN lists the enabled protocols."""
        try:
            context = ssl.SSLContext(self.ssl_version)
            assert self.ssl_certfile is not None
            password = self.ssl_keyfile_password
            context.load_cert_chain(
                self.ssl_certfile, self.ssl_keyfile, (lambda: password) if password else None
            )
            context.verify_mode = ssl.VerifyMode(self.ssl_cert_reqs)
            if self.ssl_ca_certs:
                context.load_verify_locations(self.ssl_ca_certs)
            if self.ssl_ciphers:
                context.set_ciphers(self.ssl_ciphers)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"Could not load the TLS certificate or key: {exc}") from exc
        alpn = (["h2"] if "h2" in self.protocols else []) + (
            ["http/1.1"] if "h1" in self.protocols else []
        )
        if alpn:
            context.set_alpn_protocols(alpn)
        return context

    # -- sockets ---------------------------------------------------------------------------------

    def bind_socket(self, reuse_port: bool = False) -> socket.socket:
        """Bind the TCP listening socket (or UDS / fd) in the master process."""
        if self.uds:
            path = self.uds
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                if os.path.exists(path) and not Path(path).is_socket():
                    raise ConfigError(f"Cannot bind to {path!r}: a file that is not a socket.")
                if os.path.exists(path):
                    os.unlink(path)
                sock.bind(path)
                os.chmod(path, 0o666)
            except OSError as exc:
                raise ConfigError(f"Cannot bind to unix socket {path!r}: {exc.strerror}") from exc
            return sock
        if self.fd is not None:
            # The family (TCP or unix) is read from the descriptor itself.
            return socket.socket(fileno=self.fd)
        family = socket.AF_INET6 if self.host and ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"Cannot bind to {self.host}:{self.port}: {exc.strerror}.") from exc
        sock.set_inheritable(True)
        return sock


def is_trusted(host: str | None, trusted: Sequence[str]) -> bool:
    """True when host matches an IP, CIDR, '*' or literal entry of the trusted list."""
    if "*" in trusted:
        return True
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in trusted
    for entry in trusted:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            if entry == host:
                return True
    return False
