"""Result records: one per measurement run, shared by drivers, the runner and the report."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    """What a load generator reports for one run."""

    requests: int
    duration_s: float
    requests_per_s: float
    p50_s: float
    p99_s: float
    socket_errors: int = 0
    bad_responses: int = 0  # non-2xx/3xx
    bytes_per_s: float | None = None  # response body throughput, where the driver measures it
    client_cpu_seconds: float | None = None  # a Python load generator's own CPU time


@dataclass(frozen=True)
class LoadSample:
    """One run of a load scenario against one server, with the server's own accounting."""

    load: LoadResult
    cpu_seconds_per_10k: float
    rss_bytes: int


@dataclass(frozen=True)
class IdleSample:
    """One run of the idle-connection scenario."""

    connections: int
    rss_before: int
    rss_after: int
    still_open: int  # connections that answered a second request after the measurement

    @property
    def bytes_per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / self.connections
