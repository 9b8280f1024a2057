"""HTTP/2 flood guards shared by both engines: the token bucket, the counters, the caps' errors."""

from __future__ import annotations

import time
from collections import Counter

from h2.exceptions import DenialOfServiceError

# Times each guard fired, by name: a cheap metric and what the tests read.
guard_counters: Counter[str] = Counter()

# Decoded header lists above this many times the advertised limit are treated as an HPACK bomb:
# the whole connection goes (ENHANCE_YOUR_CALM) instead of a 431 for the stream.
HEADER_BOMB_FACTOR = 4


class HeaderBlockTooLarge(DenialOfServiceError):
    """The encoded header block outgrew --h2-max-header-block-size (GOAWAY ENHANCE_YOUR_CALM)."""


class RateGuard:
    """A token bucket: `rate` events a second, bursts up to `rate`; hit() says when exceeded."""

    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.stamp = time.monotonic()

    def hit(self) -> bool:
        now = time.monotonic()
        self.tokens = min(float(self.rate), self.tokens + (now - self.stamp) * self.rate) - 1.0
        self.stamp = now
        return self.tokens < 0

