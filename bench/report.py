"""Render a run as Markdown (docs/benchmarks.md) and as JSON (every sample)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.results import IdleSample, LoadSample
from bench.scenarios import CONFIGURATION_TAGS, IdleScenario, LoadScenario, Scenario
from bench.servers import ServerSpec
from bench.stats import median, spread

BASELINE = "uvicorn"
HELLO_RATIO_TARGET = 1.3
IDLE_BYTES_TARGET = 6000  # 6 KB per idle keep-alive connection


@dataclass
class Cell:
    """Every repetition of one scenario against one server."""

    samples: list[LoadSample | IdleSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def load_samples(self) -> list[LoadSample]:
        return [s for s in self.samples if isinstance(s, LoadSample)]

    def idle_samples(self) -> list[IdleSample]:
        return [s for s in self.samples if isinstance(s, IdleSample)]


@dataclass
class Run:
    """A whole benchmark run: what was run, where, and what came out."""

    command: str
    settings: dict[str, Any]
    machine: dict[str, str]
    servers: list[ServerSpec]
    scenarios: list[Scenario]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def cell(self, server: str, scenario: str) -> Cell:
        return self.cells.setdefault((server, scenario), Cell())


def median_rps(cell: Cell | None) -> float | None:
    samples = cell.load_samples() if cell else []
    return median([s.load.requests_per_s for s in samples]) if samples else None


def median_idle_bytes(cell: Cell | None) -> float | None:
    samples = cell.idle_samples() if cell else []
    return median([s.bytes_per_connection for s in samples]) if samples else None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _mib(size: float) -> str:
    return f"{size / 1024 / 1024:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _errors(cell: Cell) -> str:
    parts = []
    socket_errors = sum(s.load.socket_errors for s in cell.load_samples())
    bad = sum(s.load.bad_responses for s in cell.load_samples())
    if socket_errors:
        parts.append(f"{socket_errors} socket errors")
    if bad:
        parts.append(f"{bad} non-2xx")
    parts += cell.errors
    return "; ".join(parts) or "0"


def _load_section(run: Run, scenario: LoadScenario) -> list[str]:
    baseline = median_rps(run.cells.get((scenario.baseline, scenario.name)))
    header = ["server", "req/s (median)", f"÷ {scenario.baseline}", "runs (req/s)", "p50 ms",
              "p99 ms",
              "CPU-s / 10k req", "RSS MiB", "errors"]
    rows = []
    for spec in run.servers:
        cell = run.cells.get((spec.name, scenario.name))
        if not scenario.requires <= spec.supports:
            if not spec.variant and not scenario.requires & CONFIGURATION_TAGS:
                rows.append([spec.name, "n/a"] + [""] * (len(header) - 2))
            continue
        if cell is None:
            continue
        samples = cell.load_samples()
        if not samples:
            rows.append([spec.name, "failed"] + [""] * (len(header) - 3) + [_errors(cell)])
            continue
        rps = [s.load.requests_per_s for s in samples]
        ratio = f"{median(rps) / baseline:.2f}x" if baseline else ""
        rows.append([
            spec.name, f"{median(rps):,.0f}", ratio,
            " / ".join(f"{r:,.0f}" for r in rps) + f" (±{spread(rps) * 50:.0f}%)",
            _ms(median([s.load.p50_s for s in samples])),
            _ms(median([s.load.p99_s for s in samples])),
            f"{median([s.cpu_seconds_per_10k for s in samples]):.3f}",
            _mib(median([s.rss_bytes for s in samples])),
            _errors(cell),
        ])
    return [f"### {scenario.name}: {scenario.title}", "",
            _load_client(scenario), *_client_notes(run, scenario), "",
            *_table(header, rows), ""]


def _load_client(scenario: LoadScenario) -> str:
    """Which load generator ran, with how many connections (and streams per connection)."""
    if scenario.driver == "wrk":
        return f"wrk: 1 thread, {scenario.connections} connections."
    if scenario.driver == "ws":
        return (f"bench/ws.py (asyncio on uvloop, one process): {scenario.connections} WebSocket "
                f"connections, each sending a {len(scenario.request.body):,}-byte text message and "
                "awaiting its echo in a loop; req/s is echoed messages per second and CPU-s / 10k "
                "req is per 10k messages. uvicorn's default (`--ws auto`) is websockets-sansio.")
    if scenario.driver == "wrk-gzip":
        return (f"wrk: 1 thread, {scenario.connections} connections, `Accept-Encoding: gzip`; the "
                "pre-run check requires `Content-Encoding: gzip` and decodes the body.")
    if scenario.driver == "wrk-unpinned":
        return (f"wrk: 1 thread, {scenario.connections} connections. **Nothing is pinned here**: "
                "servers and wrk may use both cores (`taskset -c 0-1`) and wrk competes with the "
                "workers; CPU-s / 10k req is the server's whole process tree, master included.")
    if scenario.driver.startswith("h2load"):
        how = "cleartext h2c, prior knowledge" if scenario.driver == "h2load-h2c" \
            else "TLS 1.3, h2 by ALPN"
        return (f"h2load: 1 thread, {scenario.connections} connections x {scenario.streams} "
                f"concurrent streams ({how}); errors are h2load's failed requests.")
    return (f"{scenario.driver} (bench/h3client.py, aioquic): {scenario.connections} QUIC "
            f"connection(s) x {scenario.streams} concurrent streams.")


def _client_notes(run: Run, scenario: LoadScenario) -> list[str]:
    """Body throughput and a Python client's own CPU, where the driver measured them."""
    notes = []
    for spec in run.servers:
        cell = run.cells.get((spec.name, scenario.name))
        samples = cell.load_samples() if cell else []
        rates = [s.load.bytes_per_s for s in samples if s.load.bytes_per_s is not None]
        cpus = [s.load.client_cpu_seconds for s in samples
                if s.load.client_cpu_seconds is not None]
        parts = []
        if rates and scenario.expect_body_length:
            parts.append(f"{median(rates) / 2**20:.2f} MiB/s body throughput (median; runs "
                         + " / ".join(f"{r / 2**20:.2f}" for r in rates) + ")")
        if cpus:
            parts.append("client CPU " + " / ".join(f"{c:.1f}" for c in cpus)
                         + f" s per {run.settings['duration']} s run")
        if parts:
            notes.append(f"- {spec.name}: " + "; ".join(parts))
    return ["", *notes] if notes else []


