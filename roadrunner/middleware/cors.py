"""CORSMiddleware: the Fetch standard's CORS protocol as an ASGI wrapper.

Simple and actual requests get Access-Control-* headers when their Origin is allowed; preflight
requests (OPTIONS + Origin + Access-Control-Request-Method) are answered here with 204 (allowed)
or 403 (refused) and never reach the app. Every response whose headers depend on Origin carries
`Vary: Origin` (RFC 9110 §12.5.5), including responses to disallowed or absent origins, so a
shared cache never hands one origin's answer to another.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from roadrunner.middleware.headers import Headers, add_vary, get_header, split_list

SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
PREFLIGHT_VARY = (b"Origin", b"Access-Control-Request-Method", b"Access-Control-Request-Headers")


class CORSConfigError(ValueError):
    """The CORS options contradict each other."""


class CORSMiddleware:
    """Adds CORS response headers for allowed origins and answers preflight requests.

    `allow_origins` may contain "*" (any origin). With `allow_credentials`, a wildcard origin is
    never sent: the request's Origin is reflected instead (Fetch §3.2.5 forbids "*" with
    credentials). `allow_methods` / `allow_headers` of "*" reflect what the preflight asks for.
    """

    def __init__(
        self,
        app: Any,
        allow_origins: Sequence[str] = (),
        allow_origin_regex: str | None = None,
        allow_origin_predicate: Callable[[str], bool] | None = None,
        allow_methods: Sequence[str] | str = ("GET", "HEAD", "POST"),
        allow_headers: Sequence[str] | str = (),
        allow_credentials: bool = False,
        expose_headers: Sequence[str] = (),
        max_age: int = 600,
    ) -> None:
        self.app = app
        origins = [allow_origins] if isinstance(allow_origins, str) else list(allow_origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/").lower() for o in origins if o != "*")
        self.origin_regex = re.compile(allow_origin_regex) if allow_origin_regex else None
        self.origin_predicate = allow_origin_predicate
        if not (self.any_origin or self.origins or self.origin_regex or self.origin_predicate):
            raise CORSConfigError("CORSMiddleware needs at least one allowed origin.")
        if max_age < 0:
            raise CORSConfigError("CORS max_age must not be negative.")
        self.allow_credentials = allow_credentials
        methods = _as_list(allow_methods)
        self.any_method = "*" in methods
        self.methods = frozenset(m.upper() for m in methods if m != "*")
        headers = _as_list(allow_headers)
        self.any_header = "*" in headers
        self.headers = frozenset(h.lower() for h in headers if h != "*")
        # The origin header value is a constant "*" only without credentials; every other
        # configuration makes the answer depend on Origin, hence Vary: Origin everywhere.
        self.constant_wildcard = self.any_origin and not allow_credentials
        self.simple_headers: Headers = []
        if allow_credentials:
            self.simple_headers.append((b"access-control-allow-credentials", b"true"))
        if expose_headers:
            self.simple_headers.append(
                (b"access-control-expose-headers", ", ".join(expose_headers).encode("latin-1"))
            )
        self.preflight_static: Headers = [(b"access-control-max-age", str(max_age).encode())]
        if allow_credentials:
            self.preflight_static.append((b"access-control-allow-credentials", b"true"))
        self.methods_value = ", ".join(sorted(self.methods)).encode("latin-1")
        self.headers_value = ", ".join(sorted(self.headers)).encode("latin-1")

    def origin_allowed(self, origin: str) -> bool:
        if self.any_origin:
            return True
        if origin.lower() in self.origins:
            return True
        if self.origin_regex is not None and self.origin_regex.fullmatch(origin):
            return True
        return self.origin_predicate is not None and bool(self.origin_predicate(origin))

    def allow_origin_value(self, origin: bytes) -> bytes:
        return b"*" if self.constant_wildcard else origin

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            # WebSocket handshakes are not subject to CORS (browsers do not enforce it there).
            await self.app(scope, receive, send)
            return
        origin: bytes | None = None
        request_method: bytes | None = None
        request_headers: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                request_method = value
            elif name == b"access-control-request-headers":
                request_headers = value if request_headers is None else request_headers + b"," + value
        if scope["method"] == "OPTIONS" and origin is not None and request_method is not None:
            await self.preflight(origin, request_method, request_headers, send)
            return
        allowed = origin is not None and self.origin_allowed(origin.decode("latin-1"))
        if not allowed and self.constant_wildcard:
            await self.app(scope, receive, send)
            return
        extra: Headers = []
        if allowed:
            assert origin is not None
            extra.append((b"access-control-allow-origin", self.allow_origin_value(origin)))
            extra.extend(self.simple_headers)

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                # An app that answers CORS itself wins: its Access-Control-* stay as they are.
                if extra and get_header(headers, b"access-control-allow-origin") is None:
                    headers.extend(extra)
                if not self.constant_wildcard:
                    headers = add_vary(headers, b"Origin")
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def preflight(
        self, origin: bytes, method: bytes, requested: bytes | None, send: Any
    ) -> None:
        """Answer a preflight: 204 with the grant, or 403 without any CORS header."""
        # The grant depends on all three request fields, so caches must key on all three.
        headers: Headers = [(b"vary", b", ".join(PREFLIGHT_VARY))]
        ok = self.origin_allowed(origin.decode("latin-1"))
        method_name = method.decode("latin-1").strip()
        if ok and not self.any_method:
            ok = method_name.upper() in self.methods or method_name in SAFELISTED_METHODS
        asked = [h.lower() for h in split_list(requested)] if requested else []
        if ok and not self.any_header:
            ok = all(h.decode("latin-1") in self.headers for h in asked)
        if not ok:
            await _respond(send, 403, headers, b"Disallowed CORS preflight")
            return
        headers.append((b"access-control-allow-origin", self.allow_origin_value(origin)))
        if self.any_method:
            # Fetch: "*" is only a wildcard without credentials; reflect the method instead.
            headers.append((b"access-control-allow-methods", method_name.encode("latin-1")))
        else:
            headers.append((b"access-control-allow-methods", self.methods_value))
        if self.any_header:
            if asked:
                headers.append((b"access-control-allow-headers", b", ".join(asked)))
        elif self.headers_value:
            headers.append((b"access-control-allow-headers", self.headers_value))
        headers.extend(self.preflight_static)
        await _respond(send, 204, headers, b"")


def _as_list(value: Sequence[str] | str) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)


async def _respond(send: Any, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> None:
    out = list(headers)
    if body:
        out.append((b"content-type", b"text/plain; charset=utf-8"))
    if status != 204:  # RFC 9110 §8.6: no Content-Length in a 204
        out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})
