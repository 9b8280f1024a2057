"""RateGuardMiddleware: a token bucket per client address, answered with 429 + Retry-After.

The client is scope["client"], i.e. after proxy-header / PROXY-protocol resolution. Memory is
bounded twice: buckets idle long enough to have refilled are swept (they are equivalent to a
fresh bucket), and at most `max_peers` are tracked, the least recently seen evicted first.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

DEFAULT_MAX_PEERS = 65536
RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
              "h": 3600.0, "hour": 3600.0}
RATE_FORMAT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*")


def parse_rate(value: str) -> float:
    """'100/s', '6000/m' or '10/hour' as requests per second."""
    match = RATE_FORMAT.fullmatch(value.lower())
    if not match or match.group(2) not in RATE_UNITS or float(match.group(1)) <= 0:
        raise ValueError(
            f"Invalid rate {value!r}: expected a positive N/s, N/m or N/h (e.g. 100/s)."
        )
    return float(match.group(1)) / RATE_UNITS[match.group(2)]


class BucketStore:
    """Token buckets keyed by peer, least recently used first, with sweep and a hard cap."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_peers: int = DEFAULT_MAX_PEERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_peers < 1:
            raise ValueError("rate must be > 0, burst >= 1 and max_peers >= 1.")
        self.rate = rate
        self.burst = float(burst)
        self.max_peers = max_peers
        self.clock = clock
        # A bucket untouched this long is full again: dropping it changes nothing.
        self.idle_after = self.burst / rate
        self.sweep_every = max(self.idle_after, 1.0)
        self.next_sweep = clock() + self.sweep_every
        self.buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, last]

    def __len__(self) -> int:
        return len(self.buckets)

    def take(self, key: str) -> float:
        """Spend one token for key: 0.0 when allowed, else seconds until a token is available."""
        now = self.clock()
        if now >= self.next_sweep:
            self.sweep(now)
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_peers:
                self.buckets.popitem(last=False)
            self.buckets[key] = [self.burst - 1.0, now]
            return 0.0
        self.buckets.move_to_end(key)
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def sweep(self, now: float) -> None:
        """Drop buckets idle long enough to be full; oldest first, so stop at the first fresh one."""
        self.next_sweep = now + self.sweep_every
        horizon = now - self.idle_after
        buckets = self.buckets
        while buckets:
            key, bucket = next(iter(buckets.items()))
            if bucket[1] > horizon:
                break
            del buckets[key]


class RateGuardMiddleware:
    """429 Too Many Requests (RFC 6585 §4) with Retry-After once a peer's bucket is empty."""

    def __init__(
        self,
        app: Any,
        rate: float | str,
        burst: int | None = None,
        max_peers: int = DEFAULT_MAX_PEERS,
        exempt_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        per_second = parse_rate(rate) if isinstance(rate, str) else float(rate)
        if burst is None:
            burst = max(1, math.ceil(per_second))
        self.store = BucketStore(per_second, burst, max_peers)
        paths = list(exempt_paths)
        self.exempt = frozenset(p for p in paths if not p.endswith("*"))
        self.exempt_prefixes = tuple(p[:-1] for p in paths if p.endswith("*"))

    def is_exempt(self, path: str) -> bool:
        return path in self.exempt or (bool(self.exempt_prefixes) and path.startswith(self.exempt_prefixes))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        client = scope.get("client") if scope["type"] in ("http", "websocket") else None
        # Unix-socket peers without proxy headers have no address to key on: not limited.
        if client is None or self.is_exempt(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        wait = self.store.take(client[0])
        if not wait:
            await self.app(scope, receive, send)
            return
        retry_after = str(max(1, math.ceil(wait))).encode()
        body = b"Too Many Requests"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", retry_after),
        ]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 429, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            # ASGI: closing before accept rejects the handshake (403 on the wire).
            await send({"type": "websocket.close", "code": 1008})
