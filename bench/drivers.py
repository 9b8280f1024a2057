"""The load-driver registry: a scenario names its driver (wrk today; h2load, a websocket
client or an h3 client are added here with the same two methods)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bench.h2load import H2loadDriver
from bench.h3 import H3Driver
from bench.middleware import GzipWrkDriver
from bench.results import LoadResult
from bench.scenarios import LoadScenario
from bench.unpinned import UnpinnedWrk
from bench.wrk import WrkDriver
from bench.ws import WsDriver


class LoadDriver(Protocol):
    """A load generator run as a subprocess pinned to the client core."""

    executable: str

    def command(
        self, scenario: LoadScenario, base_url: str, duration: float, workdir: Path
    ) -> list[str]: ...

    def parse(self, output: str) -> LoadResult: ...


DRIVERS: dict[str, LoadDriver] = {"wrk": WrkDriver()}
DRIVERS["h2load"] = H2loadDriver(tls=True)  # h2 by ALPN over TLS
DRIVERS["h2load-h2c"] = H2loadDriver(tls=False)  # cleartext, prior knowledge
DRIVERS["h2load-h1"] = H2loadDriver(tls=True, h1=True)  # HTTP/1.1 over TLS (h2load --h1)
DRIVERS["h3"] = H3Driver()
DRIVERS["ws"] = WsDriver()  # bench/ws.py: WebSocket echo, one asyncio process
DRIVERS["wrk-gzip"] = GzipWrkDriver()  # wrk; the pre-run check wants a gzip answer
DRIVERS["wrk-unpinned"] = UnpinnedWrk()  # wrk on every core (the multi-worker section)