def median_bytes_per_s(cell: Cell | None) -> float | None:
    rates = [s.load.bytes_per_s for s in (cell.load_samples() if cell else [])
             if s.load.bytes_per_s is not None]
    return median(rates) if rates else None


# (scenario, peer, minimum ratio of roadrunner to the peer, measure) from issues 4 and 5.
PROTOCOL_TARGETS = [
    ("h2_hello", "hypercorn", 8.0, "req/s"),
    ("h2_hello", "granian", 0.5, "req/s"),
    ("h3_hello", "hypercorn", 2.0, "req/s"),
    ("h3_download", "hypercorn", 2.0, "MiB/s"),
]


def protocol_targets(run: Run) -> list[str]:
    """The HTTP/2 and HTTP/3 targets: roadrunner against a peer in the same run."""
    lines = []
    for scenario, peer, minimum, measure in PROTOCOL_TARGETS:
        pick = median_bytes_per_s if measure == "MiB/s" else median_rps
        ours = pick(run.cells.get(("roadrunner", scenario)))
        theirs = pick(run.cells.get((peer, scenario)))
        if ours and theirs:
            ratio = ours / theirs
            verdict = "met" if ratio >= minimum else "MISSED"
            lines.append(f"- {scenario} {measure}, roadrunner ÷ {peer}: **{ratio:.2f}x** "
                         f"(target ≥ {minimum}x): {verdict}")
    return lines


WS_RATIO_TARGET = 1.3  # issue 7: roadrunner's echo throughput over the best Python peer's


def _peer_medians(run: Run, scenario: str, ours: str) -> dict[str, float]:
    medians = {server: median_rps(cell) for (server, name), cell in run.cells.items()
               if name == scenario and server != ours}
    return {server: rps for server, rps in medians.items() if rps}


def extra_targets(run: Run) -> list[str]:
    """WebSocket echo against the best peer (with and without granian, whose core is Rust), and
    the gzip comparison (no numeric target: the ratio is stated)."""
    lines = []
    ours = median_rps(run.cells.get(("roadrunner", "ws_echo")))
    peers = _peer_medians(run, "ws_echo", "roadrunner")
    pools = [("best peer", peers),
             ("best pure-Python peer", {n: r for n, r in peers.items() if "granian" not in n})]
    for label, pool in pools:
        if ours and pool:
            best = max(pool, key=lambda name: pool[name])
            ratio = ours / pool[best]
            verdict = "met" if ratio >= WS_RATIO_TARGET else "MISSED"
            lines.append(f"- ws_echo messages/s, roadrunner ÷ {label} ({best}): **{ratio:.2f}x** "
                         f"(target ≥ {WS_RATIO_TARGET}x): {verdict}")
    ours = median_rps(run.cells.get(("roadrunner+compress", "gzip_response")))
    theirs = median_rps(run.cells.get(("uvicorn+gzip", "gzip_response")))
    if ours and theirs:
        lines.append(f"- gzip_response req/s, roadrunner --compress ÷ uvicorn + Starlette "
                     f"GZipMiddleware: **{ours / theirs:.2f}x** (no numeric target)")
    return lines


