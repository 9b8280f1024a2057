"""Config option choices and their validation: every value checked once, one clear message."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roadrunner.config import Config

# uvicorn 0.54's sets; --loop also takes a "module:attribute" loop factory.
LOOP_CHOICES = ("none", "auto", "asyncio", "uvloop", "zuvloop")
HTTP_CHOICES = ("auto", "h11", "httptools", "zttp")
HTTP2_ENGINE_CHOICES = ("auto", "nghttp2", "h2")
WS_CHOICES = ("auto", "none", "wsproto", "websockets", "websockets-sansio")
LIFESPAN_CHOICES = ("auto", "on", "off")
INTERFACE_CHOICES = ("auto", "asgi3", "asgi2", "wsgi")
PROTOCOL_CHOICES = ("h1", "h2", "h3")
PROXY_PROTOCOL_CHOICES = ("off", "v1", "v2", "auto")
# Features whose issue has not landed yet: accepted and validated, refused with a clear message.
NOT_YET_AVAILABLE: dict[str, str] = {}
# uvicorn's choices that have no meaning here: refused with one line (exit 3).
REFUSED_CHOICES: dict[tuple[str, str], str] = {
    ("http", "zttp"): (
        "--http zttp is uvicorn's zttp protocol, which roadrunner does not use: its own HTTP/1.1 "
        "parsers serve (--http auto, h11 or httptools) and HTTP/2 is built in (--http2)."
    ),
}


class ConfigError(Exception):
    """An option is invalid; the CLI prints it as one line and exits 3."""


def validate_choices(config: Config) -> None:
    """Reject unknown choices and out-of-range limits with one clear message."""
    checks = [
        ("loop", config.loop, LOOP_CHOICES),
        ("http", config.http, HTTP_CHOICES),
        ("http2-engine", config.http2_engine, HTTP2_ENGINE_CHOICES),
        ("ws", config.ws, WS_CHOICES),
        ("lifespan", config.lifespan, LIFESPAN_CHOICES),
        ("interface", config.interface, INTERFACE_CHOICES),
        ("proxy-protocol", config.proxy_protocol, PROXY_PROTOCOL_CHOICES),
    ]
    for name, value, choices in checks:
        if isinstance(value, str) and value not in choices and ":" not in value:
            raise ConfigError(f"Invalid value {value!r} for --{name} (choose from {', '.join(choices)}).")
        if (name, value) in REFUSED_CHOICES:
            raise ConfigError(REFUSED_CHOICES[(name, value)])
    positive = {
        "limit_request_line": config.limit_request_line,
        "limit_request_headers_size": config.limit_request_headers_size,
        "limit_request_fields": config.limit_request_fields,
        "backlog": config.backlog,
        "h2_max_concurrent_streams": config.h2_max_concurrent_streams,
        "h2_max_header_block_size": config.h2_max_header_block_size,
        "h2_max_reset_rate": config.h2_max_reset_rate,
        "h2_max_ping_rate": config.h2_max_ping_rate,
        "h2_max_settings_rate": config.h2_max_settings_rate,
        "h2_max_empty_frame_rate": config.h2_max_empty_frame_rate,
    }
    for name, number in positive.items():
        if number <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {number}.")
    for name in ("limit_concurrency", "limit_concurrency_soft", "limit_request_body",
                 "limit_max_requests", "retry_after", "timeout_shutdown_idle",
                 "timeout_request_body", "min_request_body_rate", "timeout_send", "min_send_rate"):
        value = getattr(config, name)
        if value is not None and value < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must not be negative, got {value}.")
    if not 16384 <= config.h2_max_frame_size <= 16777215:
        # RFC 9113 §6.5.2: SETTINGS_MAX_FRAME_SIZE range.
        raise ConfigError("--h2-max-frame-size must be between 16384 and 16777215.")
    if not 0 < config.h2_initial_window_size <= 2**31 - 1:
        raise ConfigError("--h2-initial-window-size must be between 1 and 2^31-1.")
    if not 65535 <= config.h2_connection_window_size <= 2**31 - 1:
        raise ConfigError("--h2-connection-window-size must be between 65535 and 2^31-1.")
    if config.workers < 1:
        raise ConfigError("--workers must be at least 1.")
    if config.http2_engine == "nghttp2":
        from roadrunner.protocols.http2.engine import nghttp2_missing

        missing = nghttp2_missing()
        if missing:
            raise ConfigError(f"--http2-engine nghttp2: the nghttp2 engine is not available ({missing}).")
    for feature, message in NOT_YET_AVAILABLE.items():
        if getattr(config, feature, None):
            raise ConfigError(message)

def validate_h3(config: Config) -> None:
    """HTTP/3 needs a certificate (QUIC is always TLS 1.3) and positive limits."""
    if "h3" in config.protocols and not config.ssl_certfile:
        raise ConfigError("--protocols h3 needs --ssl-certfile and --ssl-keyfile (QUIC is always TLS).")
    for name in ("h3_max_concurrent_streams", "h3_max_field_section_size", "h3_idle_timeout",
                 "h3_max_connections", "h3_max_stream_data", "h3_max_data"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}.")
    for name in ("h3_qpack_max_table_capacity", "h3_qpack_blocked_streams"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must not be negative.")
