"""build_edge_stack: wraps the app in the edge middleware the Config switches on.

Order, outermost first: CORS (preflights answered before anything else; 429s stay readable
by browser scripts), RateGuard, SecurityHeaders, Compression, ETag, app. ETag sits inside
Compression so tags are computed once on the identity body; Compression weakens them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from roadrunner.config import ConfigError

if TYPE_CHECKING:
    from roadrunner.config import Config


def _split(value: Any) -> list[str]:
    """A list option given as a list or a comma-separated string."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [
        part for item in value for part in str(item).split(",")
    ]
    return [item.strip() for item in items if item.strip()]


def build_edge_stack(app: Any, config: Config) -> Any:
    """The app wrapped in every edge middleware enabled in config (none by default)."""
    try:
        return _build(app, config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _build(app: Any, config: Config) -> Any:
    if config.etag:
        from roadrunner.middleware.etag import ETagMiddleware

        app = ETagMiddleware(app, max_size=config.etag_max_size)
    if config.compress:
        from roadrunner.middleware.compression import CompressionMiddleware

        app = CompressionMiddleware(app, minimum_size=config.compress_min_size)
    if config.security_headers:
        from roadrunner.middleware.security_headers import SecurityHeadersMiddleware

        app = SecurityHeadersMiddleware(app)
    if config.rate_limit:
        from roadrunner.middleware.rate_guard import RateGuardMiddleware

        app = RateGuardMiddleware(
            app,
            rate=config.rate_limit,
            burst=config.rate_burst,
            max_peers=config.rate_limit_max_peers,
            exempt_paths=_split(config.rate_limit_exempt),
        )
    elif config.rate_burst is not None:
        raise ValueError("--rate-burst needs --rate-limit.")
    origins = _split(config.cors_allow_origins)
    if origins or config.cors_allow_origin_regex:
        from roadrunner.middleware.cors import CORSMiddleware

        app = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_origin_regex=config.cors_allow_origin_regex,
            allow_methods=_split(config.cors_allow_methods),
            allow_headers=_split(config.cors_allow_headers),
            allow_credentials=config.cors_allow_credentials,
            expose_headers=_split(config.cors_expose_headers),
            max_age=config.cors_max_age,
        )
    elif config.cors_allow_credentials:
        raise ValueError("--cors-allow-credentials needs --cors-allow-origin.")
    return app
