"""ProxyHeadersMiddleware: trust forwarding headers only from --forwarded-allow-ips.

By default only X-Forwarded-For / -Proto, as uvicorn; --proxy-headers-mode opts in to
X-Forwarded-Host / -Port and RFC 7239 `Forwarded`. Chains are walked right to left: the first
hop that is not a trusted proxy is the client, since every hop after it was appended by a
proxy we trust.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from roadrunner.config import DEFAULT_PROXY_HEADERS_MODE, parse_trusted_hosts
from roadrunner.forwarding import FORWARDING_NAMES  # the only names apply() reads (lower-case)

# A proxy passes through what it does not set itself, so trusting a header it leaves alone
# lets the client choose its value: the default trusts only the two every proxy sets.
FOR_PROTO = DEFAULT_PROXY_HEADERS_MODE
MODES = (FOR_PROTO, "x-forwarded", "forwarded", "auto")
DEFAULT_MODE = FOR_PROTO
CACHE_SIZE = 4096
PROTOS = ("http", "https", "ws", "wss")
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# RFC 9110 §7.2 / RFC 3986 §3.2.2: uri-host [ ":" port ]; anything else is ignored.
HOST_VALUE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::\d{1,5})?")
# RFC 7239 §4: forwarded-pair = token "=" ( token / quoted-string )
FORWARDED_PAIR = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


class TrustedHosts:
    """--forwarded-allow-ips compiled once: addresses, networks, '*' and literal names."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.any = "*" in entries
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.literals: set[str] = set()
        # Peers repeat: parsing an address costs more than the rest of the middleware.
        self.cache: dict[str, bool] = {}
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.literals.add(entry)

    def __contains__(self, host: object) -> bool:
        if self.any:
            return True
        if not isinstance(host, str):
            return False
        known = self.cache.get(host)
        if known is not None:
            return known
        if host in self.literals:
            trusted = True
        else:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                trusted = False
            else:
                trusted = any(address in network for network in self.networks)
        if len(self.cache) >= CACHE_SIZE:
            self.cache.clear()  # bounded: many distinct peers cannot grow it without limit
        self.cache[host] = trusted
        return trusted


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 §4: elements separated by ',', pairs by ';', values token or quoted-string."""
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        match = FORWARDED_PAIR.match(value, pos)
        if match is None:  # malformed: skip to the next element
            nxt = value.find(",", pos)
            if current:
                elements.append(current)
            current = {}
            if nxt < 0:
                break
            pos = nxt + 1
            continue
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        current.setdefault(name, raw)
        pos = match.end()
        if pos < len(value) and value[pos] == ",":
            elements.append(current)
            current = {}
        pos += 1
    if current:
        elements.append(current)
    return elements


def node_host(node: str) -> str:
    """The address of an RFC 7239 §6 node: '[v6]:port' -> 'v6', 'v4:port' -> 'v4'."""
    if node.startswith("["):
        return node[1:].partition("]")[0]
    if node.count(":") == 1:
        return node.partition(":")[0]
    return node


class ProxyHeadersMiddleware:
    """Rewrites scope client, scheme and Host from forwarding headers sent by trusted proxies.

    mode: "x-forwarded-for-proto" (X-Forwarded-For and -Proto only, uvicorn's set),
    "x-forwarded" (also X-Forwarded-Host and -Port), "forwarded" (RFC 7239 only), or "auto": the
    X-Forwarded-* headers when present, else Forwarded. Choose what your proxy sets: a proxy
    passes the other headers through from the client untouched.
    """

    def __init__(
        self, app: Any, trusted_hosts: Sequence[str] | str = "127.0.0.1", mode: str = DEFAULT_MODE
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"Invalid proxy headers mode {mode!r} (choose from {', '.join(MODES)}).")
        self.app = app
        self.trusted_list = parse_trusted_hosts(trusted_hosts)
        self.trusted = TrustedHosts(self.trusted_list)
        self.mode = mode

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.rewrite(scope)
        await self.app(scope, receive, send)

    def rewrite(self, scope: dict[str, Any]) -> None:
        """Apply the forwarding headers to the scope in place (the server's fast path calls
        this directly, saving a coroutine layer per request)."""
        if scope["type"] not in ("http", "websocket"):
            return
        # Most requests carry no forwarding header: look for one before anything costlier.
        for name, _ in scope["headers"]:
            if name in FORWARDING_NAMES:
                break
        else:
            return
        client = scope.get("client")
        if (client[0] if client else None) in self.trusted:
            self.apply(scope)

    def apply(self, scope: dict[str, Any]) -> None:
        forwarded_for = forwarded_proto = forwarded_host = forwarded_port = forwarded = None
        for name, value in scope["headers"]:
            if name not in FORWARDING_NAMES:
                continue
            if name == b"x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
            elif name == b"x-forwarded-proto":
                forwarded_proto = value
            elif name == b"x-forwarded-host":
                forwarded_host = value
            elif name == b"x-forwarded-port":
                forwarded_port = value
            elif name == b"forwarded":
                forwarded = value if forwarded is None else forwarded + b"," + value
        if self.mode == FOR_PROTO:
            self.apply_x_forwarded(scope, forwarded_for, forwarded_proto, None, None)
            return
        use_x = self.mode == "x-forwarded" or (
            self.mode == "auto" and (forwarded_for or forwarded_proto or forwarded_host
                                     or forwarded_port) is not None
        )
        if use_x:
            self.apply_x_forwarded(scope, forwarded_for, forwarded_proto, forwarded_host,
                                   forwarded_port)
        elif forwarded is not None and self.mode != "x-forwarded":
            self.apply_forwarded(scope, forwarded.decode("latin-1"))

    def apply_x_forwarded(
        self,
        scope: dict[str, Any],
        forwarded_for: bytes | None,
        forwarded_proto: bytes | None,
        forwarded_host: bytes | None,
        forwarded_port: bytes | None,
    ) -> None:
        if forwarded_proto is not None:
            self.set_scheme(scope, forwarded_proto.decode("latin-1").split(",")[-1])
        if forwarded_for is not None:
            hops = [hop.strip() for hop in forwarded_for.decode("latin-1").split(",") if hop.strip()]
            host = self.first_untrusted(hops)
            if host is not None:
                scope["client"] = (host, 0)
        # The nearest proxy's value, as for X-Forwarded-Proto.
        host_value = forwarded_host.decode("latin-1").split(",")[-1].strip() if forwarded_host else None
        port_value = forwarded_port.decode("latin-1").split(",")[-1].strip() if forwarded_port else None
        if host_value or port_value:
            self.set_host(scope, host_value, port_value)

    def apply_forwarded(self, scope: dict[str, Any], value: str) -> None:
        elements = parse_forwarded(value)
        if not elements:
            return
        chosen = elements[0]
        if not self.trusted.any:
            for element in reversed(elements):
                if node_host(element.get("for", "")) not in self.trusted:
                    chosen = element
                    break
        if "proto" in chosen:
            self.set_scheme(scope, chosen["proto"])
        if "for" in chosen:
            scope["client"] = (node_host(chosen["for"]), 0)
        if "host" in chosen:
            self.set_host(scope, chosen["host"], None)

    def set_scheme(self, scope: dict[str, Any], value: str) -> None:
        proto = value.strip().lower()
        if proto not in PROTOS:
            return
        if scope["type"] == "websocket":
            proto = {"http": "ws", "https": "wss"}.get(proto, proto)
        else:
            proto = {"ws": "http", "wss": "https"}.get(proto, proto)
        scope["scheme"] = proto

    def set_host(self, scope: dict[str, Any], host: str | None, port: str | None) -> None:
        """Replace the Host header (what frameworks build URLs from) with the forwarded one."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        index = next((i for i, (name, _) in enumerate(headers) if name == b"host"), -1)
        if host is None:
            if index < 0:
                return
            host = headers[index][1].decode("latin-1")
        if not HOST_VALUE.fullmatch(host):
            return
        if port is not None:
            if not port.isdigit() or not 0 < int(port) < 65536:
                return
            # Drop any port already in the host ("[v6]:p" or "name:p"), then apply ours.
            bare = host if host.endswith("]") or ":" not in host else host.rpartition(":")[0]
            host = bare if DEFAULT_PORTS.get(scope.get("scheme", "")) == int(port) else f"{bare}:{port}"
        encoded = host.encode("latin-1")
        new_headers = list(headers)
        if index < 0:
            new_headers.append((b"host", encoded))
        else:
            new_headers[index] = (b"host", encoded)
        scope["headers"] = new_headers

    def first_untrusted(self, hops: list[str]) -> str | None:
        """Walk the chain from the nearest proxy back; stop at the first untrusted hop."""
        if self.trusted.any:
            return hops[0] if hops else None
        for hop in reversed(hops):
            if hop not in self.trusted:
                return hop
        return hops[0] if hops else None
