"""The `roadrunner` command: uvicorn's flags with uvicorn's names and defaults, plus our own.

Every flag also reads ROADRUNNER_<NAME> from the environment (click's auto_envvar_prefix).
"""

from __future__ import annotations

import platform
import ssl
import sys
from typing import Any

import click

import roadrunner
from roadrunner.config import (
    HTTP2_ENGINE_CHOICES,
    HTTP_CHOICES,
    INTERFACE_CHOICES,
    LIFESPAN_CHOICES,
    LOG_LEVELS,
    LOOP_CHOICES,
    PROXY_PROTOCOL_CHOICES,
    SSL_PROTOCOL_VERSION,
    WS_CHOICES,
)
from roadrunner.main import STARTUP_FAILURE, run
from roadrunner.middleware.proxy_headers import DEFAULT_MODE as DEFAULT_PROXY_HEADERS_MODE
from roadrunner.middleware.proxy_headers import MODES as PROXY_HEADERS_MODES

LEVEL_CHOICES = click.Choice(list(LOG_LEVELS.keys()))


def print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(
        f"Running roadrunner {roadrunner.__version__} with "
        f"{platform.python_implementation()} {platform.python_version()} on {platform.system()}"
    )
    ctx.exit()


@click.command(context_settings={"auto_envvar_prefix": "ROADRUNNER"})
@click.argument("app", envvar="ROADRUNNER_APP")
@click.option("--host", type=str, default="127.0.0.1", show_default=True, help="Bind socket to this host.")
@click.option("--port", type=int, default=8000, show_default=True, help="Bind socket to this port. 0 picks a free port.")
@click.option("--uds", type=str, default=None, help="Bind to a UNIX domain socket.")
@click.option("--fd", type=int, default=None, help="Bind to socket from this file descriptor.")
@click.option("--reload", is_flag=True, default=False, help="Enable auto-reload.")
@click.option("--reload-dir", "reload_dirs", multiple=True, type=click.Path(exists=True), help="Directories to watch.")
@click.option("--reload-include", "reload_includes", multiple=True, help="Glob patterns to include while watching.")
@click.option("--reload-exclude", "reload_excludes", multiple=True, help="Glob patterns to exclude while watching.")
@click.option("--reload-delay", type=float, default=0.25, show_default=True, help="Delay between previous and next check.")
@click.option("--workers", type=int, default=None, envvar=["ROADRUNNER_WORKERS", "WEB_CONCURRENCY"], help="Number of worker processes. Defaults to $WEB_CONCURRENCY or 1.")
@click.option("--loop", type=str, metavar=f"[{'|'.join(c for c in LOOP_CHOICES if c != 'none')}]", default="auto", show_default=True, help="Event loop factory implementation, or a module:attribute loop factory.")
@click.option("--http", type=str, metavar=f"[{'|'.join(HTTP_CHOICES)}]", default="auto", show_default=True, help="HTTP/1.1 protocol implementation (zttp is refused: HTTP/2 is built in).")
@click.option("--http2", is_flag=True, default=False, show_default=True, help="Enable HTTP/2 support (adds h2 to --protocols).")
@click.option("--http2-engine", type=click.Choice(HTTP2_ENGINE_CHOICES), default="auto", show_default=True, help="HTTP/2 engine: nghttp2 (compiled, libnghttp2) or h2 (pure Python); auto takes nghttp2 when it is built.")
@click.option("--ws", type=str, metavar=f"[{'|'.join(c for c in WS_CHOICES if c != 'none')}]", default="auto", show_default=True, help="WebSocket protocol implementation.")
@click.option("--ws-max-size", type=int, default=16777216, show_default=True, help="WebSocket max message size in bytes.")
@click.option("--ws-max-queue", type=int, default=32, show_default=True, help="Max queued incoming WebSocket messages.")
@click.option("--ws-ping-interval", type=float, default=20.0, show_default=True, help="WebSocket ping interval in seconds.")
@click.option("--ws-ping-timeout", type=float, default=20.0, show_default=True, help="WebSocket ping timeout in seconds.")
@click.option("--ws-per-message-deflate", type=bool, default=True, show_default=True, help="WebSocket per-message-deflate compression.")
@click.option("--ws-close-timeout", type=float, default=5.0, show_default=True, help="Seconds to wait for the peer's Close before dropping a WebSocket.")
@click.option("--lifespan", type=click.Choice(LIFESPAN_CHOICES), default="auto", show_default=True, help="Lifespan implementation.")
@click.option("--interface", type=click.Choice(INTERFACE_CHOICES), default="auto", show_default=True, help="Application interface.")
@click.option("--env-file", type=click.Path(exists=True), default=None, help="Environment configuration file.")
@click.option("--log-config", type=click.Path(exists=True), default=None, help="Logging configuration file (.ini, .json, .yaml).")
@click.option("--log-level", type=LEVEL_CHOICES, default=None, help="Log level. [default: info]")
@click.option("--access-log/--no-access-log", default=True, is_flag=True, help="Enable/Disable access log.")
@click.option("--use-colors/--no-use-colors", default=None, help="Enable/Disable colorized logging.")
@click.option("--proxy-headers/--no-proxy-headers", default=True, is_flag=True, help="Enable/Disable X-Forwarded-Proto, X-Forwarded-For to populate url scheme and remote address info (more headers: --proxy-headers-mode).")
@click.option("--server-header/--no-server-header", default=True, is_flag=True, help="Enable/Disable default Server header.")
@click.option("--date-header/--no-date-header", default=True, is_flag=True, help="Enable/Disable default Date header.")
@click.option("--forwarded-allow-ips", type=str, default=None, help="Comma separated IPs/CIDRs (or literals such as a unix socket path) to trust with proxy headers ('*' for all). Defaults to $FORWARDED_ALLOW_IPS or '127.0.0.1,::1'.")
@click.option("--root-path", type=str, default="", help="Set the ASGI 'root_path' for apps mounted below a URL path.")
@click.option("--limit-concurrency", type=int, default=None, help="Maximum concurrent connections or tasks before answering 503.")
@click.option("--backlog", type=int, default=2048, show_default=True, help="Maximum number of connections to hold in backlog.")
@click.option("--limit-max-requests", type=int, default=None, help="Maximum number of requests to service before terminating the process.")
@click.option("--limit-max-requests-jitter", type=int, default=0, show_default=True, help="Random extra requests (0..N) added to --limit-max-requests per worker.")
@click.option("--timeout-keep-alive", type=int, default=5, show_default=True, help="Close Keep-Alive connections idle this many seconds.")
@click.option("--timeout-graceful-shutdown", type=int, default=None, help="Maximum seconds to wait for graceful shutdown.")
@click.option("--timeout-worker-healthcheck", type=int, default=5, show_default=True, help="Seconds a silent worker survives before it is replaced.")
@click.option("--ssl-keyfile", type=str, default=None, help="SSL key file.")
@click.option("--ssl-certfile", type=str, default=None, help="SSL certificate file.")
@click.option("--ssl-keyfile-password", type=str, default=None, help="SSL keyfile password.")
@click.option("--ssl-version", type=int, default=int(SSL_PROTOCOL_VERSION), show_default=True, help="SSL version to use (see stdlib ssl module's).")
@click.option("--ssl-cert-reqs", type=int, default=int(ssl.CERT_NONE), show_default=True, help="Whether client certificate is required (see stdlib ssl module's).")
@click.option("--ssl-ca-certs", type=str, default=None, help="CA certificates file.")
@click.option("--ssl-ciphers", type=str, default=None, show_default=True, help="Ciphers to use (see stdlib ssl module's). Defaults to OpenSSL's safe defaults.")
@click.option("--header", "headers", multiple=True, help="Specify custom default HTTP response headers as a Name:Value pair.")
@click.option("--version", is_flag=True, callback=print_version, expose_value=False, is_eager=True, help="Display the roadrunner version and exit.")
@click.option("--app-dir", default="", show_default=True, help="Look for APP in the specified directory, by adding this to the PYTHONPATH.")
@click.option("--h11-max-incomplete-event-size", type=int, default=None, help="For h11, the maximum number of bytes to buffer of an incomplete event.")
@click.option("--reset-contextvars", is_flag=True, default=False, show_default=True, help="Run each ASGI request in a fresh contextvars.Context. Hides context set in the lifespan.")
@click.option("--factory", is_flag=True, default=False, show_default=True, help="Treat APP as an application factory, i.e. a () -> <ASGI app> callable.")
# roadrunner's own options
@click.option("--protocols", type=str, default=None, help="Comma list of h1,h2,h3. [default: h1, plus h2 with TLS]")
@click.option("--limit-request-line", type=int, default=8192, show_default=True, help="Maximum request-line length (414 above).")
@click.option("--limit-request-headers-size", type=int, default=16384, show_default=True, help="Maximum request header block size (431 above).")
@click.option("--limit-request-fields", type=int, default=100, show_default=True, help="Maximum number of request header fields (431 above).")
@click.option("--limit-request-body", type=int, default=None, help="Maximum request body size in bytes (413 above). Default: unlimited.")
@click.option("--timeout-request-header", type=float, default=10.0, show_default=True, help="Seconds a client may take to send a request head (408 after).")
@click.option("--timeout-request-body", type=float, default=20.0, show_default=True, help="Window (s) over which a request body must arrive at --min-request-body-rate while the app waits for it (408 after). 0 disables.")
@click.option("--min-request-body-rate", type=int, default=500, show_default=True, help="Bytes/s a request body must average per --timeout-request-body window. 0: any byte per window.")
@click.option("--timeout-send", type=float, default=30.0, show_default=True, help="Window (s) over which a client must take response bytes waiting for it at --min-send-rate (the connection or stream is closed after). 0 disables.")
@click.option("--min-send-rate", type=int, default=500, show_default=True, help="Bytes/s a client must take per --timeout-send window while response bytes wait for it. 0: any byte per window.")
@click.option("--timeout-shutdown-idle", type=float, default=1.0, show_default=True, help="On graceful shutdown, seconds an idle HTTP/1.1 keep-alive connection stays open to answer a request already on its way (with Connection: close).")
@click.option("--limit-concurrency-soft", type=int, default=None, help="In-flight requests above which new requests get 503 + Retry-After.")
@click.option("--retry-after", type=click.IntRange(min=0), default=1, show_default=True, help="Seconds sent in Retry-After with a load-shedding 503 (RFC 9110 §10.2.3).")
@click.option("--proxy-protocol", type=click.Choice(PROXY_PROTOCOL_CHOICES), default="off", show_default=True, help="Expect a PROXY protocol header from the load balancer.")
@click.option("--proxy-protocol-allow-ips", type=str, default=None, help="IPs/CIDRs allowed to send a PROXY header. [default: 127.0.0.1]")
@click.option("--preload", is_flag=True, default=False, help="Import the app in the master before forking workers.")
@click.option("--pid", type=str, default=None, help="Write the master process id to this file.")
@click.option("--limit-worker-memory", type=int, default=None, help="Recycle a worker whose RSS exceeds this many MB.")
@click.option("--timeout-worker-shutdown", type=float, default=30, show_default=True, help="With --workers and no --timeout-graceful-shutdown: seconds a stopping worker may run before the master kills it (SIGKILL).")
@click.option("--h2-max-concurrent-streams", type=int, default=100, show_default=True, help="HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS.")
@click.option("--h2-initial-window-size", type=int, default=1048576, show_default=True, help="HTTP/2 per-stream receive window.")
@click.option("--h2-connection-window-size", type=int, default=4194304, show_default=True, help="HTTP/2 per-connection receive window.")
@click.option("--h2-max-frame-size", type=int, default=16384, show_default=True, help="HTTP/2 SETTINGS_MAX_FRAME_SIZE.")
@click.option("--h2-max-header-list-size", type=int, default=16384, show_default=True, help="HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE (431 above).")
@click.option("--h2-max-header-block-size", type=int, default=16384, show_default=True, help="HTTP/2 encoded HEADERS+CONTINUATION cap (GOAWAY ENHANCE_YOUR_CALM above).")
@click.option("--h2-max-header-table-size", type=int, default=4096, show_default=True, help="HTTP/2 HPACK dynamic table cap, both directions.")
@click.option("--h2-max-reset-rate", type=int, default=100, show_default=True, help="HTTP/2 client stream resets per second before GOAWAY (rapid reset guard).")
@click.option("--h2-max-ping-rate", type=int, default=50, show_default=True, help="HTTP/2 PING frames per second before GOAWAY.")
@click.option("--h2-max-settings-rate", type=int, default=50, show_default=True, help="HTTP/2 SETTINGS frames per second before GOAWAY.")
@click.option("--h2-max-empty-frame-rate", type=int, default=100, show_default=True, help="HTTP/2 empty DATA frames per second before GOAWAY.")
@click.option("--alt-svc/--no-alt-svc", default=True, is_flag=True, help="Advertise HTTP/3 with Alt-Svc when h3 is served.")
@click.option("--h3-max-concurrent-streams", type=int, default=100, show_default=True, help="HTTP/3 concurrent request streams per connection (QUIC initial_max_streams_bidi).")
@click.option("--h3-max-field-section-size", type=int, default=16384, show_default=True, help="HTTP/3 SETTINGS_MAX_FIELD_SECTION_SIZE (431 above).")
@click.option("--h3-idle-timeout", type=float, default=30.0, show_default=True, help="Seconds an idle QUIC connection lives.")
@click.option("--h3-max-connections", type=int, default=10000, show_default=True, help="QUIC connections per worker (CONNECTION_REFUSED above).")
@click.option("--h3-retry/--no-h3-retry", default=False, show_default=True, help="Validate client addresses with a stateless QUIC Retry before the handshake.")
@click.option("--h3-max-stream-data", type=int, default=1048576, show_default=True, help="HTTP/3 request body bytes a client may send ahead of the app (per stream).")
@click.option("--h3-max-data", type=int, default=4194304, show_default=True, help="HTTP/3 unread bytes a client may send ahead of the app (per connection).")
@click.option("--h3-qpack-max-table-capacity", type=int, default=8192, show_default=True, help="QPACK dynamic table capacity for request headers (0 disables it).")
@click.option("--h3-qpack-blocked-streams", type=int, default=16, show_default=True, help="QPACK streams that may wait for dynamic-table updates.")
@click.option("--h3-gso/--no-h3-gso", default=True, show_default=True, help="Batch outgoing QUIC datagrams with Linux UDP GSO when available.")
# edge middleware (roadrunner.middleware.stack), all off by default
@click.option("--proxy-headers-mode", type=click.Choice(PROXY_HEADERS_MODES), default=DEFAULT_PROXY_HEADERS_MODE, show_default=True, help="Which forwarding headers --proxy-headers trusts: X-Forwarded-For/-Proto only (as uvicorn); x-forwarded adds X-Forwarded-Host/-Port; forwarded is RFC 7239 Forwarded; auto is x-forwarded when present, else Forwarded.")
@click.option("--cors-allow-origin", "cors_allow_origins", multiple=True, help="Enable CORS for this origin ('*' for any). Repeatable.")
@click.option("--cors-allow-origin-regex", type=str, default=None, help="Enable CORS for origins fully matching this regex.")
@click.option("--cors-allow-methods", type=str, default="GET,HEAD,POST", show_default=True, help="CORS allowed methods, comma list ('*' reflects the request).")
@click.option("--cors-allow-headers", type=str, default=None, help="CORS allowed request headers, comma list ('*' reflects the request).")
@click.option("--cors-allow-credentials", is_flag=True, default=False, help="Allow credentialed CORS requests (a '*' origin is then reflected).")
@click.option("--cors-expose-headers", type=str, default=None, help="Response headers exposed to CORS scripts, comma list.")
@click.option("--cors-max-age", type=int, default=600, show_default=True, help="Seconds browsers may cache a CORS preflight.")
@click.option("--security-headers", is_flag=True, default=False, help="Add X-Content-Type-Options, X-Frame-Options, Referrer-Policy and (https) HSTS.")
@click.option("--etag", is_flag=True, default=False, help="Add ETags to GET/HEAD responses and answer If-None-Match with 304.")
@click.option("--etag-max-size", type=int, default=1048576, show_default=True, help="Largest body (bytes) buffered to compute an ETag.")
@click.option("--compress", is_flag=True, default=False, help="Compress responses (gzip; br and zstd when installed).")
@click.option("--compress-min-size", type=int, default=500, show_default=True, help="Smallest body (bytes) worth compressing.")
@click.option("--rate-limit", type=str, default=None, help="Per-client request rate, e.g. 100/s, 6000/m (429 above).")
@click.option("--rate-burst", type=int, default=None, help="Requests a client may burst above --rate-limit. [default: one second's worth]")
@click.option("--rate-limit-max-peers", type=int, default=65536, show_default=True, help="Most client addresses tracked by the rate guard.")
@click.option("--rate-limit-exempt", "rate_limit_exempt", multiple=True, help="Path not rate limited (trailing * for a prefix). Repeatable.")
def main(app: str, **kwargs: Any) -> None:
    """Run the ASGI application APP ("module:attribute")."""
    headers = []
    for header in kwargs.pop("headers"):
        name, sep, value = header.partition(":")
        if not sep:
            click.echo(f"Invalid --header {header!r}: expected Name:Value.", err=True)
            sys.exit(STARTUP_FAILURE)
        headers.append((name.strip(), value.strip()))
    kwargs["headers"] = headers
    for key in ("cors_allow_origins", "rate_limit_exempt"):
        kwargs[key] = list(kwargs[key]) or None
    for key in ("reload_dirs", "reload_includes", "reload_excludes"):
        kwargs[key] = list(kwargs[key]) or None
    if kwargs["app_dir"] == "":
        kwargs["app_dir"] = "."
    if kwargs["log_config"] is None:
        kwargs.pop("log_config")
    run(app, **kwargs)


if __name__ == "__main__":  # pragma: no cover
    main()

