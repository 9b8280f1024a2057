"""The request header names that carry what a proxy forwards (RFC 7239 `Forwarded`, the de facto
X-Forwarded-*): the proxy-headers middleware reads only these, and the HTTP/1.1 rules note whether
a request has any so that the middleware can pass it by. A leaf module: both sides import it, so a
protocol never imports middleware."""

from __future__ import annotations

FORWARDING_NAMES = frozenset(
    (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"forwarded")
)
