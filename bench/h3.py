"""The h3 driver: bench/h3client.py (aioquic) as a subprocess, and its JSON summary."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from bench.h3client import LoadSpec, fetch_one
from bench.http1 import Response
from bench.results import LoadResult
from bench.scenarios import LoadScenario, Request


def parse_output(text: str) -> LoadResult:
    """The client's JSON summary as a LoadResult; ValueError if it holds none."""
    try:
        data = json.loads(text.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise ValueError(f"h3client printed no result:\n{text[-2000:]}") from exc
    if data["completed"] == 0 and data["bytes_per_s"] == 0:
        raise ValueError(f"h3client completed no request: {'; '.join(data['errors'])}")
    return LoadResult(
        requests=data["completed"], duration_s=data["duration_s"],
        requests_per_s=data["requests_per_s"], p50_s=data["p50_s"], p99_s=data["p99_s"],
        socket_errors=data["failed"], bad_responses=data["bad"],
        bytes_per_s=data["bytes_per_s"], client_cpu_seconds=data["client_cpu_s"],
    )


class H3Driver:
    """`connections` QUIC connections with `streams` concurrent request streams each."""

    executable = sys.executable

    def command(
        self, scenario: LoadScenario, base_url: str, duration: float, workdir: Path
    ) -> list[str]:
        host, _, port = base_url.partition("://")[2].rpartition(":")
        argv = [self.executable, "-m", "bench.h3client", "--host", host, "--port", port,
                "--path", scenario.request.path, "--method", scenario.request.method,
                "--connections", str(scenario.connections), "--streams", str(scenario.streams),
                "--duration", str(duration)]
        for name, value in scenario.request.headers:
            argv += ["--header", f"{name}: {value}"]
        if scenario.request.body:
            body_file = workdir / f"{scenario.name}.body"
            body_file.write_bytes(scenario.request.body)
            argv += ["--body-file", str(body_file)]
        return argv

    def parse(self, output: str) -> LoadResult:
        return parse_output(output)

    def fetch(self, host: str, port: int, request: Request, timeout: float = 10.0) -> Response:
        """The check before loading: one HTTP/3 request over QUIC, body kept."""
        spec = LoadSpec(host, port, request.path, request.method, request.headers, request.body)
        answer = asyncio.run(fetch_one(spec, timeout))
        return Response(answer.status, (), bytes(answer.body), answer.length)
