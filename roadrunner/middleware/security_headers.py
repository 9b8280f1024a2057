"""SecurityHeadersMiddleware: conservative browser-hardening response headers.

Defaults: X-Content-Type-Options, X-Frame-Options and Referrer-Policy on every HTTP response;
Strict-Transport-Security only over https (RFC 6797 §7.2: never over plain http);
Content-Security-Policy and Permissions-Policy only when given. A header the app already set
wins; pass None to drop one of ours.
"""

from __future__ import annotations

from typing import Any

from roadrunner.middleware.headers import Headers

DEFAULT_HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeadersMiddleware:
    """Adds security headers the response does not already carry."""

    def __init__(
        self,
        app: Any,
        content_type_options: str | None = "nosniff",
        frame_options: str | None = "DENY",
        referrer_policy: str | None = "strict-origin-when-cross-origin",
        hsts: str | None = DEFAULT_HSTS,
        content_security_policy: str | None = None,
        permissions_policy: str | None = None,
        cross_origin_opener_policy: str | None = None,
    ) -> None:
        self.app = app
        candidates = [
            (b"x-content-type-options", content_type_options),
            (b"x-frame-options", frame_options),
            (b"referrer-policy", referrer_policy),
            (b"content-security-policy", content_security_policy),
            (b"permissions-policy", permissions_policy),
            (b"cross-origin-opener-policy", cross_origin_opener_policy),
        ]
        self.always: Headers = [(k, v.encode("latin-1")) for k, v in candidates if v is not None]
        self.https: Headers = self.always + (
            [(b"strict-transport-security", hsts.encode("latin-1"))] if hsts else []
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ours = self.https if scope.get("scheme") == "https" else self.always
        if not ours:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                present = {key.lower() for key, _ in headers}
                missing = [item for item in ours if item[0] not in present]
                if missing:
                    message = {**message, "headers": [*headers, *missing]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
