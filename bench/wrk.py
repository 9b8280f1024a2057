"""The wrk driver: HTTP/1.1 load with a generated Lua script, and parsing of wrk's report."""

from __future__ import annotations

import re
from pathlib import Path

from bench.http1 import encode_request
from bench.results import LoadResult
from bench.scenarios import LoadScenario, Request

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"
_REQUESTS_RE = re.compile(r"^\s*(\d+) requests in " + _DURATION, re.MULTILINE)
_RPS_RE = re.compile(r"^Requests/sec:\s*([\d.]+)", re.MULTILINE)
_PERCENTILE_RE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+" + _DURATION, re.MULTILINE)
_SOCKET_ERRORS_RE = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_NON_2XX_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def to_seconds(number: str, unit: str) -> float:
    """wrk's duration format ("850.00us", "1.20ms", "2.00s") in seconds."""
    return float(number) * _UNITS[unit]


def parse_output(text: str) -> LoadResult:
    """Parse `wrk --latency` output; ValueError if it holds no result."""
    requests = _REQUESTS_RE.search(text)
    rps = _RPS_RE.search(text)
    if requests is None or rps is None:
        raise ValueError(f"wrk printed no result:\n{text}")
    percentiles = {int(p): to_seconds(n, u) for p, n, u in _PERCENTILE_RE.findall(text)}
    if 50 not in percentiles or 99 not in percentiles:
        raise ValueError(f"wrk printed no latency distribution (run it with --latency):\n{text}")
    socket_errors = _SOCKET_ERRORS_RE.search(text)
    non_2xx = _NON_2XX_RE.search(text)
    return LoadResult(
        requests=int(requests.group(1)),
        duration_s=to_seconds(requests.group(2), requests.group(3)),
        requests_per_s=float(rps.group(1)),
        p50_s=percentiles[50],
        p99_s=percentiles[99],
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
        bad_responses=int(non_2xx.group(1)) if non_2xx else 0,
    )


def lua_string(data: bytes) -> str:
    """A Lua string literal for arbitrary bytes (decimal escapes outside printable ASCII)."""
    out = []
    for byte in data:
        if 32 <= byte < 127 and byte not in (34, 92):  # not '"' or '\'
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def needs_raw_requests(scenario: LoadScenario) -> bool:
    """wrk's own request builder sends one Content-Length request per response: pipelining,
    chunked bodies and a path per request need the bytes written by the script."""
    return scenario.pipeline > 1 or bool(scenario.request.chunks) or bool(scenario.paths)


def raw_lua_script(scenario: LoadScenario, authority: str) -> str:
    """A wrk script whose request() hands out pre-encoded requests, cycling through the
    scenario's paths, each repeated `pipeline` times (wrk then expects that many responses
    before it writes again)."""
    paths = scenario.paths or (scenario.request.path,)
    encoded = [encode_request(scenario.request, authority, path) * scenario.pipeline
               for path in paths]
    lines = ["local requests = {", *(f"  {lua_string(raw)}," for raw in encoded), "}",
             "local index = 0",
             "request = function()",
             "  index = index % #requests + 1",
             "  return requests[index]",
             "end"]
    return "\n".join(lines) + "\n"


def lua_script(request: Request) -> str:
    """The wrk script that sets the scenario's method, headers and body."""
    lines = [f"wrk.method = {lua_string(request.method.encode())}"]
    for name, value in request.headers:
        lines.append(f"wrk.headers[{lua_string(name.encode())}] = {lua_string(value.encode())}")
    if request.body:
        lines.append(f"wrk.body = {lua_string(request.body)}")
    return "\n".join(lines) + "\n"


class WrkDriver:
    """One wrk thread (the client has one core), `connections` keep-alive connections."""

    executable = "wrk"

    def command(
        self, scenario: LoadScenario, base_url: str, duration: float, workdir: Path
    ) -> list[str]:
        script = workdir / f"{scenario.name}.lua"
        authority = base_url.partition("://")[2]
        script.write_text(raw_lua_script(scenario, authority) if needs_raw_requests(scenario)
                          else lua_script(scenario.request))
        return [
            self.executable, "-t1", f"-c{scenario.connections}", f"-d{max(1, round(duration))}s",
            "--latency", "--timeout", "10s", "-s", str(script), base_url + scenario.request.path,
        ]

    def parse(self, output: str) -> LoadResult:
        return parse_output(output)
