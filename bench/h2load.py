"""The h2load driver: HTTP/2 load (nghttp2's h2load, one thread), its summary and latencies.

h2load prints min/max/mean but no percentiles, so each run also writes `--log-file` (one line
per request: start time in µs, status, µs until the response ended) and p50/p99 come from it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.http1 import Response, fetch
from bench.results import LoadResult
from bench.scenarios import LoadScenario, Request

_FINISHED_RE = re.compile(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", re.MULTILINE)
_REQUESTS_RE = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout", re.MULTILINE)
_STATUS_RE = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.MULTILINE)
_PROTOCOL_RE = re.compile(r"^Application protocol: (\S+)", re.MULTILINE)
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
INACTIVITY_TIMEOUT = 3  # seconds (h2load -N)


@dataclass(frozen=True)
class H2loadSummary:
    """h2load's closing summary."""

    duration_s: float
    requests_per_s: float  # h2load's: successfully completed requests per second
    started: int
    done: int
    succeeded: int  # answered with 2xx or 3xx
    failed: int  # not completed: stream reset, connection lost (includes errored and timeout)
    errored: int
    timeout: int
    status_4xx: int
    status_5xx: int
    protocol: str | None  # the ALPN (or h2c) protocol h2load used


def parse_summary(text: str) -> H2loadSummary:
    """Parse h2load's report; ValueError if it holds none."""
    finished = _FINISHED_RE.search(text)
    requests = _REQUESTS_RE.search(text)
    status = _STATUS_RE.search(text)
    if finished is None or requests is None or status is None:
        raise ValueError(f"h2load printed no result:\n{text[-2000:]}")
    _total, started, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    protocol = _PROTOCOL_RE.search(text)
    return H2loadSummary(
        duration_s=float(finished.group(1)) * _UNITS[finished.group(2)],
        requests_per_s=float(finished.group(3)),
        started=started, done=done, succeeded=succeeded, failed=failed, errored=errored,
        timeout=timeout, status_4xx=int(status.group(3)), status_5xx=int(status.group(4)),
        protocol=protocol.group(1) if protocol else None,
    )


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values (0 < fraction <= 1)."""
    if not values:
        raise ValueError("no values")
    rank = max(1, -(-len(values) * fraction // 1))  # ceil(n * fraction)
    return values[int(rank) - 1]


def log_latencies(lines: Iterable[str]) -> list[float]:
    """Sorted response times in seconds from h2load's --log-file (third column, µs)."""
    durations = []
    for line in lines:
        fields = line.split("\t")
        if len(fields) >= 3:
            durations.append(int(fields[2]) / 1e6)
    return sorted(durations)


def to_load_result(summary: H2loadSummary, latencies: list[float],
                   protocols: tuple[str | None, ...] = (None, "h2", "h2c")) -> LoadResult:
    """A LoadResult: failed requests count as socket errors, 4xx/5xx as bad responses."""
    if summary.protocol not in protocols:
        wanted = "HTTP/1.1" if "http/1.1" in protocols else "HTTP/2"
        raise ValueError(f"h2load spoke {summary.protocol}, not {wanted}")
    if summary.succeeded == 0 and summary.done and "http/1.1" in protocols and not (
            summary.status_4xx or summary.status_5xx):
        # h2load's HTTP/1.1 parser reports a status only through its status-text callback, so a
        # status line with an empty reason phrase ("HTTP/1.1 200 ", as hypercorn sends) leaves
        # every response without a status and counted failed.
        raise ValueError(f"h2load read no status in {summary.done} responses (an empty reason "
                         "phrase gives its HTTP/1.1 parser none)")
    if not latencies:
        raise ValueError("h2load logged no completed request")
    return LoadResult(
        requests=summary.succeeded,
        duration_s=summary.duration_s,
        requests_per_s=summary.requests_per_s,
        p50_s=percentile(latencies, 0.50),
        p99_s=percentile(latencies, 0.99),
        socket_errors=summary.failed,
        bad_responses=summary.status_4xx + summary.status_5xx,
    )