def _idle_section(run: Run, scenario: IdleScenario) -> list[str]:
    header = ["server", "connections", "RSS before MiB", "RSS after MiB",
              "bytes / connection (median)", "runs (bytes / conn)", "still open", "errors"]
    rows = []
    for spec in run.servers:
        cell = run.cells.get((spec.name, scenario.name))
        if cell is None:
            continue
        samples = cell.idle_samples()
        if not samples:
            rows.append([spec.name, "failed"] + [""] * (len(header) - 3) + [_errors(cell)])
            continue
        per_conn = [s.bytes_per_connection for s in samples]
        rows.append([
            spec.name, f"{samples[0].connections:,}",
            _mib(median([s.rss_before for s in samples])),
            _mib(median([s.rss_after for s in samples])),
            f"{median(per_conn):,.0f}", " / ".join(f"{b:,.0f}" for b in per_conn),
            " / ".join(f"{s.still_open:,}" for s in samples), _errors(cell),
        ])
    count = run.settings.get("idle_connections") or scenario.connections
    return [f"### {scenario.name}: {scenario.title}", "",
            f"{count:,} connections opened by an asyncio client (100 at a time), one `GET "
            f"{scenario.request.path}` on each, then held; RSS of the server process tree is read "
            "before and after (each once two readings 0.25 s apart agree within 0.5 %). "
            "\"still open\" counts connections that answered a second request afterwards.", "",
            *_table(header, rows), ""]


def targets(run: Run) -> list[str]:
    """The project's targets, checked against this run's medians."""
    lines = []
    ours = median_rps(run.cells.get(("roadrunner", "hello")))
    theirs = median_rps(run.cells.get((BASELINE, "hello")))
    if ours and theirs:
        ratio = ours / theirs
        verdict = "met" if ratio >= HELLO_RATIO_TARGET else "MISSED"
        lines.append(f"- hello req/s, roadrunner ÷ {BASELINE}: **{ratio:.2f}x** "
                     f"(target ≥ {HELLO_RATIO_TARGET}x): {verdict}")
    idle = median_idle_bytes(run.cells.get(("roadrunner", "idle_connections")))
    if idle is not None:
        verdict = "met" if idle <= IDLE_BYTES_TARGET else "MISSED"
        lines.append(f"- memory per idle keep-alive connection, roadrunner: **{idle:,.0f} bytes** "
                     f"(target ≤ {IDLE_BYTES_TARGET:,} bytes): {verdict}")
    return lines + protocol_targets(run) + extra_targets(run)


def render_markdown(run: Run) -> str:
    lines = ["# Benchmarks", "",
             "Generated by `bench/run.py`; do not edit by hand. Re-run with the command below.", "",
             "## How this was measured", "",
             f"- Command: `{run.command}`"]
    lines += [f"- {key}: {value}" for key, value in run.machine.items()]
    s = run.settings
    lines += [
        f"- Settings: {s['repeat']} repetition(s), {s['warmup']} s warm-up then {s['duration']} s "
        "measured per run; a fresh server process for every run; servers rotated between "
        "repetitions.",
        "- Each server runs one worker pinned to core 0 (`taskset -c 0`); wrk and the harness run "
        "on core 1 (`taskset -c 1`). Only 127.0.0.1 is loaded.",
        "- Every server serves the same plain ASGI app (`bench/apps.py`), access log off, "
        "listen backlog 4096, keep-alive timeout 600 s.",
        "- req/s, p50 and p99 are wrk's; the table shows the median over repetitions. "
        "**CPU-s / 10k req** is the server process tree's utime + stime (from /proc/PID/stat) "
        "during the measured run, per 10,000 completed requests: the robust figure on this "
        "noisy, shared machine (other work competes for the cores, so req/s moves more).",
        "- RSS is the server process tree's resident set right after the measured run.",
        "", "## Servers", "",
    ]
    lines += [f"- **{spec.name}** {spec.version()}: {spec.description}" for spec in run.servers]
    target_lines = targets(run)
    if target_lines:
        lines += ["", "## Targets", "", *target_lines]
    lines += ["", "## Results", ""]
    for scenario in run.scenarios:
        if isinstance(scenario, LoadScenario):
            lines += _load_section(run, scenario)
        else:
            lines += _idle_section(run, scenario)
    return "\n".join(lines).rstrip() + "\n"


def render_json(run: Run) -> str:
    cells = [
        {"server": server, "scenario": scenario, "errors": cell.errors,
         "samples": [asdict(sample) for sample in cell.samples]}
        for (server, scenario), cell in run.cells.items()
    ]
    document = {"command": run.command, "settings": run.settings, "machine": run.machine,
                "versions": {spec.name: spec.version() for spec in run.servers}, "cells": cells}
    return json.dumps(document, indent=2) + "\n"
