"""HTTP/1.1: the same bytes through the httptools and the h11 connection.

The driver is tests/h1_driver.py, the one the parity test uses: the client's bytes, cut at the
same points and followed by a blank line (so a parser refusing a bad line earlier than the other
is no disagreement), go to an HttpToolsConnection and an H11Connection. Both must serve the same
requests (equal scopes, equal bodies), answer with the same statuses in the same order
(rejections included), leave the connection in the same state (open or closed), leave no task
and log no error.

Input: byte 0 bits 0-2 pick where the rest is cut into writes; the rest is the client's bytes
(request heads, bodies in any framing, pipelined requests).

With FUZZ_H1_COLLECT=<dir>, a disagreement is saved there and fuzzing goes on (to survey them).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz import driver  # noqa: E402

with driver.instrumented():
    from tests import h1_driver

CONFIGS = h1_driver.configs()


def cuts(length: int, mode: int) -> list[int]:
    """Mode 0: one write; 1: a byte a write; 2-7: mode * 2 seeded cut points."""
    if mode == 0 or length < 2:
        return []
    if mode == 1:
        return list(range(1, length))
    return sorted(random.Random(mode).sample(range(1, length), min(length - 1, mode * 2)))


def check(data: bytes) -> None:
    if not data:
        return
    wire, points = data[1:], cuts(len(data) - 1, data[0] & 7)
    fast = driver.loop.run_until_complete(h1_driver.outcome("httptools", CONFIGS["httptools"], wire, points))
    strict = driver.loop.run_until_complete(h1_driver.outcome("h11", CONFIGS["h11"], wire, points))
    collect = os.environ.get("FUZZ_H1_COLLECT")
    if collect and fast != strict:
        Path(collect, hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)
        return
    assert fast == strict, f"httptools {fast!r}\n      h11 {strict!r}"
    driver.assert_no_errors()


if __name__ == "__main__":
    driver.main("http1", check)