def request_flags(request: Request, body_file: Path | None) -> list[str]:
    """h2load's flags for the scenario's headers and body (-d sends a file as each body)."""
    flags: list[str] = []
    for name, value in request.headers:
        flags += ["-H", f"{name}: {value}"]
    if request.method not in ("GET", "POST") or (request.method == "POST" and body_file is None):
        raise ValueError(f"h2load sends GET, or POST with -d; not {request.method}")
    if body_file is not None:
        flags += ["-d", str(body_file)]
    return flags


class H2loadDriver:
    """h2load -t1: `connections` connections with `streams` concurrent streams (-m) each; with
    h1, HTTP/1.1 (`--h1`: http/1.1 by ALPN over TLS, one request at a time per connection)."""

    executable = "h2load"

    def __init__(self, tls: bool, h1: bool = False) -> None:
        self.tls = tls  # h2 by ALPN over TLS, else h2c with prior knowledge
        self.h1 = h1
        self.log_file: Path | None = None

    def url(self, base_url: str, path: str) -> str:
        rest = base_url.partition("://")[2]
        return f"{'https' if self.tls else 'http'}://{rest}{path}"

    def command(
        self, scenario: LoadScenario, base_url: str, duration: float, workdir: Path
    ) -> list[str]:
        body_file = None
        if scenario.request.body:
            body_file = workdir / f"{scenario.name}.body"
            body_file.write_bytes(scenario.request.body)
        self.log_file = workdir / f"{scenario.name}.h2load.log"
        return [
            self.executable, "-t1", f"-c{scenario.connections}", f"-m{scenario.streams}",
            *(["--h1"] if self.h1 else []),
            f"-D{max(1, round(duration))}", f"--log-file={self.log_file}",
            # h2load closes a connection silent this long. It does not end h2load's own hang at
            # the end of -D (docs/bench/notes.md): a connection whose TLS handshake outlasts -D
            # misses h2load's GOAWAY and keeps requesting, so it is never silent.
            f"-N{INACTIVITY_TIMEOUT}s",
            *request_flags(scenario.request, body_file),
            self.url(base_url, scenario.request.path),
        ]

    def parse(self, output: str) -> LoadResult:
        if self.log_file is None:
            raise ValueError("parse() before command()")
        with self.log_file.open() as log:
            latencies = log_latencies(log)
        self.log_file.unlink()
        protocols = ("http/1.1",) if self.h1 else (None, "h2", "h2c")
        return to_load_result(parse_summary(output), latencies, protocols)

    def fetch(self, host: str, port: int, request: Request, timeout: float = 10.0) -> Response:
        """The check before loading: one request with curl, which must speak HTTP/2 (or, for
        h1, the harness's own HTTP/1.1 client over TLS with http/1.1 by ALPN)."""
        if self.h1:
            return fetch(host, port, request, timeout=timeout, tls=self.tls)
        argv = ["curl", "-sS", "-k", "--max-time", str(timeout), "-X", request.method,
                "--http2" if self.tls else "--http2-prior-knowledge",
                "-o", "-", "-w", "\n%{http_code} %{http_version}"]
        for name, value in request.headers:
            argv += ["-H", f"{name}: {value}"]
        if request.body:
            argv += ["--data-binary", "@-"]
        argv.append(self.url(f"http://{host}:{port}", request.path))
        done = subprocess.run(argv, input=request.body, capture_output=True, timeout=timeout + 5)
        if done.returncode != 0:
            raise RuntimeError(f"curl exited {done.returncode}: {done.stderr.decode().strip()}")
        body, _, trailer = done.stdout.rpartition(b"\n")
        status, version = trailer.decode().split()
        if version != "2":
            raise RuntimeError(f"curl spoke HTTP/{version}, not HTTP/2")
        return Response(int(status), (), body, len(body))
