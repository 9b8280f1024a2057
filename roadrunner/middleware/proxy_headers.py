"""ProxyHeadersMiddleware: trust X-Forwarded-* only from --forwarded-allow-ips."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roadrunner.config import is_trusted, parse_trusted_hosts


class ProxyHeadersMiddleware:
    """Rewrites scope client and scheme from X-Forwarded-For / X-Forwarded-Proto.

    The For chain is walked right to left: the first address not in the trusted list is the
    client (every hop after it is a proxy we trust to have appended honestly).
    """

    def __init__(self, app: Any, trusted_hosts: Sequence[str] | str = "127.0.0.1") -> None:
        self.app = app
        self.trusted = parse_trusted_hosts(trusted_hosts)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            client_host = client[0] if client else None
            if is_trusted(client_host, self.trusted):
                self.apply(scope)
        await self.app(scope, receive, send)

    def apply(self, scope: dict[str, Any]) -> None:
        forwarded_for: bytes | None = None
        forwarded_proto: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
            elif name == b"x-forwarded-proto":
                forwarded_proto = value
        if forwarded_proto is not None:
            proto = forwarded_proto.decode("latin-1").split(",")[-1].strip().lower()
            if proto in ("http", "https", "ws", "wss"):
                if scope["type"] == "websocket":
                    proto = {"http": "ws", "https": "wss"}.get(proto, proto)
                elif proto in ("ws", "wss"):
                    proto = {"ws": "http", "wss": "https"}[proto]
                scope["scheme"] = proto
        if forwarded_for is not None:
            hops = [hop.strip() for hop in forwarded_for.decode("latin-1").split(",") if hop.strip()]
            host = self.first_untrusted(hops)
            if host is not None:
                scope["client"] = (host, 0)

    def first_untrusted(self, hops: list[str]) -> str | None:
        """Walk the chain from the nearest proxy back; stop at the first untrusted hop."""
        if "*" in self.trusted:
            return hops[0] if hops else None
        for hop in reversed(hops):
            if not is_trusted(hop, self.trusted):
                return hop
        return hops[0] if hops else None
